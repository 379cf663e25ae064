#![no_main]
//! Any byte string given to the ISO/IEC 19794-2:2005 decoder yields a template or a typed error,
//! never a panic; a decoded template re-encodes to a record that decodes to the same template.
use abis_engine::template::{decode_iso, encode_iso};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(template) = decode_iso(data) {
        let bytes = encode_iso(&template).expect("a decoded ISO template re-encodes");
        let again = decode_iso(&bytes).expect("a re-encoded ISO template decodes");
        assert_eq!(again, template, "decoding is canonical");
    }
});
