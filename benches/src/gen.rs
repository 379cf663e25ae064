//! `abis-bench gen`: writes a synthetic gallery straight into the store format (one segment, no
//! log replay, no gRPC), plus the finger code index the indexed search reads.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use abis_engine::index::finger_code::{CodeIndex, FingerCoder};
use abis_engine::matcher::Matcher;
use abis_engine::store::synth::write_gallery;
use abis_engine::store::{FingerEntry, Record};
use abis_engine::synth::{FaceModel, FACE_DIM};
use abis_engine::template::encode_native;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::json;

use crate::population::{codes_path, person_codes, store_dir, Population};
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
}

pub fn run(a: &Args) -> Result<()> {
    if a.people == 0 || (a.fingers == 0 && a.faces == 0) {
        bail!("a gallery needs people with at least one finger or face");
    }
    let started = Instant::now();
    let pop = Population {
        seed: a.seed,
        people: a.people,
        fingers: a.fingers,
        faces: a.faces,
        duplicates: a.duplicates,
    };
    if a.duplicates > a.people {
        bail!("--duplicates cannot exceed --people");
    }
    let matcher = Matcher::new();
    let coder = FingerCoder::new();
    let faces = FaceModel::new();
    let bar = progress::bar(pop.records(), "records");
    let people: Vec<(Record, _)> = (0..pop.records())
        .into_par_iter()
        .map(|i| -> Result<_> {
            let (person, capture) = pop.record_person(i);
            let mut r = Record {
                reference_id: Population::reference_id(i),
                ..Record::default()
            };
            let mut prepared = Vec::new();
            for t in pop.finger_captures(person, capture) {
                prepared.push((t.position.code(), matcher.prepare(&t)?));
                r.fingers.push(FingerEntry {
                    position: t.position,
                    template: encode_native(&t)?,
                });
            }
            if a.faces > 0 {
                r.faces.push(pop.face_capture(&faces, person, capture));
            }
            bar.inc(1);
            Ok((r, person_codes(&coder, &prepared)))
        })
        .collect::<Result<_>>()?;
    bar.finish();
    let made_s = started.elapsed().as_secs_f64();
    let (records, codes): (Vec<Record>, Vec<_>) = people.into_iter().unzip();
    let segment_bytes = write_gallery(&store_dir(&a.data), FACE_DIM, &records)
        .with_context(|| format!("writing the gallery under {}", a.data.display()))?;
    drop(records);
    pop.save(&a.data)?;
    let mut index = CodeIndex::new();
    if a.fingers > 0 {
        for c in &codes {
            index.push(c);
        }
    }
    let path = codes_path(&a.data);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    index.write_to(&mut out)?;
    out.flush()?;
    println!(
        "{}",
        json!({
            "people": a.people,
            "fingers": a.fingers,
            "faces": a.faces,
            "seed": a.seed,
            "duplicates": a.duplicates,
            "segment_bytes": segment_bytes,
            "code_index_bytes": std::fs::metadata(&path)?.len(),
            "generate_s": made_s,
            "total_s": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
