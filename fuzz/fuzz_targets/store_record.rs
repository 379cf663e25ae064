#![no_main]
//! Any byte string given to the gallery's record decoder (the payload of every log entry and
//! segment read) yields a record or a typed error, never a panic; a decoded record re-encodes to
//! bytes that decode to the same record.
use abis_engine::store::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let bytes = record.encode().expect("a decoded record re-encodes");
        let again = Record::decode(&bytes).expect("a re-encoded record decodes");
        assert!(again.same_content(&record));
    }
});
