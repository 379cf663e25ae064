#![no_main]
//! Any byte string given to the colour decoder (PNG, JPEG with EXIF, WebP, JPEG 2000, ...)
//! yields an RGB image or a typed error, never a panic or an unbounded allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = abis_engine::image::Limits {
        max_pixels: 4_000_000,
        ..Default::default()
    };
    if let Ok(d) = abis_engine::image::decode_rgb(data, &limits) {
        assert_eq!(
            d.image.pixels.len(),
            d.image.width as usize * d.image.height as usize * 3
        );
    }
});
