//! `abis-bench gen`: writes a synthetic gallery straight into the store format, segment by
//! segment, with its 1:N index (no log replay, no gRPC): `abis serve --data DIR` opens it.

use std::path::PathBuf;
use std::time::Instant;

use abis_engine::gallery::Gallery;
use abis_engine::store::synth::GalleryWriter;
use abis_engine::synth::{FaceModel, FACE_DIM};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::json;

use crate::population::{store_dir, Population};
use crate::progress;

#[derive(clap::Args)]
pub struct Args {
    /// Data directory (`abis serve --data DIR` opens the same gallery).
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    people: u64,
    /// Fingers per person: ISO positions 1..=N.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=10))]
    fingers: u8,
    /// Faces per person (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    faces: u8,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also enrol this many existing people a second time under new numbers (for `dedup`).
    #[arg(long, default_value_t = 0)]
    duplicates: u64,
    /// Records per segment (memory holds one segment's records while it is written).
    #[arg(long, default_value_t = 65_536)]
    segment_records: u64,
}

pub fn run(a: &Args) -> Result<()> {
    if a.people == 0 || (a.fingers == 0 && a.faces == 0) {
        bail!("a gallery needs people with at least one finger or face");
    }
    if a.duplicates > a.people {
        bail!("--duplicates cannot exceed --people");
    }
    let started = Instant::now();
    let pop = Population {
        seed: a.seed,
        people: a.people,
        fingers: a.fingers,
        faces: a.faces,
        duplicates: a.duplicates,
    };
    let faces = FaceModel::new();
    let path = store_dir(&a.data);
    std::fs::create_dir_all(&path)?;
    let mut writer = GalleryWriter::create(&path, FACE_DIM, Some(Gallery::index_files()))
        .with_context(|| format!("creating the gallery under {}", a.data.display()))?;
    let bar = progress::bar(pop.records(), "records");
    let mut bytes = 0;
    let step = a.segment_records.max(1);
    for start in (0..pop.records()).step_by(step as usize) {
        let end = (start + step).min(pop.records());
        let records = (start..end)
            .into_par_iter()
            .map(|i| pop.record(&faces, i))
            .collect::<Result<Vec<_>, _>>()?;
        bytes = writer.append(records)?;
        bar.inc(end - start);
    }
    bytes = bytes.max(writer.finish()?);
    bar.finish();
    pop.save(&a.data)?;
    println!(
        "{}",
        json!({
            "people": a.people,
            "fingers": a.fingers,
            "faces": a.faces,
            "seed": a.seed,
            "duplicates": a.duplicates,
            "bytes": bytes,
            "total_s": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
