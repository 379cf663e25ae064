//! Checks the WSQ decoder against the NIST NBIS reference decoder, and its behaviour on
//! damaged and hostile files.
//!
//! Fixtures are pairs `NAME.wsq` (made by the NBIS encoder) and `NAME.pgm` (the NBIS
//! decoder's output for it, with a `# wsq-reference ppi=N` header comment), written by
//! `scripts/wsq_fixtures.py`:
//!
//! * `tests/fixtures/wsq/`: small synthetic images, committed, always checked;
//! * `$ABIS_WSQ_FIXTURES` (default `<repo>/models/cache/fixtures/wsq`): fixtures made from
//!   real fingerprint scans by the project setup, checked when the directory exists.
//!
//! Tolerance: every pixel within 1 grey level of the reference (both decoders work in
//! floating point; an operation order difference may flip a rounding), and a mean absolute
//! difference below 0.05. In practice the decoder matches NBIS exactly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use abis_engine::image::wsq::{decode, is_wsq};
use abis_engine::image::{ImageError, Limits};
use proptest::prelude::*;

const MAX_ABS_DIFF: u8 = 1;
const MAX_MEAN_ABS_DIFF: f64 = 0.05;

// ---------------------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made by this thread while armed, to
// show that a file claiming a huge frame is refused before any image-sized buffer exists.

struct TrackingAllocator;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller upholds GlobalAlloc's contract, which System requires too.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller upholds GlobalAlloc's contract, which System requires too.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: the caller upholds GlobalAlloc's contract, which System requires too.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds GlobalAlloc's contract, which System requires too.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, LARGEST.with(|l| l.get()))
}

// ---------------------------------------------------------------------------------------
// Fixtures

fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsq")
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("ABIS_WSQ_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/cache/fixtures/wsq"),
    }
}

/// The reference decoding: pixels, width, height and the ppi NBIS reported (-1: none).
struct Reference {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    ppi: i64,
}

