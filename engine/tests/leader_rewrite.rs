//! The LEADER graph the engine runs (rewritten at setup by scripts/leader_graph.py) finds the
//! same minutiae as the graph the afis package ships, through the engine's own pipeline, on
//! real fingerprints of every FVC2002 B set and on the package's samples. Tolerance, per image:
//! minutia count within 2 and at least 95 % of the original's minutiae matched (distinct
//! counterparts) within 2 px and 5 degrees; over all images at least 99 %.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use abis_engine::finger::{LeaderModel, RawMinutia, MODEL_PPI};
use abis_engine::image::{self, Limits};
use abis_engine::model::{Runtime, RuntimeConfig};

/// A copy of the manifest in which `leader` names the exported graph (the rewrite's source,
/// listed among the originals), so that the same decoding runs on both graphs.
fn exported_leader_config(dir: &Path) -> RuntimeConfig {
    let config = common::models_config();
    let text = std::fs::read_to_string(&config.manifest).expect("manifest");
    let mut manifest: toml::Table = text.parse().expect("manifest is TOML");
    let leader = manifest["models"]["leader"].clone();
    let from = leader["derive"]["from"]
        .as_str()
        .expect("leader.derive.from")
        .to_owned();
    let original = manifest["originals"]
        .as_array()
        .expect("originals")
        .iter()
        .find(|o| o["file"].as_str() == Some(&from))
        .expect("the rewrite's source among the originals")
        .clone();
    let entry = manifest["models"]["leader"].as_table_mut().expect("table");
    entry.insert("file".into(), original["file"].clone());
    entry.insert("sha256".into(), original["sha256"].clone());
    entry.remove("derive");
    let path = dir.join("manifest.toml");
    std::fs::write(&path, toml::to_string(&manifest).expect("serialise")).expect("write");
    RuntimeConfig {
        manifest: path,
        ..config
    }
}

fn matched(reference: &[RawMinutia], got: &[RawMinutia]) -> usize {
    let mut used = vec![false; got.len()];
    let mut found = 0;
    for r in reference {
        let nearest = got
            .iter()
            .enumerate()
            .filter(|(j, _)| !used[*j])
            .map(|(j, g)| {
                (
                    j,
                    (g.x as f32 - r.x as f32).hypot(g.y as f32 - r.y as f32),
                    g,
                )
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((j, d, g)) = nearest {
            if d <= 2.0 && common::angle_diff_deg(g.direction, r.direction) <= 5.0 {
                used[j] = true;
                found += 1;
            }
        }
    }
    found
}

fn images() -> Option<Vec<(PathBuf, f32)>> {
    let mut list: Vec<(PathBuf, f32)> = ["p1_1", "p1_2", "p2_1"]
        .iter()
        .map(|n| (common::models_cache().join(format!("afis/{n}.png")), 500.0))
        .collect();
    let fingerprints = abis_testkit::shared("fingerprint")?;
    for (set, ppi) in [
        ("DB1", 500.0),
        ("DB2", 569.0),
        ("DB3", 500.0),
        ("DB4", 500.0),
    ] {
        for name in ["101_1", "103_4", "105_2", "107_8", "110_5"] {
            list.push((
                fingerprints.join(format!("FVC2002_{set}_B/{name}.tif")),
                ppi,
            ));
        }
    }
    Some(list)
}

#[test]
fn rewritten_graph_finds_the_minutiae_of_the_exported_one() {
    if !abis_testkit::models_ready() {
        return;
    }
    let Some(images) = images() else {
        return;
    };
    let runtime: Arc<Runtime> = Runtime::open(common::models_config()).expect("runtime");
    let rewritten = LeaderModel::open(&runtime, "leader").expect("rewritten LEADER");
    let dir = tempfile::tempdir().expect("tempdir");
    let exported_runtime = Runtime::open(exported_leader_config(dir.path())).expect("runtime");
    let exported = LeaderModel::open(&exported_runtime, "leader").expect("exported LEADER");

    let (mut total, mut total_matched) = (0, 0);
    for (path, ppi) in &images {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoded = image::decode(&bytes, &Limits::default()).expect("decode");
        let img = image::resample_to_ppi(&decoded.image, *ppi, MODEL_PPI).expect("resample");
        let reference = exported.detect(&img.image).expect("exported graph");
        let got = rewritten.detect(&img.image).expect("rewritten graph");
        let m = matched(&reference, &got);
        let name = path.display();
        assert!(
            reference.len().abs_diff(got.len()) <= 2,
            "{name}: {} minutiae from the exported graph, {} from the rewritten one",
            reference.len(),
            got.len()
        );
        assert!(
            m * 100 >= reference.len() * 95,
            "{name}: {m} of {} minutiae agree",
            reference.len()
        );
        total += reference.len();
        total_matched += m;
    }
    // Not a vacuous pass: the images hold hundreds of minutiae between them.
    assert!(total >= 20 * images.len(), "only {total} minutiae in all");
    assert!(
        total_matched * 100 >= total * 99,
        "{total_matched} of {total} minutiae agree over {} images",
        images.len()
    );
}
