//! Open time of large galleries built directly as one segment (no log), and the cost of the
//! first full verification and a scan. Timings are printed, never asserted.
//!
//! `cargo test -p abis-engine --release --test store_scale -- --ignored --nocapture` with
//! `ABIS_STORE_SCALE_N` (default 1,000,000), `ABIS_STORE_SCALE_DIM` (192),
//! `ABIS_STORE_SCALE_FINGERS` (0) and `ABIS_STORE_SCALE_DIR` (default: a temp dir).

use std::time::Instant;

use abis_engine::store::synth::build_synthetic_gallery;
use abis_engine::store::{Store, StoreConfig};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn measure(n: usize, dim: usize, fingers: usize, print: bool) {
    let tmp = match std::env::var("ABIS_STORE_SCALE_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let t = Instant::now();
    let bytes = build_synthetic_gallery(tmp.path(), n, dim, fingers, 42).unwrap();
    let build = t.elapsed();

    let mut c = StoreConfig::new(dim);
    c.background = false;
    let t = Instant::now();
    let (s, report) = Store::open(tmp.path(), c.clone()).unwrap();
    let open = t.elapsed();
    assert_eq!(s.count(), n as u64);
    assert_eq!(report.segments, 1);

    let t = Instant::now();
    let mid = format!("SYN{:012}", n / 2);
    let r = s.get(&mid).unwrap().unwrap();
    let first_get = t.elapsed();
    assert_eq!(r.faces.len(), usize::from(dim > 0));
    assert_eq!(r.fingers.len(), fingers);

    let snap = s.snapshot();
    let seg = &snap.segments()[0];
    let t = Instant::now();
    let faces = seg.faces().unwrap();
    let verify_faces = t.elapsed();
    assert_eq!(faces.rows(), if dim > 0 { n } else { 0 });

    // A plain exact scan: dot product of one probe against every row, in place.
    let probe: Vec<f32> = if dim > 0 {
        faces.row(n / 3).unwrap().to_vec()
    } else {
        Vec::new()
    };
    let t = Instant::now();
    let mut best = (f32::MIN, 0usize);
    for row in 0..faces.rows() {
        let d: f32 = faces
            .row(row)
            .unwrap()
            .iter()
            .zip(&probe)
            .map(|(a, b)| a * b)
            .sum();
        if d > best.0 {
            best = (d, row);
        }
    }
    let scan = t.elapsed();
    if dim > 0 {
        assert_eq!(faces.row_owner(best.1), n / 3);
    }
    drop(snap);
    drop(s);
    let t = Instant::now();
    let (s, _) = Store::open(tmp.path(), c).unwrap();
    let reopen = t.elapsed();
    assert_eq!(s.count(), n as u64);
    if print {
        println!(
            "scale: {n} records, dim {dim}, {fingers} fingers each: segment {:.2} GB built in {:.1} s; \
             open {:.1} ms (warm reopen {:.1} ms); first get {:.2} ms; first face-section \
             verification {:.2} s; f32 scan of all rows {:.2} s",
            bytes as f64 / 1e9,
            build.as_secs_f64(),
            open.as_secs_f64() * 1e3,
            reopen.as_secs_f64() * 1e3,
            first_get.as_secs_f64() * 1e3,
            verify_faces.as_secs_f64(),
            scan.as_secs_f64()
        );
    }
}

#[test]
fn store_scale_small_synthetic_gallery() {
    measure(20_000, 192, 2, true);
    measure(5_000, 0, 3, false);
}

#[test]
#[ignore = "large: run by hand with --release (see the file docs)"]
fn store_scale_open_time() {
    measure(
        env("ABIS_STORE_SCALE_N", 1_000_000),
        env("ABIS_STORE_SCALE_DIM", 192),
        env("ABIS_STORE_SCALE_FINGERS", 0),
        true,
    );
}