fn parse_pgm(bytes: &[u8]) -> Reference {
    assert!(bytes.starts_with(b"P5"), "reference is not a binary PGM");
    let mut pos = 2;
    let mut fields = Vec::new();
    let mut ppi = None;
    while fields.len() < 3 {
        while bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if bytes[pos] == b'#' {
            let end = pos
                + bytes[pos..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .expect("comment line");
            let line = std::str::from_utf8(&bytes[pos..end]).expect("comment text");
            if let Some(v) = line.strip_prefix("# wsq-reference ppi=") {
                ppi = Some(v.trim().parse::<i64>().expect("ppi value"));
            }
            pos = end;
            continue;
        }
        let end = pos
            + bytes[pos..]
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .expect("field end");
        fields.push(
            std::str::from_utf8(&bytes[pos..end])
                .unwrap()
                .parse::<u32>()
                .expect("number"),
        );
        pos = end;
    }
    let (width, height, maxval) = (fields[0], fields[1], fields[2]);
    assert_eq!(maxval, 255);
    let pixels = bytes[pos + 1..].to_vec();
    assert_eq!(
        pixels.len(),
        (width * height) as usize,
        "reference pixel count"
    );
    Reference {
        width,
        height,
        pixels,
        ppi: ppi.expect("reference ppi comment"),
    }
}

/// `(wsq, pgm)` pairs in `dir`, sorted by name.
fn fixture_pairs(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut pairs: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wsq"))
        .map(|wsq| {
            let pgm = wsq.with_extension("pgm");
            assert!(
                pgm.exists(),
                "{} has no reference {}",
                wsq.display(),
                pgm.display()
            );
            (wsq, pgm)
        })
        .collect();
    pairs.sort();
    pairs
}

#[derive(Debug, Default)]
struct Totals {
    files: usize,
    pixels: u64,
    abs_diff_sum: u64,
    max_abs_diff: u8,
    exact_files: usize,
}

/// Decodes every fixture in `dir` and compares it with its reference; returns the totals.
fn check_against_reference(dir: &Path) -> Totals {
    let limits = Limits::default();
    let mut totals = Totals::default();
    for (wsq_path, pgm_path) in fixture_pairs(dir) {
        let name = wsq_path.file_name().unwrap().to_string_lossy().into_owned();
        let wsq = std::fs::read(&wsq_path).unwrap();
        let reference = parse_pgm(&std::fs::read(&pgm_path).unwrap());
        assert!(is_wsq(&wsq), "{name}: is_wsq");

        let started = Instant::now();
        let decoded = decode(&wsq, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        let elapsed = started.elapsed();

        assert_eq!(
            (decoded.image.width, decoded.image.height),
            (reference.width, reference.height),
            "{name}"
        );
        let expected_ppi = (reference.ppi > 0).then_some(reference.ppi as f32);
        assert_eq!(decoded.ppi, expected_ppi, "{name}: ppi");

        let mut max = 0u8;
        let mut sum = 0u64;
        for (&a, &b) in decoded.image.pixels.iter().zip(&reference.pixels) {
            let d = a.abs_diff(b);
            max = max.max(d);
            sum += u64::from(d);
        }
        let n = reference.pixels.len() as u64;
        let mean = sum as f64 / n as f64;
        eprintln!(
            "{name}: {}x{} max|diff| {max} mean|diff| {mean:.5} ({:.1} ms)",
            reference.width,
            reference.height,
            elapsed.as_secs_f64() * 1e3
        );
        assert!(
            max <= MAX_ABS_DIFF,
            "{name}: max abs diff {max} > {MAX_ABS_DIFF}"
        );
        assert!(
            mean < MAX_MEAN_ABS_DIFF,
            "{name}: mean abs diff {mean} >= {MAX_MEAN_ABS_DIFF}"
        );

        totals.files += 1;
        totals.pixels += n;
        totals.abs_diff_sum += sum;
        totals.max_abs_diff = totals.max_abs_diff.max(max);
        totals.exact_files += usize::from(max == 0);
    }
    eprintln!(
        "{}: {} files, {} pixels, max|diff| {}, mean|diff| {:.6}, {} bit-exact",
        dir.display(),
        totals.files,
        totals.pixels,
        totals.max_abs_diff,
        totals.abs_diff_sum as f64 / totals.pixels.max(1) as f64,
        totals.exact_files
    );
    totals
}

#[test]
fn committed_wsq_fixtures_match_the_reference_decoder() {
    let totals = check_against_reference(&committed_dir());
    assert!(
        totals.files >= 5,
        "expected the committed fixtures, found {}",
        totals.files
    );
}

#[test]
fn real_fingerprint_wsq_fixtures_match_the_reference_decoder() {
    let dir = cache_dir();
    if !dir.is_dir() {
        abis_testkit::skip(
            &format!("WSQ fixtures from real fingerprints at {}", dir.display()),
            "run `make setup` (scripts/wsq_fixtures.py) or set ABIS_WSQ_FIXTURES",
        );
        return;
    }
    let totals = check_against_reference(&dir);
    assert!(
        totals.files > 0,
        "{} exists but holds no .wsq/.pgm fixtures",
        dir.display()
    );
}

// ---------------------------------------------------------------------------------------
// Damaged and hostile input

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(committed_dir().join(name)).unwrap()
}

/// Offset of the first segment with `marker`, found by walking the marker segments.
fn segment_offset(wsq: &[u8], marker: u16) -> usize {
    let mut pos = 2; // after SOI
    loop {
        let m = u16::from_be_bytes([wsq[pos], wsq[pos + 1]]);
        if m == marker {
            return pos;
        }
        let len = u16::from_be_bytes([wsq[pos + 2], wsq[pos + 3]]) as usize;
        pos += 2 + len;
    }
}

#[test]
fn every_truncation_of_a_valid_wsq_file_is_an_error() {
    let limits = Limits::default();
    for name in ["ridges_97x119_br075.wsq", "ridges_97x119_br225.wsq"] {
        let wsq = fixture(name);
        assert!(decode(&wsq, &limits).is_ok());
        for len in 0..wsq.len() {
            let result = decode(&wsq[..len], &limits);
            assert!(
                result.is_err(),
                "{name} cut to {len} of {} bytes decoded",
                wsq.len()
            );
        }
    }
}

#[test]
fn huge_claimed_wsq_dimensions_are_refused_before_allocating() {
    let mut wsq = fixture("ridges_97x119_br075.wsq");
    let sof = segment_offset(&wsq, 0xFFA2);
    // SOF payload: length(2) black(1) white(1) height(2) width(2) ...
    wsq[sof + 6..sof + 8].copy_from_slice(&60_000u16.to_be_bytes());
    wsq[sof + 8..sof + 10].copy_from_slice(&60_000u16.to_be_bytes());

    let (result, largest) = largest_allocation(|| decode(&wsq, &Limits::default()));
    assert!(
        matches!(
            result,
            Err(ImageError::BadDimensions {
                width: 60_000,
                height: 60_000,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        largest < 64 * 1024,
        "allocated {largest} bytes before refusing"
    );

    let wide = Limits {
        max_side: 65_535,
        ..Limits::default()
    };
    let (result, largest) = largest_allocation(|| decode(&wsq, &wide));
    assert!(
        matches!(result, Err(ImageError::TooManyPixels { .. })),
        "{result:?}"
    );
    assert!(
        largest < 64 * 1024,
        "allocated {largest} bytes before refusing"
    );

    // Within the limits but far larger than the data: fails on the data, and the buffers
    // grow only with what was actually decoded.
    wsq[sof + 6..sof + 8].copy_from_slice(&4_000u16.to_be_bytes());
    wsq[sof + 8..sof + 10].copy_from_slice(&4_000u16.to_be_bytes());
    let (result, largest) = largest_allocation(|| decode(&wsq, &Limits::default()));
    assert!(result.is_err());
    assert!(
        largest < 4_000 * 4_000,
        "allocated {largest} bytes for a frame the data cannot fill"
    );

    let tiny = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&fixture("ridges_97x119_br075.wsq"), &tiny),
        Err(ImageError::TooManyBytes { .. })
    ));
}

#[test]
fn damaged_wsq_tables_and_markers_are_typed_errors() {
    let limits = Limits::default();
    let good = fixture("ridges_97x119_br075.wsq");
    let corrupt = |bytes: &[u8]| {
        matches!(
            decode(bytes, &limits),
            Err(ImageError::Corrupt { format: "WSQ", .. })
        )
    };

    // Missing SOI.
    assert!(corrupt(&good[2..]));
    // Block referring to an undefined Huffman table.
    let mut bad = good.clone();
    let sob = segment_offset(&bad, 0xFFA3);
    bad[sob + 4] = 7;
    assert!(corrupt(&bad));
    // Huffman table id out of range.
    let mut bad = good.clone();
    let dht = segment_offset(&bad, 0xFFA6);
    bad[dht + 4] = 200;
    assert!(corrupt(&bad));
    // Segment length running past the end of the file.
    let mut bad = good.clone();
    let dqt = segment_offset(&bad, 0xFFA5);
    bad[dqt + 2..dqt + 4].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(corrupt(&bad));
    // Frame of zero width.
    let mut bad = good.clone();
    let sof = segment_offset(&bad, 0xFFA2);
    bad[sof + 8..sof + 10].copy_from_slice(&0u16.to_be_bytes());
    assert!(decode(&bad, &limits).is_err());
    // A frame too small for the five-level wavelet tree.
    let mut bad = good.clone();
    bad[sof + 6..sof + 8].copy_from_slice(&40u16.to_be_bytes());
    bad[sof + 8..sof + 10].copy_from_slice(&40u16.to_be_bytes());
    assert!(matches!(
        decode(&bad, &limits),
        Err(ImageError::Unsupported { format: "WSQ", .. })
    ));
    // Filters of unsupported (even) length.
    let mut bad = good.clone();
    let dtt = segment_offset(&bad, 0xFFA4);
    bad[dtt + 4] = 8;
    assert!(matches!(
        decode(&bad, &limits),
        Err(ImageError::Unsupported { format: "WSQ", .. })
    ));
    // Trailing bytes after EOI are ignored.
    let mut extra = good.clone();
    extra.extend_from_slice(b"trailing");
    assert!(decode(&extra, &limits).is_ok());
}

#[test]
fn is_wsq_recognises_the_start_of_image_marker() {
    for (wsq, _) in fixture_pairs(&committed_dir()) {
        assert!(is_wsq(&std::fs::read(wsq).unwrap()));
    }
    assert!(!is_wsq(b""));
    assert!(!is_wsq(&[0xFF]));
    assert!(!is_wsq(&[0xFF, 0xD8, 0xFF, 0xE0]));
    assert!(!is_wsq(b"\x89PNG\r\n\x1a\n"));
    assert!(!is_wsq(&[0xA0, 0xFF]));
}

/// 512 cases per property unless `PROPTEST_CASES` asks for another number (for longer
/// local runs); no regression files are written.
fn fuzz_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fuzz_limits() -> Limits {
    Limits {
        max_pixels: 4_000_000,
        ..Limits::default()
    }
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn random_bytes_never_panic_the_wsq_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes, &fuzz_limits());
    }

    #[test]
    fn random_bytes_after_a_wsq_start_marker_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut wsq = vec![0xFF, 0xA0];
        wsq.extend(bytes);
        let _ = decode(&wsq, &fuzz_limits());
    }

    #[test]
    fn mutated_valid_wsq_files_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let name = ["ridges_97x119_br075.wsq", "ridges_97x119_br225.wsq", "ridges_nonistppi_64x72_br075.wsq"][which];
        let mut wsq = fixture(name);
        for (at, byte, kind) in edits {
            let i = at.index(wsq.len());
            match kind {
                0 => wsq[i] = byte,
                1 => wsq[i] ^= 1 << (byte % 8),
                2 => wsq.insert(i, byte),
                _ => { wsq.remove(i); }
            }
        }
        if truncate {
            let len = cut.index(wsq.len() + 1);
            wsq.truncate(len);
        }
        let _ = decode(&wsq, &fuzz_limits());
    }
}
