//! Template codecs: round trips, conversions between formats, the angle and axis conventions,
//! and robustness against truncated, corrupt and arbitrary input.

use std::f32::consts::{PI, TAU};

use abis_engine::template::{
    decode_ansi, decode_iso, decode_native, decode_xyt, encode_ansi, encode_iso, encode_native,
    encode_xyt, FingerPosition, FingerTemplate, Impression, Minutia, MinutiaKind, TemplateError,
    TemplateFormat, XytGeometry, MAX_MINUTIAE,
};
use proptest::prelude::*;

/// Smallest angle between two directions, radians.
fn angle_diff(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(TAU);
    d.min(TAU - d)
}

const ISO_STEP: f32 = TAU / 256.0;
const ANSI_STEP: f32 = TAU / 180.0;
const XYT_STEP: f32 = TAU / 360.0;
const NATIVE_STEP: f32 = TAU / 65536.0;
const EPS: f32 = 1e-5;

fn sample() -> FingerTemplate {
    let kinds = [
        MinutiaKind::Ending,
        MinutiaKind::Bifurcation,
        MinutiaKind::Other,
    ];
    let minutiae = (0..40u16)
        .map(|i| Minutia {
            x: 7 + i * 11,
            y: 5 + i * 13,
            direction: (f32::from(i) * 0.37).rem_euclid(TAU),
            kind: kinds[usize::from(i % 3)],
            quality: (i * 7 % 101) as u8,
        })
        .collect();
    FingerTemplate {
        width: 512,
        height: 640,
        ppi: 500,
        position: FingerPosition::new(2).unwrap(),
        impression: Impression::LivePlain,
        quality: 77,
        minutiae,
    }
}

fn geometry_of(t: &FingerTemplate) -> XytGeometry {
    XytGeometry {
        width: t.width,
        height: t.height,
        ppi: t.ppi,
    }
}

/// Same header fields and per-minutia position, kind and quality; directions within `step / 2`.
fn assert_close(a: &FingerTemplate, b: &FingerTemplate, step: f32, same_kind: bool) {
    assert_eq!((a.width, a.height, a.ppi), (b.width, b.height, b.ppi));
    assert_eq!(a.minutiae.len(), b.minutiae.len());
    for (m, n) in a.minutiae.iter().zip(&b.minutiae) {
        assert_eq!((m.x, m.y, m.quality), (n.x, n.y, n.quality));
        if same_kind {
            assert_eq!(m.kind, n.kind);
        }
        assert!(
            angle_diff(m.direction, n.direction) <= step / 2.0 + EPS,
            "{} vs {}",
            m.direction,
            n.direction
        );
    }
}

// ---- Round trips ----------------------------------------------------------------------------

#[test]
fn native_round_trip_is_exact() {
    let t = sample();
    let bytes = encode_native(&t).unwrap();
    let back = decode_native(&bytes).unwrap();
    assert_eq!(
        (back.position, back.impression, back.quality),
        (t.position, t.impression, 77)
    );
    assert_close(&t, &back, NATIVE_STEP, true);
    // A decoded template is a fixed point: identical bytes and values.
    assert_eq!(encode_native(&back).unwrap(), bytes);
    assert_eq!(decode_native(&bytes).unwrap(), back);
}

#[test]
fn iso_round_trip() {
    let t = sample();
    let back = decode_iso(&encode_iso(&t).unwrap()).unwrap();
    assert_eq!(
        (back.position, back.impression, back.quality),
        (t.position, t.impression, 77)
    );
    assert_close(&t, &back, ISO_STEP, true);
    assert_eq!(decode_iso(&encode_iso(&back).unwrap()).unwrap(), back);
}

#[test]
fn ansi_round_trip() {
    let t = sample();
    let back = decode_ansi(&encode_ansi(&t).unwrap()).unwrap();
    assert_eq!(
        (back.position, back.impression, back.quality),
        (t.position, t.impression, 77)
    );
    assert_close(&t, &back, ANSI_STEP, true);
    assert_eq!(decode_ansi(&encode_ansi(&back).unwrap()).unwrap(), back);
}

