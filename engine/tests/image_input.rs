//! Image input: every supported container decodes to the same gray raster, resolution comes
//! from the right place, and hostile or broken input gives a typed error, never a panic.

mod common;

use std::io::Cursor;

use abis_engine::image::{decode, resample_to_ppi, GrayImage, ImageError, ImageFormat, Limits};
use proptest::prelude::*;

/// A ridge-like test pattern (our own, not a real fingerprint).
fn pattern(w: u32, h: u32) -> image::GrayImage {
    image::GrayImage::from_fn(w, h, |x, y| {
        let v = 128.0 + 100.0 * ((x as f32 * 0.7 + y as f32 * 0.3) * 0.6).sin();
        image::Luma([v as u8])
    })
}

fn encode(img: &image::GrayImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    if format == image::ImageFormat::Gif {
        // GIF holds palette colour only; gray levels survive as gray palette entries.
        image::DynamicImage::ImageLuma8(img.clone())
            .to_rgba8()
            .write_to(&mut out, format)
            .expect("encode");
    } else {
        img.write_to(&mut out, format).expect("encode");
    }
    out.into_inner()
}

#[test]
fn lossless_containers_decode_to_identical_pixels() {
    // Few enough gray levels that GIF's 256-colour quantiser keeps every one exactly.
    let img = image::GrayImage::from_fn(97, 131, |x, y| {
        image::Luma([((x * 3 + y * 5) % 16 * 16) as u8])
    });
    for (format, expected) in [
        (image::ImageFormat::Png, ImageFormat::Png),
        (image::ImageFormat::Bmp, ImageFormat::Bmp),
        (image::ImageFormat::Tiff, ImageFormat::Tiff),
        (image::ImageFormat::Pnm, ImageFormat::Pnm),
        (image::ImageFormat::Gif, ImageFormat::Gif),
    ] {
        let bytes = encode(&img, format);
        let d = decode(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(d.format, expected);
        assert_eq!((d.image.width, d.image.height), (97, 131));
        assert_eq!(d.image.pixels, img.as_raw().as_slice(), "{format:?}");
    }
}

/// Lossless JPEG 2000 (what MOSIP's 19794-4 finger records carry), made by OpenJPEG's own
/// encoder, decodes to the very pixels, through the one OpenJPEG decoder of the engine.
#[test]
fn lossless_jpeg2000_decodes_to_identical_pixels() {
    let img = pattern(388, 374);
    let Some(jp2) = abis_testkit::openjpeg::jpeg2000(388, 374, img.as_raw(), None) else {
        return;
    };
    let d = decode(&jp2, &Limits::default()).unwrap();
    assert_eq!(d.format, ImageFormat::Jpeg2000);
    assert_eq!((d.image.width, d.image.height), (388, 374));
    assert_eq!(d.image.pixels, img.as_raw().as_slice());
    // The raw codestream inside the JP2 boxes decodes the same.
    let soc = jp2
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .unwrap();
    let raw = decode(&jp2[soc..], &Limits::default()).unwrap();
    assert_eq!(raw.image.pixels, d.image.pixels);
}

#[test]
fn jpeg_decodes_close_to_the_original() {
    let img = pattern(120, 80);
    let bytes = encode(&img, image::ImageFormat::Jpeg);
    let d = decode(&bytes, &Limits::default()).expect("jpeg");
    assert_eq!(d.format, ImageFormat::Jpeg);
    let mean_err: f64 = d
        .image
        .pixels
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / d.image.pixels.len() as f64;
    assert!(mean_err < 6.0, "mean abs error {mean_err}");
}

#[test]
fn colour_images_become_luma() {
    let rgb = image::RgbImage::from_fn(40, 30, |x, _| image::Rgb([x as u8 * 6, 100, 50]));
    let mut out = Cursor::new(Vec::new());
    rgb.write_to(&mut out, image::ImageFormat::Png).unwrap();
    let d = decode(out.get_ref(), &Limits::default()).expect("rgb png");
    let expected = image::DynamicImage::ImageRgb8(rgb).into_luma8();
    assert_eq!(d.image.pixels, expected.into_raw());
}

/// An uncompressed 8-bit palette TIFF written by hand (the image crate cannot write one).
fn palette_tiff(w: u16, h: u16, indices: &[u8], palette: &[(u8, u8, u8); 256]) -> Vec<u8> {
    let mut b = b"II*\0".to_vec();
    let entries: u16 = 9;
    let ifd_at = 8u32;
    let after_ifd = ifd_at + 2 + entries as u32 * 12 + 4;
    let colormap_at = after_ifd;
    let pixels_at = colormap_at + 256 * 3 * 2;
    b.extend_from_slice(&ifd_at.to_le_bytes());
    b.extend_from_slice(&entries.to_le_bytes());
    let mut entry = |tag: u16, kind: u16, count: u32, value: u32| {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&value.to_le_bytes());
    };
    entry(256, 3, 1, w as u32); // width
    entry(257, 3, 1, h as u32); // height
    entry(258, 3, 1, 8); // bits per sample
    entry(259, 3, 1, 1); // no compression
    entry(262, 3, 1, 3); // photometric: palette
    entry(273, 4, 1, pixels_at); // strip offset
    entry(278, 3, 1, h as u32); // rows per strip
    entry(279, 4, 1, w as u32 * h as u32); // strip byte count
    entry(320, 3, 768, colormap_at); // colour map
    b.extend_from_slice(&0u32.to_le_bytes());
    for channel in 0..3 {
        for c in palette.iter() {
            let v = [c.0, c.1, c.2][channel] as u16 * 257;
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b.extend_from_slice(indices);
    b
}

#[test]
fn palette_tiff_is_expanded_to_gray() {
    let mut palette = [(0u8, 0u8, 0u8); 256];
    for (i, p) in palette.iter_mut().enumerate() {
        // A reversed gray ramp: index i shows gray 255 - i.
        let g = 255 - i as u8;
        *p = (g, g, g);
    }
    let (w, h) = (33u16, 21u16);
    let indices: Vec<u8> = (0..w as usize * h as usize)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let bytes = palette_tiff(w, h, &indices, &palette);
    let d = decode(&bytes, &Limits::default()).expect("palette TIFF");
    let expected: Vec<u8> = indices.iter().map(|&i| 255 - i).collect();
    assert_eq!(d.image.pixels, expected);
}

#[test]
fn resolution_comes_from_the_file_when_it_states_one() {
    // JPEG with a JFIF density of 1000 dpi.
    let img = pattern(64, 64);
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    enc.set_pixel_density(image::codecs::jpeg::PixelDensity::dpi(1000));
    enc.encode_image(&img).unwrap();
    assert_eq!(decode(&out, &Limits::default()).unwrap().ppi, Some(1000.0));
    // Placeholder densities (72 dpi) are not capture resolutions and are ignored.
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    enc.set_pixel_density(image::codecs::jpeg::PixelDensity::dpi(72));
    enc.encode_image(&img).unwrap();
    assert_eq!(decode(&out, &Limits::default()).unwrap().ppi, None);
}

#[test]
fn decompression_bombs_are_refused_before_allocation() {
    // A valid PNG header claiming 100000 x 100000 pixels, with almost no data behind it.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    let err = decode(&png, &Limits::default()).expect_err("bomb refused");
    assert!(
        matches!(
            err,
            ImageError::BadDimensions { .. }
                | ImageError::TooManyPixels { .. }
                | ImageError::LimitExceeded(_)
        ),
        "{err:?}"
    );

    // Within the per-side limit but over the pixel budget.
    let limits = Limits {
        max_pixels: 10_000,
        ..Limits::default()
    };
    let bytes = encode(&pattern(200, 200), image::ImageFormat::Png);
    assert!(matches!(
        decode(&bytes, &limits),
        Err(ImageError::TooManyPixels { .. })
    ));
    let limits = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&bytes, &limits),
        Err(ImageError::TooManyBytes { .. })
    ));
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn empty_unknown_and_tiny_inputs_are_typed_errors() {
    assert_eq!(decode(b"", &Limits::default()), Err(ImageError::Empty));
    assert_eq!(
        decode(b"hello world", &Limits::default()),
        Err(ImageError::UnknownFormat)
    );
    let tiny = encode(&pattern(4, 4), image::ImageFormat::Png);
    assert!(matches!(
        decode(&tiny, &Limits::default()),
        Err(ImageError::BadDimensions { .. })
    ));
}

