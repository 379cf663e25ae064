//! The one 64-bit mixing function of the engine (the SplitMix64 finaliser).
//!
//! Persisted layouts depend on it: the finger codes hash cylinder patterns with it and pick their
//! sampled cells from a stream of it, and synthetic galleries are generated from it. Changing it
//! changes every stored code and every generated person, so it is frozen by the test vectors
//! below.

/// One SplitMix64 step from `z`: a bijection of `u64` with full avalanche.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64's published first outputs for seed 0 (`mix(0)`, `mix(golden ratio)`, ...): the
    /// values every implementation of the algorithm produces.
    #[test]
    fn frozen_test_vectors() {
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(mix(0x3C6E_F372_FE94_F82A), 0x06C4_5D18_8009_454F);
        assert_eq!(mix(u64::MAX), 0xE4D9_7177_1B65_2C20);
    }
}