#[test]
fn xyt_round_trip() {
    let t = sample();
    let text = encode_xyt(&t).unwrap();
    let back = decode_xyt(text.as_bytes(), geometry_of(&t)).unwrap();
    assert_close(&t, &back, XYT_STEP, false);
    assert!(back.minutiae.iter().all(|m| m.kind == MinutiaKind::Other));
    assert_eq!(encode_xyt(&back).unwrap(), text);
}

#[test]
fn thousand_ppi_survives_pixels_per_cm() {
    let mut t = sample();
    t.ppi = 1000;
    assert_eq!(decode_iso(&encode_iso(&t).unwrap()).unwrap().ppi, 1000);
    assert_eq!(decode_ansi(&encode_ansi(&t).unwrap()).unwrap().ppi, 1000);
}

#[test]
fn cross_format_conversions_keep_positions() {
    let t = sample();
    let iso = decode_iso(&encode_iso(&t).unwrap()).unwrap();
    let ansi = decode_ansi(&encode_ansi(&iso).unwrap()).unwrap();
    let xyt = decode_xyt(encode_xyt(&ansi).unwrap().as_bytes(), geometry_of(&ansi)).unwrap();
    let native = decode_native(&encode_native(&xyt).unwrap()).unwrap();
    for stage in [&iso, &ansi, &xyt, &native] {
        assert_eq!((stage.width, stage.height, stage.ppi), (512, 640, 500));
        let positions: Vec<_> = stage
            .minutiae
            .iter()
            .map(|m| (m.x, m.y, m.quality))
            .collect();
        let original: Vec<_> = t.minutiae.iter().map(|m| (m.x, m.y, m.quality)).collect();
        assert_eq!(positions, original);
    }
    // Each step loses at most half its own quantum.
    let budget = (ISO_STEP + ANSI_STEP + XYT_STEP + NATIVE_STEP) / 2.0 + 4.0 * EPS;
    for (m, n) in t.minutiae.iter().zip(&native.minutiae) {
        assert!(angle_diff(m.direction, n.direction) <= budget);
    }
    // And back from native to ISO and ANSI.
    let iso2 = decode_iso(&encode_iso(&native).unwrap()).unwrap();
    assert_close(&t, &iso2, 2.0 * budget, false);
}

// ---- Conventions ----------------------------------------------------------------------------

/// A minutia pointing up on screen: `atan2(-1, 0)` in y-down coordinates is 3π/2, which every
/// interchange format stores as 90 degrees counter-clockwise.
#[test]
fn up_on_screen_is_ninety_degrees_counter_clockwise() {
    let t = FingerTemplate {
        width: 300,
        height: 400,
        ppi: 500,
        position: FingerPosition::UNKNOWN,
        impression: Impression::LivePlain,
        quality: 50,
        minutiae: vec![Minutia {
            x: 10,
            y: 10,
            direction: 1.5 * PI,
            kind: MinutiaKind::Ending,
            quality: 60,
        }],
    };
    let iso = encode_iso(&t).unwrap();
    assert_eq!(iso[24 + 4 + 4], 64, "ISO angle byte");
    let ansi = encode_ansi(&t).unwrap();
    assert_eq!(ansi[26 + 4 + 4], 45, "ANSI angle byte");
    // y flipped about the height: 400 − 10.
    assert_eq!(encode_xyt(&t).unwrap(), "10 390 90 60\n");

    for back in [
        decode_iso(&iso).unwrap(),
        decode_ansi(&ansi).unwrap(),
        decode_xyt(b"10 390 90 60\n", geometry_of(&t)).unwrap(),
        decode_native(&encode_native(&t).unwrap()).unwrap(),
    ] {
        let m = back.minutiae[0];
        assert_eq!((m.x, m.y), (10, 10));
        assert!((m.direction - 1.5 * PI).abs() < 1e-5, "{}", m.direction);
    }
}

