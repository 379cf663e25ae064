//! End-to-end: `abis face ...` as a person would run it, on ATT/ORL faces.
//! Skipped, counted, without the face models or the data (a failure under ABIS_REQUIRE_DATA=1).

mod support;

use std::path::PathBuf;

#[track_caller]
fn att() -> Option<PathBuf> {
    if !support::face_models_ready() {
        return None;
    }
    abis_testkit::shared("face/ATT_ORL/s1/1.pgm")?;
    abis_testkit::shared("face/ATT_ORL")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn detect_embed_verify() {
    let Some(att) = att() else { return };
    let a = att.join("s4/1.pgm");
    let d = json(
        &support::abis()
            .args(["face", "detect"])
            .arg(&a)
            .output()
            .unwrap(),
    );
    assert_eq!(d["faces"].as_array().unwrap().len(), 1);
    assert!(d["faces"][0]["quality"]["inter_eye_px"].as_f64().unwrap() > 15.0);

    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("s4_1.abft");
    let e = json(
        &support::abis()
            .args(["face", "embed", "--portrait", "-o"])
            .arg(&t)
            .arg(&a)
            .output()
            .unwrap(),
    );
    assert_eq!(e["dimension"], 192);
    assert!(std::fs::read(&t).unwrap().starts_with(b"ABFT"));

    // Same person: stored template vs image.
    let v = json(
        &support::abis()
            .args(["face", "verify", "--portrait", "--fmr", "1e-3"])
            .arg(&t)
            .arg(att.join("s4/7.pgm"))
            .output()
            .unwrap(),
    );
    assert_eq!(v["decision"], "match", "{v}");
    assert_eq!(v["a"]["source"], "template");
    assert!(v["b"]["quality"]["sharpness"].as_f64().unwrap() > 0.0);
    assert!(v["b"]["presentation_attack_score"].is_number());
    // Different people.
    let v = json(
        &support::abis()
            .args(["face", "verify", "--portrait"])
            .arg(&a)
            .arg(att.join("s30/2.pgm"))
            .output()
            .unwrap(),
    );
    assert_eq!(v["decision"], "no-match", "{v}");
    assert!(v["score"].as_f64().unwrap() < v["threshold"].as_f64().unwrap());

    // A bad image is an error on stderr with a non-zero exit, not a panic.
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"\xFF\xD8\xFF garbage").unwrap();
    let out = support::abis()
        .args(["face", "verify"])
        .arg(&bad)
        .arg(&a)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
}

#[test]
fn eval_on_a_small_folder_counts_failures() {
    let Some(att) = att() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Sub-folder layout: 3 identities x 3 images, plus one unreadable "image".
    for id in ["s1", "s2", "s3"] {
        std::fs::create_dir(dir.path().join(id)).unwrap();
        for k in 1..=3 {
            std::fs::copy(
                att.join(format!("{id}/{k}.pgm")),
                dir.path().join(format!("{id}/{k}.pgm")),
            )
            .unwrap();
        }
    }
    std::fs::write(dir.path().join("s3/broken.pgm"), b"P5 garbage").unwrap();
    let scores = dir.path().join("scores.csv");
    let det = dir.path().join("det.png");
    let r = json(
        &support::abis()
            .args(["face", "eval", "--portrait", "--scores"])
            .arg(&scores)
            .arg("--det")
            .arg(&det)
            .arg(dir.path())
            .output()
            .unwrap(),
    );
    assert_eq!(r["samples"], 10);
    assert_eq!(r["failed_to_enroll"], 1);
    assert_eq!(r["genuine"], 3 * 3 + 3);
    assert_eq!(
        r["genuine"].as_u64().unwrap() + r["impostor"].as_u64().unwrap(),
        45
    );
    let csv = std::fs::read_to_string(&scores).unwrap();
    assert_eq!(csv.lines().count(), 1 + 45);
    assert!(csv
        .lines()
        .any(|l| l.contains("broken") && l.contains(",-1.0000,")));
    assert!(std::fs::read(&det).unwrap().starts_with(b"\x89PNG"));
}
