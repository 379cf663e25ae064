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
