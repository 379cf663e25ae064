//! Face pieces that need no model: SCRFD decoding on synthetic output tensors, colour decoding
//! (EXIF orientation, hostile inputs) with property tests.

use abis_engine::face::scrfd::{decode, letterbox_scale, StrideOutputs};
use abis_engine::image::{decode_rgb, ColorFormat, ImageError, Limits};
use proptest::prelude::*;

/// Scores, boxes and keypoints of one stride.
type Tensors = (Vec<f32>, Vec<f32>, Vec<f32>);

/// One stride's outputs for a `size` input, all zero.
fn empty(size: u32, stride: u32, anchors: usize) -> Tensors {
    let g = size.div_ceil(stride) as usize;
    let n = g * g * anchors;
    (vec![0.0; n], vec![0.0; n * 4], vec![0.0; n * 10])
}

#[test]
fn scrfd_decodes_a_synthetic_face() {
    let (size, anchors) = (640u32, 2usize);
    let mut outs: Vec<(u32, Tensors)> = [8u32, 16, 32]
        .iter()
        .map(|&s| (s, empty(size, s, anchors)))
        .collect();
    // Stride 16, location (x=10, y=5), anchor 1: centre (160, 80).
    let (s, (scores, boxes, kps)) = &mut outs[1];
    assert_eq!(*s, 16);
    let g = 40usize;
    let i = (5 * g + 10) * anchors + 1;
    scores[i] = 0.9;
    boxes[i * 4..i * 4 + 4].copy_from_slice(&[2.0, 3.0, 4.0, 5.0]);
    for k in 0..5 {
        kps[i * 10 + 2 * k] = k as f32 * 0.5;
        kps[i * 10 + 2 * k + 1] = -1.0;
    }
    // A weaker duplicate at the neighbouring anchor, suppressed by NMS; and a sub-threshold one.
    scores[i - 1] = 0.8;
    boxes[(i - 1) * 4..(i - 1) * 4 + 4].copy_from_slice(&[2.0, 3.0, 4.0, 5.1]);
    let (_, (scores32, boxes32, _)) = &mut outs[2];
    scores32[0] = 0.3;
    boxes32[..4].copy_from_slice(&[1.0, 1.0, 1.0, 1.0]);

    let views: Vec<StrideOutputs<'_>> = outs
        .iter()
        .map(|(s, (a, b, c))| StrideOutputs {
            stride: *s,
            scores: a,
            boxes: b,
            keypoints: c,
        })
        .collect();
    // The image was 1280x960, scaled by 0.5 into the 640 square.
    let k = letterbox_scale(1280, 960, 640);
    assert_eq!(k, 0.5);
    let faces = decode(&views, size, anchors, 0.5, 0.4, k).unwrap();
    assert_eq!(faces.len(), 1);
    let f = faces[0];
    assert_eq!(f.score, 0.9);
    // (160 - 2*16, 80 - 3*16, 160 + 4*16, 80 + 5*16) / 0.5
    assert_eq!((f.x1, f.y1, f.x2, f.y2), (256.0, 64.0, 448.0, 320.0));
    assert_eq!(f.landmarks[0], [320.0, 128.0]);
    assert_eq!(f.landmarks[4], [320.0 + 2.0 * 16.0 * 2.0, 128.0]);
}

#[test]
fn scrfd_refuses_inconsistent_tensors() {
    let (a, b, c) = empty(640, 8, 2);
    let bad = [StrideOutputs {
        stride: 8,
        scores: &a[..10],
        boxes: &b,
        keypoints: &c,
    }];
    assert!(decode(&bad, 640, 2, 0.5, 0.4, 1.0).is_err());
    let ok = [StrideOutputs {
        stride: 8,
        scores: &a,
        boxes: &b,
        keypoints: &[],
    }];
    assert!(decode(&ok, 640, 2, 0.5, 0.4, 1.0).unwrap().is_empty());
    assert!(decode(&ok, 640, 2, 0.5, 0.4, 0.0).is_err());
}

/// A JPEG with an EXIF orientation 6 (rotate 90 clockwise to view) comes out upright.
#[test]
fn exif_orientation_is_applied() {
    let (w, h) = (40u32, 24u32);
    // Left half dark, right half bright; stored sideways.
    let img = image::RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            image::Rgb([20, 20, 20])
        } else {
            image::Rgb([230, 230, 230])
        }
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    // Insert an APP1 Exif segment after SOI: little-endian TIFF, one IFD entry 0x0112 = 6.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&6u16.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut with_exif = jpeg[..2].to_vec();
    with_exif.extend_from_slice(&[0xFF, 0xE1]);
    with_exif.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    with_exif.extend_from_slice(&app1);
    with_exif.extend_from_slice(&jpeg[2..]);

    let d = decode_rgb(&with_exif, &Limits::default()).unwrap();
    assert_eq!(d.exif_orientation, 6);
    assert_eq!((d.image.width, d.image.height), (h, w), "rotated");
    // Rotated 90 clockwise: the dark left half is now on top.
    assert!(d.image.get(h / 2, 2)[0] < 80);
    assert!(d.image.get(h / 2, w - 3)[0] > 180);
    let plain = decode_rgb(&jpeg, &Limits::default()).unwrap();
    assert_eq!(plain.exif_orientation, 1);
    assert_eq!(plain.format, ColorFormat::Jpeg);
}

#[test]
fn wsq_is_not_a_face_format() {
    let wsq = [0xFF, 0xA0, 0xFF, 0xA8, 0, 0];
    let r = decode_rgb(&wsq, &Limits::default());
    assert!(
        matches!(
            r,
            Err(ImageError::Unsupported { .. }) | Err(ImageError::UnknownFormat)
        ),
        "{r:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes: an image or a typed error, never a panic.
    #[test]
    fn decode_rgb_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let limits = Limits { max_pixels: 1_000_000, ..Limits::default() };
        let _ = decode_rgb(&bytes, &limits);
    }

    /// Magic bytes of each format followed by noise: still never a panic.
    #[test]
    fn format_headers_with_noise_never_panic(
        which in 0usize..4,
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let head: &[u8] = match which {
            0 => &[0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A],
            1 => &[0xFF, 0x4F, 0xFF, 0x51],
            2 => b"RIFF\0\0\0\0WEBPVP8L",
            _ => &[0xFF, 0xD8, 0xFF, 0xE1],
        };
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&tail);
        let limits = Limits { max_pixels: 1_000_000, ..Limits::default() };
        let _ = decode_rgb(&bytes, &limits);
    }
}
