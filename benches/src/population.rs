//! The synthetic population behind a harness gallery: who is enrolled, with which captures, and
//! where the harness keeps what the store does not (the population's description).
//!
//! Person `i` of a population drawn from seed `S` is the same on every run. The gallery holds
//! records `0..people + duplicates`: record `r < people` is person `r` from capture 0; record
//! `people + k` is a duplicate, person `k·people/duplicates` enrolled again from capture 2 under
//! a new number. Mated probes are capture 1 of enrolled people; non-mated probes are people
//! `people..`, who were never enrolled.

use std::path::{Path, PathBuf};

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
        1..=self.fingers.min(10)
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

impl Population {
    /// Record `i` of the gallery, as `gen` enrols it.
    pub fn record(&self, faces: &FaceModel, i: u64) -> Result<abis_engine::store::Record> {
        let (person, capture) = self.record_person(i);
        let mut r = abis_engine::store::Record {
            reference_id: Population::reference_id(i),
            ..Default::default()
        };
        for t in self.finger_captures(person, capture) {
            r.fingers.push(abis_engine::store::FingerEntry {
                position: t.position,
                template: abis_engine::template::encode_native(&t)?,
            });
        }
        if self.faces > 0 {
            r.faces.push(self.face_capture(faces, person, capture));
        }
        Ok(r)
    }

    /// The probe of person `i` from capture `capture`, with the fingers at `positions` (all
    /// enrolled ones when `None`; none when empty) and its face when `face`.
    pub fn probe(
        &self,
        faces: &FaceModel,
        i: u64,
        capture: u64,
        positions: Option<&[u8]>,
        face: bool,
    ) -> abis_engine::gallery::Probe {
        abis_engine::gallery::Probe {
            fingers: self
                .finger_captures(i, capture)
                .into_iter()
                .filter(|t| positions.is_none_or(|p| p.contains(&t.position.code())))
                .map(|t| (t.position, t))
                .collect(),
            faces: if face && self.faces > 0 {
                vec![self.face_capture(faces, i, capture)]
            } else {
                Vec::new()
            },
        }
    }

    /// The person behind a harness reference id (a duplicate record leads to the person it
    /// re-enrols).
    pub fn person_of(&self, id: &str) -> Option<u64> {
        Population::record_of(id).map(|r| self.record_person(r).0)
    }
}
