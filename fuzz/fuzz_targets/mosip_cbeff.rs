#![no_main]
//! Any byte string given to the CBEFF parser yields BIRs or a typed error, never a panic; the
//! BIRs written back as CBEFF read back the same.
use abis_mosip::cbeff::{parse, to_xml, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(birs) = parse(data, &limits) {
        let again = parse(to_xml(&birs).as_bytes(), &limits).expect("written CBEFF parses");
        assert_eq!(again.len(), birs.len());
    }
});