#[test]
fn iso_worked_example_bytes() {
    // formats.md: `40 64 00 0E 50 5A` = ending at (100, 14), 80 units = 112.5° CCW, quality 90.
    let mut record = b"FMR\0 20\0".to_vec();
    record.extend_from_slice(&36u32.to_be_bytes());
    record.extend_from_slice(&[0, 0, 0x01, 0x00, 0x01, 0x68, 0x00, 0xC5, 0x00, 0xC5, 1, 0]);
    record.extend_from_slice(&[2, 0, 80, 1]);
    record.extend_from_slice(&[0x40, 0x64, 0x00, 0x0E, 0x50, 0x5A]);
    record.extend_from_slice(&[0, 0]);
    let t = decode_iso(&record).unwrap();
    assert_eq!((t.width, t.height, t.ppi, t.quality), (256, 360, 500, 80));
    let m = t.minutiae[0];
    assert_eq!(
        (m.x, m.y, m.kind, m.quality),
        (100, 14, MinutiaKind::Ending, 90)
    );
    assert!((m.direction - (TAU - 112.5f32.to_radians())).abs() < 1e-5);
    assert_eq!(encode_iso(&t).unwrap(), record);
}

// ---- Detection ------------------------------------------------------------------------------

#[test]
fn detect_format_on_each_encoding() {
    let t = sample();
    let native = encode_native(&t).unwrap();
    let iso = encode_iso(&t).unwrap();
    let ansi = encode_ansi(&t).unwrap();
    let xyt = encode_xyt(&t).unwrap();
    assert_eq!(
        FingerTemplate::detect_format(&native),
        Some(TemplateFormat::Native)
    );
    assert_eq!(
        FingerTemplate::detect_format(&iso),
        Some(TemplateFormat::Iso19794_2005)
    );
    assert_eq!(
        FingerTemplate::detect_format(&ansi),
        Some(TemplateFormat::Ansi378_2004)
    );
    assert_eq!(
        FingerTemplate::detect_format(xyt.as_bytes()),
        Some(TemplateFormat::Xyt)
    );
    assert_eq!(FingerTemplate::detect_format(b"\x89PNG\r\n"), None);
    assert_eq!(FingerTemplate::detect_format(b""), None);

    // An empty template still tells ISO from ANSI.
    let empty = FingerTemplate {
        minutiae: vec![],
        ..t.clone()
    };
    let iso_empty = encode_iso(&empty).unwrap();
    let ansi_empty = encode_ansi(&empty).unwrap();
    assert_eq!(
        FingerTemplate::detect_format(&iso_empty),
        Some(TemplateFormat::Iso19794_2005)
    );
    assert_eq!(
        FingerTemplate::detect_format(&ansi_empty),
        Some(TemplateFormat::Ansi378_2004)
    );

    let geometry = Some(geometry_of(&t));
    let ok = |bytes: &[u8]| FingerTemplate::decode_any(bytes, geometry).unwrap();
    assert_close(&t, &ok(&native), NATIVE_STEP, true);
    assert_close(&t, &ok(&iso), ISO_STEP, true);
    assert_close(&t, &ok(&ansi), ANSI_STEP, true);
    assert_close(&t, &ok(xyt.as_bytes()), XYT_STEP, false);
    assert_eq!(
        FingerTemplate::decode_any(b"\x00\x01", None),
        Err(TemplateError::UnknownFormat)
    );
}

// ---- Versions -------------------------------------------------------------------------------

#[test]
fn later_editions_are_unsupported() {
    let t = sample();
    let mut iso = encode_iso(&t).unwrap();
    iso[4..8].copy_from_slice(b"030\0");
    assert!(matches!(
        decode_iso(&iso),
        Err(TemplateError::UnsupportedVersion {
            standard: "ISO/IEC 19794-2:2011",
            ..
        })
    ));
    let mut ansi = encode_ansi(&t).unwrap();
    ansi[4..8].copy_from_slice(b"030\0");
    assert!(matches!(
        decode_ansi(&ansi),
        Err(TemplateError::UnsupportedVersion {
            standard: "ANSI/INCITS 378-2009",
            ..
        })
    ));
    // Through detection too: either way the answer is "unsupported version".
    for record in [&iso, &ansi] {
        assert!(matches!(
            FingerTemplate::decode_any(record, None),
            Err(TemplateError::UnsupportedVersion { .. })
        ));
    }
    let mut odd = encode_iso(&t).unwrap();
    odd[4..8].copy_from_slice(b" 10\0");
    assert!(matches!(
        decode_iso(&odd),
        Err(TemplateError::UnsupportedVersion { .. })
    ));
    let mut native = encode_native(&t).unwrap();
    native[4] = 9;
    assert!(matches!(
        decode_native(&native),
        Err(TemplateError::UnsupportedVersion { .. })
    ));
}

