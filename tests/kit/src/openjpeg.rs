//! JPEG 2000 test images made by OpenJPEG's reference encoder, `opj_compress` (Debian's
//! `libopenjp2-tools`), so that the decoders are checked on files they did not write.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::require;

/// `opj_compress` on PATH, or a skip (see the crate's rule).
#[track_caller]
pub fn opj_compress_installed() -> Option<PathBuf> {
    let tool = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("opj_compress"))
            .find(|p| p.is_file())
    });
    require(tool, "opj_compress", "make setup installs libopenjp2-tools")
}

/// An 8-bit gray image (`width` x `height`, row-major `pixels`) as a JP2 file: lossless without
/// `ratio`, else compressed `ratio`:1. `None` (a skip) without the tool.
#[track_caller]
pub fn jpeg2000(width: u32, height: u32, pixels: &[u8], ratio: Option<u32>) -> Option<Vec<u8>> {
    let tool = opj_compress_installed()?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let stem = std::env::temp_dir().join(format!("abis-opj-{}-{n}", std::process::id()));
    let (input, output) = (stem.with_extension("pgm"), stem.with_extension("jp2"));
    let mut pgm = format!("P5\n{width} {height}\n255\n").into_bytes();
    pgm.extend_from_slice(pixels);
    std::fs::write(&input, pgm).expect("write the PGM for opj_compress");
    let mut command = Command::new(tool);
    command.arg("-i").arg(&input).arg("-o").arg(&output);
    if let Some(ratio) = ratio {
        command.args(["-r", &ratio.to_string()]);
    }
    let status = command
        .stdout(crate::log_to(&stem.with_extension("log")))
        .status()
        .expect("run opj_compress");
    let _ = std::fs::remove_file(&input);
    assert!(status.success(), "opj_compress failed");
    let _ = std::fs::remove_file(stem.with_extension("log"));
    let jp2 = std::fs::read(&output).expect("read opj_compress's output");
    let _ = std::fs::remove_file(&output);
    Some(jp2)
}
