//! The synthetic population behind a harness gallery: who is enrolled, with which captures, and
//! where the harness keeps what the store does not (the description and the finger code index).
//!
//! Person `i` of a population drawn from seed `S` is the same on every run. The gallery holds
//! records `0..people + duplicates`: record `r < people` is person `r` from capture 0; record
//! `people + k` is a duplicate, person `k·people/duplicates` enrolled again from capture 2 under
//! a new number. Mated probes are capture 1 of enrolled people; non-mated probes are people
//! `people..`, who were never enrolled.

use std::path::{Path, PathBuf};

use abis_engine::index::finger_code::{CodeProbe, FingerCode, FingerCoder, FINGERS};
use abis_engine::matcher::{Matcher, PreparedTemplate};
use abis_engine::synth::{person_seed, FaceModel, MasterFinger};
use abis_engine::template::FingerTemplate;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What `gen` wrote, saved beside the store as `DIR/harness/population.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Population {
    pub seed: u64,
    pub people: u64,
    pub fingers: u8,
    pub faces: u8,
    /// Extra records re-enrolling existing people under new numbers (legacy-data duplicates).
    #[serde(default)]
    pub duplicates: u64,
}

pub fn store_dir(data: &Path) -> PathBuf {
    data.join("gallery")
}

fn harness_dir(data: &Path) -> PathBuf {
    data.join("harness")
}

pub fn codes_path(data: &Path) -> PathBuf {
    harness_dir(data).join("finger_codes.bin")
}

impl Population {
    pub fn save(&self, data: &Path) -> Result<()> {
        std::fs::create_dir_all(harness_dir(data))?;
        let path = harness_dir(data).join("population.json");
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(data: &Path) -> Result<Population> {
        let path = harness_dir(data).join("population.json");
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "{} missing: is {} a gallery written by `abis-bench gen`?",
                path.display(),
                data.display()
            )
        })?;
        Ok(serde_json::from_slice(&text)?)
    }

    pub fn records(&self) -> u64 {
        self.people + self.duplicates
    }

    /// The person record `r` belongs to, and the capture it was enrolled from.
    pub fn record_person(&self, r: u64) -> (u64, u64) {
        if r < self.people {
            (r, 0)
        } else {
            ((r - self.people) * self.people / self.duplicates.max(1), 2)
        }
    }

    /// Record index of a harness reference id (`None` for ids the harness did not write).
    pub fn record_of(id: &str) -> Option<u64> {
        id.strip_prefix('9').filter(|d| d.len() == 11)?.parse().ok()
    }

    /// Synthetic 12-digit personal number of record `i` (starting with 9: never a real one in
    /// the registry's numbering).
    pub fn reference_id(i: u64) -> String {
        format!("9{i:011}")
    }

    /// Positions enrolled: 1..=fingers.
    pub fn positions(&self) -> impl Iterator<Item = u8> {
        1..=self.fingers.min(FINGERS as u8)
    }

    /// Finger captures of person `i`, capture number `capture` (0 is the enrolment).
    pub fn finger_captures(&self, i: u64, capture: u64) -> Vec<FingerTemplate> {
        let seed = person_seed(self.seed, i);
        self.positions()
            .map(|p| {
                MasterFinger::generate(seed, p)
                    .impression(person_seed(seed ^ u64::from(p), capture))
            })
            .collect()
    }

    /// Face capture `capture` of person `i` (empty when the population has no faces).
    pub fn face_capture(&self, model: &FaceModel, i: u64, capture: u64) -> Vec<f32> {
        let mut v = Vec::new();
        if self.faces > 0 {
            let seed = person_seed(self.seed, i);
            model.capture(
                &model.identity(seed),
                person_seed(seed ^ 0xFACE, capture),
                &mut v,
            );
        }
        v
    }
}

/// Prepared fingers and the code probe of one search.
pub struct FingerProbe {
    pub prepared: Vec<(u8, PreparedTemplate)>,
    pub codes: CodeProbe,
}

impl FingerProbe {
    /// Whether the probe has a finger at ISO `position`.
    pub fn has(&self, position: u8) -> bool {
        self.prepared.iter().any(|(p, _)| *p == position)
    }
}

pub fn finger_probe(
    matcher: &Matcher,
    coder: &FingerCoder,
    templates: &[FingerTemplate],
) -> Result<FingerProbe> {
    let mut prepared = Vec::with_capacity(templates.len());
    let mut codes = CodeProbe::default();
    for t in templates {
        let p = matcher.prepare(t)?;
        codes.add(t.position.code(), coder.encode(&p));
        prepared.push((t.position.code(), p));
    }
    Ok(FingerProbe { prepared, codes })
}

/// The per-position codes of one enrolled person, in index order.
pub fn person_codes(
    coder: &FingerCoder,
    prepared: &[(u8, PreparedTemplate)],
) -> [Option<FingerCode>; FINGERS] {
    let mut codes: [Option<FingerCode>; FINGERS] = Default::default();
    for (pos, p) in prepared {
        if (1..=FINGERS as u8).contains(pos) {
            codes[usize::from(*pos) - 1] = Some(coder.encode(p));
        }
    }
    codes
}
