#![no_main]
//! Any byte string given to the EF.DG2 parser yields portraits or a typed error, never a panic;
//! every portrait's image lies inside the input.
use abis_icao::parse_dg2;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(dg2) = parse_dg2(data) {
        assert!(!dg2.images.is_empty(), "a parsed DG2 holds a portrait");
        for image in &dg2.images {
            assert!(image.data.len() < data.len());
        }
    }
});
