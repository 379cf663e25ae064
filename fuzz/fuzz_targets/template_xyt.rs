#![no_main]
//! Any byte string given to the NBIS `.xyt` decoder yields a template or a typed error, never a
//! panic; a decoded template re-encodes, and the text decodes again with the same geometry.
use abis_engine::template::{decode_xyt, encode_xyt, XytGeometry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for geometry in [
        XytGeometry::default(),
        XytGeometry {
            width: 500,
            height: 500,
            ppi: 500,
        },
    ] {
        if let Ok(template) = decode_xyt(data, geometry) {
            let text = encode_xyt(&template).expect("a decoded .xyt template re-encodes");
            let geometry = XytGeometry {
                width: template.width,
                height: template.height,
                ppi: template.ppi,
            };
            let again = decode_xyt(text.as_bytes(), geometry).expect("re-encoded .xyt decodes");
            assert_eq!(again.minutiae.len(), template.minutiae.len());
        }
    }
});
