//! Writes a test chip ID card for the bank counter's figures: `cargo run -p abis-icao --example
//! test_chip -- DIR` makes `DIR/trust/csca.pem` (a test CSCA and its CRL), `DIR/dg2.bin` (an
//! ATT/ORL face of subject 1 as a 368x448 JPEG 2000 portrait in a 19794-5 record),
//! `DIR/dg1.bin`, `DIR/sod.bin` (signed by a P-256 Document Signer of that CSCA), and two live
//! photos, `DIR/live.jpg` (subject 1, another picture) and `DIR/other.jpg` (subject 2), 1 MP.
//! Needs ../shared/data and opj_compress.

#[path = "../tests/common/mod.rs"]
mod common;

use common::pki::{days, Csca, DocumentSigner, KeyKind, SodOptions};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: test_chip DIR"));
    std::fs::create_dir_all(dir.join("trust")).unwrap();
    let csca = Csca::new("CSCA Utopia", KeyKind::P256, days(-30, 3650));
    let signer = DocumentSigner::new(&csca, KeyKind::P256, 7, days(-30, 3650));
    let portrait = common::chip_portrait(1, 1).expect("shared data and opj_compress");
    let card = common::Card::new(
        &signer,
        common::dg2(&common::facial_record(&portrait, 1, 368, 448)),
        &SodOptions::default(),
    );
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &csca.der).unwrap();
    let files: [(&str, Vec<u8>); 7] = [
        ("trust/csca.pem", pem.into_bytes()),
        ("trust/csca.crl", csca.crl(&[99])),
        ("dg1.bin", card.dg1.clone()),
        ("dg2.bin", card.dg2.clone()),
        ("sod.bin", card.sod.clone()),
        ("live.jpg", common::live_photo(1, 2).unwrap()),
        ("other.jpg", common::live_photo(2, 1).unwrap()),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), &bytes).unwrap();
        println!("{name}: {} bytes", bytes.len());
    }
}
