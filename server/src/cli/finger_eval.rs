//! `abis finger eval`: the FVC protocol on a folder of `<finger>_<impression>` images (built
//! with the `eval` feature).

use std::io::IsTerminal;
use std::path::Path;

use abis_engine::eval;
use abis_engine::matcher::Matcher;
use anyhow::Context;
use serde_json::json;

use super::finger::{check_ppi, open_extractor, print_line};
use super::ModelsDir;

pub fn evaluate(
    models: &ModelsDir,
    dir: &Path,
    ppi: Option<f32>,
    scores: &Path,
    det: Option<&Path>,
) -> anyhow::Result<()> {
    check_ppi(ppi)?;
    // `EvalError` messages already name their cause: flattened so it is not printed twice.
    let flat = |e: eval::EvalError| anyhow::anyhow!("{e}");
    // Refuse a folder without samples before loading the model.
    eval::list_samples(dir).map_err(flat)?;
    let extractor = open_extractor(models)?;
    // Created before the (long) run, so a bad path fails at once.
    let file =
        std::fs::File::create(scores).with_context(|| format!("creating {}", scores.display()))?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report =
        eval::run_fvc_with_progress(dir, &extractor, &Matcher::new(), ppi, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .map_err(flat)?;
    bar.finish_and_clear();
    eval::write_scores_csv(std::io::BufWriter::new(file), &report.rows)
        .map_err(|e| anyhow::anyhow!("{}: {e}", scores.display()))?;
    let m = &report.metrics;
    if let Some(path) = det {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("scores");
        eval::draw_det_png(path, &[(name, &m.curve)], 800, 600)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print_line(&json!({
        "samples": report.samples,
        "genuine": m.genuine,
        "impostor": m.impostor,
        "failures_to_extract": report.failed_to_extract,
        "eer": m.eer,
        "fmr100": m.fmr100,
        "fmr1000": m.fmr1000,
        "zerofmr": m.zero_fmr,
        "mean_extraction_ms": report.mean_extract_ms,
        "mean_comparison_us": report.mean_compare_us,
        "scores": scores,
    }))
}
