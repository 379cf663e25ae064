#![no_main]
//! Any byte string given to the ISO/IEC 19794-4 finger and 19794-5:2011 face record parsers
//! yields images or a typed error naming a field, never a panic or an out-of-bounds slice.
use abis_mosip::{face_record, finger_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = finger_record::parse(data) {
        assert!(record.images.iter().all(|i| i.data.len() <= data.len()));
    }
    if let Ok(faces) = face_record::parse(data) {
        assert!(faces.iter().all(|f| f.data.len() <= data.len()));
    }
});