#[test]
fn every_truncation_of_every_format_is_an_error_not_a_panic() {
    let img = pattern(40, 36);
    for format in [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
        image::ImageFormat::Pnm,
        image::ImageFormat::Gif,
    ] {
        let bytes = encode(&img, format);
        let mut errors = 0;
        for len in 0..bytes.len() {
            // A truncation that still decodes lost only trailing bytes the decoder does not need
            // (padding, end markers): it must give the whole image. Every other one is an error
            // of the kinds a damaged file can cause, never a panic.
            match decode(&bytes[..len], &Limits::default()) {
                Ok(d) => assert_eq!(
                    (d.image.width, d.image.height),
                    (40, 36),
                    "{format:?} cut at {len} decoded to another size"
                ),
                Err(e) => {
                    errors += 1;
                    assert!(
                        matches!(
                            e,
                            ImageError::Empty
                                | ImageError::UnknownFormat
                                | ImageError::Corrupt { .. }
                                | ImageError::Unsupported { .. }
                                | ImageError::BadDimensions { .. }
                        ),
                        "{format:?} cut at {len}: unexpected error {e:?}"
                    );
                }
            }
        }
        assert!(errors > 0, "{format:?}: no truncation was refused");
        let empty = decode(&[], &Limits::default());
        assert_eq!(empty.map(drop), Err(ImageError::Empty));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_images_never_panic(
        seed in 0usize..6,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let formats = [image::ImageFormat::Png, image::ImageFormat::Jpeg, image::ImageFormat::Bmp,
                       image::ImageFormat::Tiff, image::ImageFormat::Pnm, image::ImageFormat::Gif];
        let mut bytes = encode(&pattern(32, 24), formats[seed]);
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let _ = decode(&bytes, &Limits::default());
    }
}

#[test]
fn resampling_maps_coordinates_back() {
    let src = GrayImage::new(200, 100, pattern(200, 100).into_raw()).unwrap();
    let r = resample_to_ppi(&src, 1000.0, 500.0).unwrap();
    assert_eq!((r.image.width, r.image.height), (100, 50));
    assert!((r.scale - 0.5).abs() < 1e-6);
    let same = resample_to_ppi(&src, 500.0, 500.0).unwrap();
    assert_eq!(same.image, src);
    assert!(matches!(
        resample_to_ppi(&src, 0.0, 500.0),
        Err(ImageError::BadResolution(_))
    ));
    assert!(matches!(
        resample_to_ppi(&src, f32::NAN, 500.0),
        Err(ImageError::BadResolution(_))
    ));
}

/// The same finger shown at 600 ppi gives the minutiae of the 500 ppi original, mapped back to
/// the 600 ppi image's coordinates: resolution handling is real, not nominal.
#[test]
fn extraction_at_another_resolution_maps_minutiae_back() {
    let Some(extractor) = common::extractor() else {
        return;
    };
    let bytes = std::fs::read(common::models_cache().join("afis/p1_1.png")).expect("afis sample");
    let original = decode(&bytes, &Limits::default()).unwrap().image;
    let info = abis_engine::finger::CaptureInfo {
        ppi: Some(500.0),
        ..Default::default()
    };
    let base = extractor.extract(&bytes, info).unwrap().template;
    let big = resample_to_ppi(&original, 500.0, 600.0).unwrap().image;
    let info600 = abis_engine::finger::CaptureInfo {
        ppi: Some(600.0),
        ..Default::default()
    };
    let t = extractor
        .extract_image(
            &big,
            600.0,
            abis_engine::finger::PpiSource::Request,
            info600,
        )
        .unwrap()
        .template;
    assert_eq!(
        (t.width as u32, t.height as u32, t.ppi),
        (big.width, big.height, 600)
    );
    let near = base
        .minutiae
        .iter()
        .filter(|m| {
            let (x, y) = (m.x as f32 * 1.2, m.y as f32 * 1.2);
            t.minutiae
                .iter()
                .any(|n| (n.x as f32 - x).hypot(n.y as f32 - y) <= 6.0)
        })
        .count();
    assert!(
        near * 10 >= base.minutiae.len() * 7,
        "{near} of {} minutiae found again",
        base.minutiae.len()
    );
}
