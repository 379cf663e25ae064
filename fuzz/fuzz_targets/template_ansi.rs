#![no_main]
//! Any byte string given to the ANSI/INCITS 378-2004 decoder yields a template or a typed error,
//! never a panic; a decoded template re-encodes to a record that decodes to the same template.
use abis_engine::template::{decode_ansi, encode_ansi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(template) = decode_ansi(data) {
        let bytes = encode_ansi(&template).expect("a decoded ANSI template re-encodes");
        let again = decode_ansi(&bytes).expect("a re-encoded ANSI template decodes");
        assert_eq!(again, template, "decoding is canonical");
    }
});