// ---- Truncation and corruption --------------------------------------------------------------

type Decoder = fn(&[u8]) -> Result<FingerTemplate, TemplateError>;

#[test]
fn every_truncation_is_an_error() {
    let t = sample();
    let records: [(&str, Vec<u8>, Decoder); 3] = [
        ("iso", encode_iso(&t).unwrap(), decode_iso),
        ("ansi", encode_ansi(&t).unwrap(), decode_ansi),
        ("native", encode_native(&t).unwrap(), decode_native),
    ];
    for (name, record, decode) in records {
        assert!(decode(&record).is_ok());
        for len in 0..record.len() {
            assert!(
                decode(&record[..len]).is_err(),
                "{name} truncated to {len} bytes decoded"
            );
            let _ = FingerTemplate::decode_any(&record[..len], None);
        }
    }
    // .xyt truncated mid-line may still be valid text; it must never panic.
    let text = encode_xyt(&t).unwrap();
    for len in 0..text.len() {
        let _ = decode_xyt(&text.as_bytes()[..len], XytGeometry::default());
        let _ = decode_xyt(&text.as_bytes()[..len], geometry_of(&t));
    }
}

fn set_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn corrupt_fmr_lengths_and_counts() {
    let t = sample();
    for (ansi, header) in [(false, 24usize), (true, 26)] {
        let good = if ansi {
            encode_ansi(&t)
        } else {
            encode_iso(&t)
        }
        .unwrap();
        let decode = if ansi { decode_ansi } else { decode_iso };
        let n = good.len();
        let set_length = |b: &mut Vec<u8>, v: usize| {
            if ansi {
                set_be16(b, 8, v as u16)
            } else {
                b[8..12].copy_from_slice(&(v as u32).to_be_bytes())
            }
        };
        let views_at = header - 2;
        let count_at = header + 3;
        let ext_at = n - 2;

        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        for (what, len) in [("length+1", n + 1), ("length-1", n - 1), ("length tiny", 3)] {
            let mut b = good.clone();
            set_length(&mut b, len);
            cases.push((what, b));
        }
        let mut b = good.clone();
        b.push(0);
        cases.push(("trailing byte", b));
        for (what, views) in [("no views", 0u8), ("two views", 2), ("255 views", 255)] {
            let mut b = good.clone();
            b[views_at] = views;
            cases.push((what, b));
        }
        for (what, count) in [("count+1", 41u8), ("count-1", 39), ("count 255", 255)] {
            let mut b = good.clone();
            b[count_at] = count;
            cases.push((what, b));
        }
        for (what, ext) in [("ext 1", 1u16), ("ext 4", 4), ("ext max", u16::MAX)] {
            let mut b = good.clone();
            set_be16(&mut b, ext_at, ext);
            cases.push((what, b));
        }
        let mut b = good.clone();
        b[header] = 11;
        cases.push(("finger position 11", b));
        let mut b = good.clone();
        b[header + 1] = 0x04;
        cases.push(("impression 4", b));
        let mut b = good.clone();
        b[header + 2] = 101;
        cases.push(("finger quality 101", b));
        let mut b = good.clone();
        b[header + 4] |= 0xC0;
        cases.push(("minutia type 11", b));
        let mut b = good.clone();
        b[header + 4 + 5] = 200;
        cases.push(("minutia quality 200", b));
        let mut b = good.clone();
        set_be16(&mut b, header - 6, 0);
        cases.push(("x resolution 0", b));

        for (what, bytes) in cases {
            let got = decode(&bytes);
            assert!(
                got.is_err(),
                "{} {what}: {got:?}",
                if ansi { "ANSI" } else { "ISO" }
            );
        }
    }
}

