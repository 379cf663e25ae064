#![no_main]
//! Any byte string given to the image decoder yields an image or a typed error, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = abis_engine::image::Limits { max_pixels: 4_000_000, ..Default::default() };
    let _ = abis_engine::image::decode(data, &limits);
});
