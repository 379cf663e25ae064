//! LEADER inference and the decoding of its output into minutiae, exactly as the reference
//! implementation in the `afis` package decodes it (`afis/algorithms/leader.py`):
//! centre-pad to a multiple of 32 with the top-left pixel's value, run, crop the padding off,
//! keep every pixel whose quality channel is >= the threshold, order by quality (ties by row,
//! then column) and keep the best `max_minutiae`.

use std::sync::Arc;

use ndarray::Array4;
use ort::value::TensorRef;

use super::FingerError;
use crate::image::GrayImage;
use crate::model::{LeaderDecode, ModelError, Runtime, SessionPool};

/// A minutia as LEADER reports it, in the coordinates of the (500 ppi) image it was given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawMinutia {
    pub x: u32,
    pub y: u32,
    /// Radians in (-π, π] as LEADER reports them: counter-clockwise on screen (y up), the
    /// opposite of the engine's convention, which [`super::FingerExtractor`] converts to.
    pub direction: f32,
    pub ending: bool,
    /// LEADER's quality after non-maximum suppression, 0..1.
    pub quality: f32,
}

/// The LEADER network behind a session pool, with its decoding parameters.
pub struct LeaderModel {
    pool: SessionPool,
    input: String,
    output: String,
    multiple: usize,
    decode: LeaderDecode,
}

impl LeaderModel {
    pub fn open(runtime: &Arc<Runtime>, name: &str) -> Result<LeaderModel, FingerError> {
        let pool = runtime.pool(name)?;
        let spec = pool.spec().clone();
        let bad = |detail: &str| ModelError::Manifest {
            path: runtime.config().manifest.clone(),
            detail: format!("model {name}: {detail}"),
        };
        let decode = spec.decode.ok_or_else(|| bad("no [decode] parameters"))?;
        let output = spec
            .outputs
            .first()
            .ok_or_else(|| bad("no outputs"))?
            .name
            .clone();
        if spec.input.layout != "NHWC" || spec.input.channels.unwrap_or(1) != 1 {
            return Err(bad("a minutiae model must take NHWC single-channel input").into());
        }
        Ok(LeaderModel {
            pool,
            input: spec.input.name.clone(),
            output,
            multiple: spec.input.size_multiple.unwrap_or(1).max(1) as usize,
            decode,
        })
    }

    /// Runs the network on a 500 ppi image and decodes its minutiae.
    pub fn detect(&self, img: &GrayImage) -> Result<Vec<RawMinutia>, FingerError> {
        let (w, h) = (img.width as usize, img.height as usize);
        let m = self.multiple;
        let (pw, ph) = (w.div_ceil(m) * m, h.div_ceil(m) * m);
        let (left, top) = ((pw - w) / 2, (ph - h) / 2);

        let mut input = Array4::<f32>::from_elem((1, ph, pw, 1), img.pixels[0] as f32);
        for y in 0..h {
            let row = &img.pixels[y * w..(y + 1) * w];
            for (x, &v) in row.iter().enumerate() {
                input[[0, top + y, left + x, 0]] = v as f32;
            }
        }

        let name = self.pool.name().to_owned();
        let session_err = |e: ort::Error| ModelError::Session {
            name: name.clone(),
            detail: e.to_string(),
        };
        let mut session = self.pool.get()?;
        let tensor = TensorRef::from_array_view(input.view()).map_err(session_err)?;
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(session_err)?;
        let bad = |detail: String| ModelError::BadOutput {
            name: name.clone(),
            detail,
        };
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| bad(format!("no output named {}", self.output)))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(e.to_string()))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims != [1, ph as i64, pw as i64, 4] || data.len() != ph * pw * 4 {
            return Err(bad(format!("shape {dims:?}, expected [1, {ph}, {pw}, 4]")).into());
        }
        Ok(self.decode(data, pw, (left, top), (w, h)))
    }

    /// Reads minutiae out of the `[H, W, 4]` output, over the unpadded region only.
    fn decode(
        &self,
        data: &[f32],
        pw: usize,
        (left, top): (usize, usize),
        (w, h): (usize, usize),
    ) -> Vec<RawMinutia> {
        let mut found = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let at = ((top + y) * pw + left + x) * 4;
                let px = &data[at..at + 4];
                // Compared in f64 like the reference (numpy promotes the f32 output).
                if px[3] as f64 >= self.decode.quality_threshold {
                    found.push(RawMinutia {
                        x: x as u32,
                        y: y as u32,
                        direction: px[1],
                        ending: px[2] as f64 >= self.decode.type_threshold,
                        quality: px[3],
                    });
                }
            }
        }
        // Best quality first; equal qualities by row, then column, as the reference orders them.
        found.sort_by(|a, b| {
            b.quality
                .total_cmp(&a.quality)
                .then(a.y.cmp(&b.y))
                .then(a.x.cmp(&b.x))
        });
        found.truncate(self.decode.max_minutiae);
        found
    }
}
