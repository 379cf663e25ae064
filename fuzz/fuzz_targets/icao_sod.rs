#![no_main]
//! Any byte string given to the EF.SOD parser yields a SOD or a typed error, never a panic; a
//! parsed SOD goes through passive authentication (signature algorithms and keys from the
//! input) against an empty trust store, which never passes.
use std::time::SystemTime;

use abis_icao::{authenticate, Sod, TrustStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sod) = Sod::parse(data) {
        let result = authenticate(&sod, &[(2, data)], &TrustStore::new(), SystemTime::UNIX_EPOCH);
        assert!(!result.passed(), "no CSCA is trusted");
    }
});
