//! End-to-end: `abis finger extract` as a person would run it.

mod support;

use abis_engine::template::{decode_ansi, decode_iso, decode_native, decode_xyt, XytGeometry};

#[test]
fn extract_prints_json_and_writes_every_template_format() {
    if !support::models_ready() {
        return;
    }
    let image = support::afis_sample("p1_1.png");
    let out = support::abis()
        .args(["finger", "extract"])
        .arg(&image)
        .output()
        .expect("run abis");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let count = json["template"]["minutiae"]
        .as_array()
        .expect("minutiae")
        .len();
    assert!(count >= 20, "{count} minutiae");
    // The afis PNGs state no resolution, so the 500 ppi default applies.
    assert_eq!(json["ppi_source"], "default");
    let dir = tempfile::tempdir().unwrap();
    for format in ["iso", "ansi", "xyt", "native"] {
        let path = dir.path().join(format!("t.{format}"));
        let out = support::abis()
            .args([
                "finger",
                "extract",
                "--position",
                "7",
                "--format",
                format,
                "-o",
            ])
            .arg(&path)
            .arg(&image)
            .output()
            .expect("run abis");
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&path).unwrap();
        let t = match format {
            "iso" => decode_iso(&bytes),
            "ansi" => decode_ansi(&bytes),
            "native" => decode_native(&bytes),
            _ => decode_xyt(
                &bytes,
                XytGeometry {
                    width: 400,
                    height: 500,
                    ppi: 500,
                },
            ),
        }
        .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(t.minutiae.len(), count, "{format}");
        if format != "xyt" {
            assert_eq!(t.position.code(), 7, "{format}");
        }
    }
}

#[test]
fn bad_input_fails_with_a_message_and_nonzero_exit() {
    if !support::models_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "finger".into(),
                "extract".into(),
                junk.display().to_string(),
            ],
            "corrupt PNG",
        ),
        (
            vec![
                "finger".into(),
                "extract".into(),
                "/nonexistent/x.png".into(),
            ],
            "reading",
        ),
        (
            vec![
                "finger".into(),
                "extract".into(),
                "--position".into(),
                "12".into(),
                junk.display().to_string(),
            ],
            "finger position",
        ),
    ];
    for (args, expected) in cases {
        let out = support::abis().args(&args).output().expect("run abis");
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: stderr {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: wrote to stdout");
    }
}

