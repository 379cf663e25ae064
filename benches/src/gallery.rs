//! Opening a harness gallery through the engine (the same code path `abis serve` uses), and the
//! footprint figures the harness reports.

use std::path::Path;
use std::sync::Arc;

use abis_engine::face::{Calibration, FaceManifest};
use abis_engine::gallery::{CodeStage, FaceScorer, Gallery, SearchConfig};
use abis_engine::matcher::Matcher;
use abis_engine::store::encryption::Keyring;
use abis_engine::store::StoreConfig;
use abis_engine::synth::FACE_DIM;
use anyhow::{Context, Result};

use crate::population::store_dir;

/// How a harness command searches: through the index (its short-list sizes) or exhaustively.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// Turn the index off: the full matcher against every record (small galleries only).
    #[arg(long)]
    pub exhaustive: bool,
    /// Records the codes pass to the local structures.
    #[arg(long, default_value_t = SearchConfig::default().code_shortlist)]
    pub code_shortlist: usize,
    /// Records the local structures (and the face scan) pass to the full matcher.
    #[arg(long, default_value_t = SearchConfig::default().shortlist)]
    pub shortlist: usize,
    /// Probes with at least this many fingers use the ten-print lists (a large value: never).
    #[arg(long, default_value_t = SearchConfig::default().ten_print_min_fingers)]
    pub ten_print_min_fingers: usize,
    /// Records the codes pass to the local structures, for ten-print probes.
    #[arg(long, default_value_t = SearchConfig::default().ten_print_code_shortlist)]
    pub ten_print_code_shortlist: usize,
    /// Records the local structures pass to the full matcher, for ten-print probes.
    #[arg(long, default_value_t = SearchConfig::default().ten_print_shortlist)]
    pub ten_print_shortlist: usize,
    /// Probes with fewer fingers skip the codes.
    #[arg(long, default_value_t = SearchConfig::default().index_min_fingers)]
    pub index_min_fingers: usize,
    /// Records the local similarity sort passes to LSS-R in searches that skip the codes.
    #[arg(long, default_value_t = SearchConfig::default().local_sort_keep)]
    pub local_sort_keep: usize,
    /// Records per segment the band tables let the codes rank; 0: scan every record's codes.
    #[arg(long, default_value_t = 8192)]
    pub band_candidates: usize,
    /// Probes with fewer fingers scan every code instead of the band tables.
    #[arg(long, default_value_t = 8)]
    pub band_min_fingers: usize,
    /// Key file of an encrypted gallery (`abis store keygen`, then `abis store rekey`).
    #[arg(long)]
    pub key_file: Option<std::path::PathBuf>,
    /// MiB of decrypted blocks an encrypted gallery caches.
    #[arg(long, default_value_t = 256)]
    pub encrypted_cache_mib: usize,
}

impl SearchArgs {
    /// How a harness opens the store: never writing (no background checkpoints), sealed with
    /// the key file when one is given.
    pub fn store_config(&self) -> Result<StoreConfig> {
        let mut cfg = StoreConfig::new(FACE_DIM);
        cfg.background = false;
        cfg.encryption = self
            .key_file
            .as_deref()
            .map(Keyring::load)
            .transpose()
            .context("loading the key file")?;
        cfg.encrypted_cache_bytes = self.encrypted_cache_mib << 20;
        Ok(cfg)
    }

    /// The engine's search configuration: the index at any gallery size unless exhaustive
    /// (then prepared templates are kept, as a small gallery would).
    pub fn config(&self) -> SearchConfig {
        SearchConfig {
            index_above: if self.exhaustive { usize::MAX } else { 0 },
            code_shortlist: self.code_shortlist,
            shortlist: self.shortlist,
            ten_print_min_fingers: self.ten_print_min_fingers,
            ten_print_code_shortlist: self.ten_print_code_shortlist,
            ten_print_shortlist: self.ten_print_shortlist,
            index_min_fingers: self.index_min_fingers,
            local_sort_keep: self.local_sort_keep,
            code_stage: match self.band_candidates {
                0 => CodeStage::Scan,
                band_candidates => CodeStage::Tables {
                    band_candidates,
                    min_fingers: self.band_min_fingers,
                },
            },
            retain_prepared: self.exhaustive,
        }
    }
}

/// The gallery under `data`, opened with the face calibration of `manifest` (when it has one),
/// `search` and the store configuration `cfg` ([`SearchArgs::store_config`]), its missing
/// indexes rebuilt and its recent records indexed.
pub fn open(
    data: &Path,
    manifest: &Path,
    search: SearchConfig,
    cfg: StoreConfig,
) -> Result<Gallery> {
    let scorer = face_calibration(manifest).ok().map(|c| {
        let scorer: FaceScorer = Arc::new(move |cos| c.score(cos));
        scorer
    });
    let (g, _) = Gallery::open(store_dir(data), cfg, Matcher::new(), scorer)
        .with_context(|| format!("opening the gallery under {}", data.display()))?;
    let g = g.with_search(search);
    g.warm()?;
    Ok(g)
}

pub fn face_calibration(path: &Path) -> Result<Calibration> {
    let manifest = FaceManifest::load(path)?;
    let spec = manifest
        .model(&manifest.face.embedder)?
        .calibration
        .clone()
        .context("the face embedder has no calibration in the manifest")?;
    Ok(Calibration::from_spec(&spec)?)
}

/// Resident anonymous memory of this process (RssAnon: heap, decrypted data; not the page cache
/// a mapped file shares with the kernel).
pub fn rss_anon_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("RssAnon:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Resident memory of this process (VmRSS).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Bytes of the files under `path` whose name ends with `suffix` ("" for all).
pub fn dir_bytes(path: &Path, suffix: &str) -> u64 {
    std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path(), suffix),
                    Ok(m) if e.file_name().to_string_lossy().ends_with(suffix) => m.len(),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
