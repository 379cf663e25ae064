#![no_main]
//! Any byte string given to the native template decoder yields a template or a typed error,
//! never a panic; a decoded template re-encodes to a record that decodes to the same template.
use abis_engine::template::{decode_native, encode_native};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(template) = decode_native(data) {
        let bytes = encode_native(&template).expect("a decoded native template re-encodes");
        let again = decode_native(&bytes).expect("a re-encoded native template decodes");
        assert_eq!(again, template);
    }
});
