//! `abis-bench probe`: writes one person's finger captures as native templates
//! (`OUT/<position>.abft`), to search a `gen` gallery through gRPC
//! (`abis client load --rpc identify --finger 1=OUT/1.abft ...`).

use std::path::PathBuf;

use abis_engine::template::encode_native;
use anyhow::{bail, Context, Result};

use crate::population::Population;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    data: PathBuf,
    /// Person number (below the gallery's `people`: a mate; at or above: a stranger).
    #[arg(long)]
    person: u64,
    /// Capture number (0 is the enrolled one).
    #[arg(long, default_value_t = 1)]
    capture: u64,
    /// Only the fingers at these ISO positions (e.g. `1,2,6,7`); all enrolled ones by default.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=10))]
    positions: Vec<u8>,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: &Args) -> Result<()> {
    let pop = Population::load(&a.data)?;
    if pop.fingers == 0 {
        bail!("this gallery has no fingers");
    }
    std::fs::create_dir_all(&a.out)?;
    let wanted = |t: &abis_engine::template::FingerTemplate| {
        a.positions.is_empty() || a.positions.contains(&t.position.code())
    };
    for t in pop
        .finger_captures(a.person, a.capture)
        .into_iter()
        .filter(wanted)
    {
        let path = a.out.join(format!("{}.abft", t.position.code()));
        std::fs::write(&path, encode_native(&t)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{}",
        serde_json::json!({"person": a.person, "enrolled_as": (a.person < pop.people).then(|| Population::reference_id(a.person)), "fingers": pop.fingers})
    );
    Ok(())
}
