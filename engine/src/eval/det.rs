//! DET plot (FNMR against FMR, both on log axes) as a PNG.
//!
//! Built without a font backend, so the picture carries no text: the x axis is FMR from 1e-4
//! (left) to 1 (right), the y axis FNMR from 1e-3 (bottom) to 1 (top), with a grid line at every
//! decade; the dashed-looking grey diagonal is FMR = FNMR (the EER is where a curve crosses it).
//! Rates of exactly zero are drawn at the axis floor.

use std::path::Path;

use plotters::prelude::*;
use thiserror::Error;

use super::DetPoint;

/// Why the DET plot could not be drawn.
#[derive(Debug, Error)]
#[error("drawing the DET plot: {0}")]
pub struct DetError(String);

const FMR_FLOOR: f64 = 1e-4;
const FNMR_FLOOR: f64 = 1e-3;

/// Draws one curve per `(label, points)` (labels are not drawn; colours cycle blue, red, green,
/// magenta, cyan, black) into a `width` x `height` PNG at `path`.
pub fn draw_det_png(
    path: &Path,
    curves: &[(&str, &[DetPoint])],
    width: u32,
    height: u32,
) -> Result<(), DetError> {
    let err = |e: &dyn std::fmt::Display| DetError(e.to_string());
    let root = BitMapBackend::new(path, (width.max(64), height.max(64))).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(16)
        .build_cartesian_2d(
            (FMR_FLOOR..1.0f64).log_scale(),
            (FNMR_FLOOR..1.0f64).log_scale(),
        )
        .map_err(|e| err(&e))?;
    let grey = RGBColor(200, 200, 200);
    // Decade grid and frame.
    let mut decade = FMR_FLOOR;
    while decade <= 1.0 + 1e-12 {
        chart
            .draw_series(LineSeries::new([(decade, FNMR_FLOOR), (decade, 1.0)], grey))
            .map_err(|e| err(&e))?;
        decade *= 10.0;
    }
    let mut decade = FNMR_FLOOR;
    while decade <= 1.0 + 1e-12 {
        chart
            .draw_series(LineSeries::new([(FMR_FLOOR, decade), (1.0, decade)], grey))
            .map_err(|e| err(&e))?;
        decade *= 10.0;
    }
    chart
        .draw_series(LineSeries::new(
            [(FNMR_FLOOR, FNMR_FLOOR), (1.0, 1.0)],
            RGBColor(150, 150, 150),
        ))
        .map_err(|e| err(&e))?;
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (k, (_, points)) in curves.iter().enumerate() {
        let colour = colours[k % colours.len()];
        let series = points
            .iter()
            .map(|p| (p.fmr.clamp(FMR_FLOOR, 1.0), p.fnmr.clamp(FNMR_FLOOR, 1.0)));
        chart
            .draw_series(LineSeries::new(series, colour.stroke_width(2)))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Metrics;

    #[test]
    fn draws_a_png() {
        let m = Metrics::compute(&[3.0, 4.0, 5.0, 1.5], &[1.0, 2.0, 3.5, 0.5]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("det.png");
        draw_det_png(&path, &[("test", &m.curve)], 320, 240).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"));
    }
}
