//! Synthetic people for scale tests and the benchmark harness: ten fingers and a face per
//! person, reproducible from a seed, with as many captures of each as a test needs. Nothing here
//! is biometric data; the shapes of the score distributions are checked against real data
//! (`abis-bench dist`).

mod face;
mod finger;
mod rng;

pub use face::{FaceIdentity, FaceModel, FACE_DIM};
pub use finger::{MasterFinger, PatternClass, SENSOR_H, SENSOR_W};
pub use rng::Rng;

/// The seed of person `index` in a population drawn from `population_seed`.
pub fn person_seed(population_seed: u64, index: u64) -> u64 {
    crate::hash::mix(population_seed.wrapping_mul(0x100_0000_01B3) ^ index)
}