/// Runs `abis` with `args`, expects success, and parses the one JSON line on stdout.
fn run_json(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = support::abis().args(args).output().expect("run abis");
    assert!(
        out.status.success(),
        "{args:?}: stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn match_decides_same_and_different_fingers() {
    if !support::models_ready() {
        return;
    }
    let (p1_1, p1_2, p2_1) = (
        support::afis_sample("p1_1.png"),
        support::afis_sample("p1_2.png"),
        support::afis_sample("p2_1.png"),
    );
    let same = run_json(&[
        "finger".as_ref(),
        "match".as_ref(),
        p1_1.as_os_str(),
        p1_2.as_os_str(),
    ]);
    eprintln!("same finger: {same}");
    assert_eq!(same["decision"], true, "{same}");
    assert!(same["score"].as_f64().unwrap() >= 40.0, "{same}");
    assert!(same["fmr"].as_f64().unwrap() <= 1e-4, "{same}");
    assert_eq!(same["target_fmr"].as_f64(), Some(1e-4));
    assert!(same["pairs"].as_u64().unwrap() >= 8, "{same}");

    let different = run_json(&[
        "finger".as_ref(),
        "match".as_ref(),
        p1_1.as_os_str(),
        p2_1.as_os_str(),
    ]);
    eprintln!("different fingers: {different}");
    assert_eq!(different["decision"], false, "{different}");
    assert!(different["score"].as_f64().unwrap() < 30.0, "{different}");
    // At a target FMR of 1 every comparison is accepted; the score does not depend on it.
    let lax = run_json(&[
        "finger".as_ref(),
        "match".as_ref(),
        "--fmr".as_ref(),
        "1".as_ref(),
        p1_1.as_os_str(),
        p2_1.as_os_str(),
    ]);
    assert_eq!(lax["decision"], true, "{lax}");
    assert_eq!(lax["score"], different["score"], "{lax}");
}

#[test]
fn match_accepts_an_iso_template_against_an_image() {
    if !support::models_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("p1_1.iso");
    let out = support::abis()
        .args(["finger", "extract", "--format", "iso", "-o"])
        .arg(&iso)
        .arg(support::afis_sample("p1_1.png"))
        .output()
        .expect("run abis");
    assert!(
        out.status.success(),
        "extract: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p1_2 = support::afis_sample("p1_2.png");
    let v = run_json(&[
        "finger".as_ref(),
        "match".as_ref(),
        iso.as_os_str(),
        p1_2.as_os_str(),
    ]);
    eprintln!("ISO template vs image: {v}");
    assert_eq!(v["decision"], true, "{v}");
    assert!(v["score"].as_f64().unwrap() >= 40.0, "{v}");
    // Template on both sides: no model needed, same template scores itself as a match.
    let v = run_json(&[
        "finger".as_ref(),
        "match".as_ref(),
        iso.as_os_str(),
        iso.as_os_str(),
    ]);
    assert_eq!(v["decision"], true, "{v}");
    assert!(v.get("mated").is_none(), "pairs only on request: {v}");
    // With --pairs, a template against itself mates every minutia with itself, no motion.
    let v = run_json(&[
        "finger".as_ref(),
        "match".as_ref(),
        iso.as_os_str(),
        iso.as_os_str(),
        "--pairs".as_ref(),
    ]);
    let mated = v["mated"].as_array().expect("mated pairs");
    assert!(mated.len() >= 12, "{v}");
    assert!(mated.iter().all(|p| p[0] == p[1]), "{v}");
    assert!(
        v["alignment"]["rotation_deg"].as_f64().unwrap().abs() < 1.0,
        "{v}"
    );

    // A file that is neither a template nor an image fails with a message on stderr.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"FMR\0 not really a template").unwrap();
    let out = support::abis()
        .args(["finger", "match"])
        .arg(&junk)
        .arg(&p1_2)
        .output()
        .expect("run abis");
    assert!(!out.status.success(), "junk template accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("junk.bin"), "stderr {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn eval_runs_the_fvc_protocol_on_db3() {
    if !support::models_ready() {
        return;
    }
    let Some(set) = abis_testkit::shared("fingerprint/FVC2002_DB3_B") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (scores, det) = (dir.path().join("scores.csv"), dir.path().join("det.png"));
    let v = run_json(&[
        "finger".as_ref(),
        "eval".as_ref(),
        set.as_os_str(),
        "--scores".as_ref(),
        scores.as_os_str(),
        "--det".as_ref(),
        det.as_os_str(),
    ]);
    eprintln!("FVC2002 DB3_B: {v}");
    let csv = std::fs::read_to_string(&scores).expect("scores file");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "a,b,score");
    assert_eq!(lines.len(), 1 + 280 + 2880);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.split(',').count() == 3
                && l.rsplit(',').next().unwrap().parse::<f64>().is_ok())
    );
    assert_eq!(v["genuine"], 280, "{v}");
    assert_eq!(v["impostor"], 2880, "{v}");
    assert_eq!(v["failures_to_extract"], 0, "{v}");
    // Half of NBIS bozorth3's 8.7 % EER on this set.
    let eer = v["eer"].as_f64().expect("eer");
    assert!(eer < 0.0435, "EER {eer}");
    for key in ["fmr100", "fmr1000", "zerofmr"] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
        assert!((0.0..=1.0).contains(&x), "{key} {x}");
    }
    assert!(v["mean_extraction_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["mean_comparison_us"].as_f64().unwrap() > 0.0, "{v}");
    let png = std::fs::read(&det).expect("DET plot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
}

/// The models are found from any working folder (beside the executable's checkout), and when
/// none can be found the error names the places tried and how to get them.
#[test]
fn models_are_found_from_any_folder_or_the_places_tried_are_named() {
    if !support::models_ready() {
        return;
    }
    let image = support::afis_sample("p1_1.png");
    let elsewhere = tempfile::tempdir().unwrap();
    let extract_from = |exe: &std::path::Path| {
        std::process::Command::new(exe)
            .current_dir(elsewhere.path())
            .env_remove("ABIS_MODELS_DIR")
            .args(["finger", "extract"])
            .arg(&image)
            .output()
            .expect("run abis")
    };
    let out = extract_from(env!("CARGO_BIN_EXE_abis").as_ref());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "from another folder: {stderr}");

    // The same executable where no models are near it.
    let lonely = elsewhere.path().join("abis");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_abis"), &lonely).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_abis"), &lonely).expect("copy abis");
    }
    let out = extract_from(&lonely);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no models found")
            && stderr.contains("/usr/local/share/abis/models")
            && stderr.contains("make setup"),
        "stderr: {stderr}"
    );
}