#[test]
fn corrupt_native_fields() {
    let good = encode_native(&sample()).unwrap();
    let recrc = |mut b: Vec<u8>| {
        let n = b.len() - 4;
        let crc = crc_of(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    };
    let mut flipped = good.clone();
    flipped[30] ^= 0x40;
    assert_eq!(decode_native(&flipped), Err(TemplateError::Checksum));
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for (what, at, v) in [
        ("ppi 0", 9usize, 0u8),
        ("position 11", 11, 11),
        ("impression 5", 12, 5),
        ("quality 101", 13, 101),
        ("kind 3", 16 + 6, 3),
        ("minutia quality 101", 16 + 7, 101),
    ] {
        let mut b = good.clone();
        b[at] = v;
        if at == 9 {
            b[10] = 0;
        }
        cases.push((what, recrc(b)));
    }
    for count in [0u16, 39, 41, 256, u16::MAX] {
        let mut b = good.clone();
        b[14..16].copy_from_slice(&count.to_le_bytes());
        cases.push(("count", recrc(b)));
    }
    let mut magic = good.clone();
    magic[0] = b'X';
    cases.push(("magic", magic));
    for (what, bytes) in cases {
        assert!(decode_native(&bytes).is_err(), "{what}");
    }
}

/// CRC-32 (IEEE), bitwise, so that the test does not trust the codec's own checksum code.
fn crc_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
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
fn encoders_validate() {
    let mut t = sample();
    t.minutiae[3].quality = 101;
    assert!(encode_iso(&t).is_err());
    assert!(encode_ansi(&t).is_err());
    assert!(encode_native(&t).is_err());
    assert!(encode_xyt(&t).is_err());

    let mut t = sample();
    t.minutiae[0].direction = TAU;
    assert!(encode_native(&t).is_err());

    let mut t = sample();
    t.minutiae = vec![t.minutiae[0]; MAX_MINUTIAE + 1];
    assert_eq!(encode_iso(&t), Err(TemplateError::TooManyMinutiae(256)));
    assert_eq!(encode_native(&t), Err(TemplateError::TooManyMinutiae(256)));

    // 14-bit coordinates in ISO/ANSI; .xyt needs y within the height it flips about.
    let mut t = sample();
    t.minutiae[0].x = 16384;
    assert!(encode_iso(&t).is_err());
    assert!(encode_ansi(&t).is_err());
    assert!(encode_native(&t).is_ok());
    let mut t = sample();
    t.minutiae[0].y = t.height + 1;
    assert!(encode_xyt(&t).is_err());
}

// ---- Property tests -------------------------------------------------------------------------

fn arb_template() -> impl Strategy<Value = FingerTemplate> {
    let kinds = prop::sample::select(vec![
        MinutiaKind::Ending,
        MinutiaKind::Bifurcation,
        MinutiaKind::Other,
    ]);
    let impressions = prop::sample::select(vec![
        Impression::LivePlain,
        Impression::LiveRolled,
        Impression::NonLivePlain,
        Impression::NonLiveRolled,
        Impression::Swipe,
    ]);
    let ppi = prop_oneof![Just(500u16), Just(1000u16), 1u16..=u16::MAX];
    (
        any::<u16>(),
        1u16..=u16::MAX,
        ppi,
        0u8..=10,
        impressions,
        0u8..=100,
    )
        .prop_flat_map(move |(width, height, ppi, position, impression, quality)| {
            let max_y = height.min(0x3FFF);
            let minutia = (
                0u16..=0x3FFF,
                0u16..=max_y,
                0f32..TAU,
                kinds.clone(),
                0u8..=100,
            )
                .prop_map(|(x, y, direction, kind, quality)| Minutia {
                    x,
                    y,
                    direction,
                    kind,
                    quality,
                });
            prop::collection::vec(minutia, 0..=MAX_MINUTIAE).prop_map(move |minutiae| {
                FingerTemplate {
                    width,
                    height,
                    ppi,
                    position: FingerPosition::new(position).unwrap(),
                    impression,
                    quality,
                    minutiae,
                }
            })
        })
}

/// Runs every decoder (and the sniffer) over `bytes`; any decoded template must re-encode in its
/// own format and decode again.
fn decode_everything(bytes: &[u8]) {
    let _ = FingerTemplate::detect_format(bytes);
    let _ = FingerTemplate::decode_any(bytes, None);
    if let Ok(t) = decode_iso(bytes) {
        decode_iso(&encode_iso(&t).unwrap()).unwrap();
    }
    if let Ok(t) = decode_ansi(bytes) {
        decode_ansi(&encode_ansi(&t).unwrap()).unwrap();
    }
    if let Ok(t) = decode_native(bytes) {
        assert_eq!(decode_native(&encode_native(&t).unwrap()).unwrap(), t);
    }
    for geometry in [
        XytGeometry::default(),
        XytGeometry {
            width: 100,
            height: 100,
            ppi: 500,
        },
    ] {
        if let Ok(t) = decode_xyt(bytes, geometry) {
            let text = encode_xyt(&t).unwrap();
            decode_xyt(text.as_bytes(), geometry_of(&t)).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn prop_native_round_trip(t in arb_template()) {
        let bytes = encode_native(&t).unwrap();
        let back = decode_native(&bytes).unwrap();
        assert_eq!((back.position, back.impression, back.quality), (t.position, t.impression, t.quality));
        assert_close(&t, &back, NATIVE_STEP, true);
        prop_assert_eq!(encode_native(&back).unwrap(), bytes);
    }

    #[test]
    fn prop_iso_round_trip(t in arb_template()) {
        let back = decode_iso(&encode_iso(&t).unwrap()).unwrap();
        prop_assert!((i32::from(back.ppi) - i32::from(t.ppi)).abs() <= 2);
        let t = FingerTemplate { ppi: back.ppi, ..t };
        assert_close(&t, &back, ISO_STEP, true);
        prop_assert_eq!(decode_iso(&encode_iso(&back).unwrap()).unwrap(), back);
    }

    #[test]
    fn prop_ansi_round_trip(t in arb_template()) {
        let back = decode_ansi(&encode_ansi(&t).unwrap()).unwrap();
        prop_assert!((i32::from(back.ppi) - i32::from(t.ppi)).abs() <= 2);
        let t = FingerTemplate { ppi: back.ppi, ..t };
        assert_close(&t, &back, ANSI_STEP, true);
        prop_assert_eq!(decode_ansi(&encode_ansi(&back).unwrap()).unwrap(), back);
    }

    #[test]
    fn prop_xyt_round_trip(t in arb_template()) {
        let text = encode_xyt(&t).unwrap();
        let back = decode_xyt(text.as_bytes(), geometry_of(&t)).unwrap();
        assert_close(&t, &back, XYT_STEP, false);
        prop_assert_eq!(encode_xyt(&back).unwrap(), text.clone());
        // Without geometry the text still decodes and re-encodes to itself (the inferred
        // height, max(y) + 1, must fit in a u16).
        if t.minutiae.iter().all(|m| t.height - m.y < u16::MAX) {
            let inferred = decode_xyt(text.as_bytes(), XytGeometry::default()).unwrap();
            prop_assert_eq!(encode_xyt(&inferred).unwrap(), text);
        }
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
    }

    #[test]
    fn prop_arbitrary_headers_never_panic(
        prefix in prop::sample::select(vec![&b"FMR\0 20\0"[..], b"FMR\x00030\x00", b"ABFT\x01"]),
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&tail);
        decode_everything(&bytes);
    }

    #[test]
    fn prop_arbitrary_text_never_panics(text in "([0-9 \t\r\n+-]|[0-9]{1,7}|x){0,200}") {
        decode_everything(text.as_bytes());
    }

    #[test]
    fn prop_mutated_records_never_panic(
        t in arb_template(),
        format in 0usize..4,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut bytes = match format {
            0 => encode_iso(&t).unwrap(),
            1 => encode_ansi(&t).unwrap(),
            2 => encode_native(&t).unwrap(),
            _ => encode_xyt(&t).unwrap().into_bytes(),
        };
        if bytes.is_empty() {
            bytes.push(b'\n');
        }
        for (at, v) in mutations {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        decode_everything(&bytes);
    }
}
