//! MTCNN (Zhang et al. 2016) as the reference port of these weights runs it (facenet's
//! `detect_face`, the conventions of shared/docs/models.md):
//!
//! 1. image pyramid: scales `12/min_face * 0.709^k` while the shorter side stays >= 12 px;
//!    each level resized with area averaging;
//! 2. **P-Net** on every level, fed **transposed** (tensor `[1, W, H, 3]`, RGB,
//!    `(x - 127.5) * 0.0078125`); each output cell `(p, q)` (p along image x) is a 12x12 window at
//!    stride 2, kept when its face probability is >= 0.6; box corners in the original's 1-based
//!    inclusive convention `x1 = fix((2p + 1) / s)`, `x2 = fix((2p + 12) / s)`; NMS 0.5 within
//!    a level, 0.7 across levels, then box regression `(dx1, dy1, dx2, dy2) * (w, h)` and
//!    squaring;
//! 3. **R-Net** on 24x24 crops (zero outside the image, transposed): keep >= 0.7, NMS 0.7,
//!    regression (`w = x2 - x1 + 1`), squaring;
//! 4. **O-Net** on 48x48 crops: keep >= 0.7; landmarks `x = x1 + v * w - 1` (5 x, then 5 y);
//!    regression; NMS 0.7 over the *smaller* box.
//!
//! Why transposed: the Caffe originals were trained from MATLAB, which stores images
//! column-major; every faithful port feeds the image with x and y swapped. Without it most faces
//! are missed and the landmarks are nonsense. The manifest states it (`transposed = true`).
//!
//! Reported boxes and landmarks are converted to 0-based pixel coordinates of the input image.

use std::sync::Arc;

use ndarray::ArrayD;

use super::config::{FaceManifest, InputContract, MtcnnParams};
use super::geometry::{nms, Candidate, Overlap, RgbF32};
use super::net::{expect_shape, run};
use super::tensor::{batch_shape, item_dims, write_item};
use super::FaceError;
use crate::model::{Runtime, SessionPool};

struct Stage {
    pool: SessionPool,
    contract: InputContract,
    input: String,
    outputs: Vec<String>,
}

impl Stage {
    fn open(
        runtime: &Arc<Runtime>,
        manifest: &FaceManifest,
        name: &str,
        n_out: usize,
    ) -> Result<Stage, FaceError> {
        let spec = manifest.model(name)?;
        let contract = spec.contract()?;
        if contract.nchw {
            return Err(FaceError::Config(format!(
                "{name}: MTCNN stages are NHWC graphs"
            )));
        }
        let outputs: Vec<String> = (0..n_out)
            .map(|i| spec.output(i).map(|o| o.name.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Stage {
            pool: runtime.pool(name)?,
            contract,
            input: spec.input.name.clone(),
            outputs,
        })
    }

    fn run_batch(&self, items: &[RgbF32]) -> Result<Vec<super::net::Output>, FaceError> {
        let first = items
            .first()
            .ok_or_else(|| FaceError::Config("empty batch".into()))?;
        let (rows, cols) = item_dims(first, &self.contract);
        let shape = batch_shape(items.len(), rows, cols, &self.contract);
        let per = rows * cols * 3;
        let mut data = vec![0f32; per * items.len()];
        for (item, chunk) in items.iter().zip(data.chunks_exact_mut(per)) {
            write_item(item, &self.contract, chunk);
        }
        let input =
            ArrayD::from_shape_vec(shape, data).map_err(|e| FaceError::Config(e.to_string()))?;
        let names: Vec<&str> = self.outputs.iter().map(String::as_str).collect();
        run(&self.pool, &self.input, &input, &names)
    }
}

/// The three MTCNN networks and their parameters.
pub struct Mtcnn {
    pnet: Stage,
    rnet: Stage,
    onet: Stage,
    pub params: MtcnnParams,
}

/// Crops are run in batches of at most this many (bounded memory for crowded pictures).
const MAX_BATCH: usize = 128;

impl Mtcnn {
    pub fn open(runtime: &Arc<Runtime>, manifest: &FaceManifest) -> Result<Mtcnn, FaceError> {
        let names = &manifest.face.mtcnn;
        if names.len() != 3 {
            return Err(FaceError::Config(
                "[face] mtcnn must name the P-Net, R-Net and O-Net models".into(),
            ));
        }
        Ok(Mtcnn {
            pnet: Stage::open(runtime, manifest, &names[0], 2)?,
            rnet: Stage::open(runtime, manifest, &names[1], 2)?,
            onet: Stage::open(runtime, manifest, &names[2], 3)?,
            params: manifest.face.mtcnn_params,
        })
    }

    /// Faces in `img` (already downscaled by the caller if large), best score first, with
    /// boxes and landmarks in 0-based pixel coordinates.
    ///
    /// `min_face` overrides the manifest's smallest face (pixels of `img`): the pyramid starts
    /// at `12 / min_face`, so its cost falls with the square of `min_face`.
    pub fn detect(&self, img: &RgbF32, min_face: Option<f32>) -> Result<Vec<Candidate>, FaceError> {
        let boxes = self.stage1(img, min_face.unwrap_or(self.params.min_face))?;
        if boxes.is_empty() {
            return Ok(boxes);
        }
        let boxes = self.stage2(img, boxes)?;
        if boxes.is_empty() {
            return Ok(boxes);
        }
        let mut faces = self.stage3(img, boxes)?;
        // Back to 0-based pixel coordinates: [x1 - 1, x2) in the 1-based inclusive convention.
        for f in &mut faces {
            f.x1 -= 1.0;
            f.y1 -= 1.0;
        }
        Ok(faces)
    }

    fn stage1(&self, img: &RgbF32, min_face: f32) -> Result<Vec<Candidate>, FaceError> {
        let p = &self.params;
        let (h, w) = (img.height as f32, img.width as f32);
        let m = 12.0 / min_face.max(12.0);
        let mut minl = h.min(w) * m;
        let mut scales = Vec::new();
        let mut s = m;
        while minl >= 12.0 && scales.len() < 64 {
            scales.push(s);
            s *= p.scale_factor;
            minl *= p.scale_factor;
        }
        let mut all = Vec::new();
        for &scale in &scales {
            let hs = (h * scale).ceil() as usize;
            let ws = (w * scale).ceil() as usize;
            if hs < 12 || ws < 12 {
                continue;
            }
            let level = img.resize(ws, hs);
            let out = self.pnet.run_batch(std::slice::from_ref(&level))?;
            let (prob, reg) = (&out[0], &out[1]);
            // Transposed output: [1, w', h', C] with the first spatial axis along image x.
            expect_shape(self.pnet.pool.name(), prob, &[1, 0, 0, 2])?;
            let (pw, ph) = (prob.shape[1], prob.shape[2]);
            expect_shape(self.pnet.pool.name(), reg, &[1, pw, ph, 4])?;
            let mut level_boxes = Vec::new();
            for px in 0..pw {
                for qy in 0..ph {
                    let at = px * ph + qy;
                    let score = prob.data[at * 2 + 1];
                    if score < p.thresholds[0] {
                        continue;
                    }
                    let (bx, by) = (px as f32, qy as f32);
                    let mut c = Candidate::new(
                        ((2.0 * bx + 1.0) / scale).trunc(),
                        ((2.0 * by + 1.0) / scale).trunc(),
                        ((2.0 * bx + 12.0) / scale).trunc(),
                        ((2.0 * by + 12.0) / scale).trunc(),
                        score,
                    );
                    c.reg.copy_from_slice(&reg.data[at * 4..at * 4 + 4]);
                    level_boxes.push(c);
                }
            }
            all.extend(nms(level_boxes, p.nms_within_scale, Overlap::Union, true));
        }
        let mut boxes = nms(all, p.nms_across_scales, Overlap::Union, true);
        for b in &mut boxes {
            // The reference regresses P-Net boxes with w = x2 - x1 (no +1).
            let (rw, rh) = (b.x2 - b.x1, b.y2 - b.y1);
            *b = Candidate::new(
                b.x1 + b.reg[0] * rw,
                b.y1 + b.reg[1] * rh,
                b.x2 + b.reg[2] * rw,
                b.y2 + b.reg[3] * rh,
                b.score,
            );
            square(b);
        }
        Ok(boxes)
    }

    fn crops(&self, img: &RgbF32, boxes: &[Candidate], size: usize) -> Vec<RgbF32> {
        boxes
            .iter()
            .map(|b| {
                // 1-based inclusive [x1, x2] -> 0-based [x1 - 1, x2).
                let (x1, y1) = (b.x1.trunc() as i64 - 1, b.y1.trunc() as i64 - 1);
                let (x2, y2) = (b.x2.trunc() as i64, b.y2.trunc() as i64);
                img.crop_resize(x1, y1, x2, y2, size)
            })
            .collect()
    }

    fn stage2(&self, img: &RgbF32, boxes: Vec<Candidate>) -> Result<Vec<Candidate>, FaceError> {
        let p = &self.params;
        let boxes: Vec<Candidate> = boxes.into_iter().filter(finite).map(fix).collect();
        let mut kept = Vec::new();
        for chunk in boxes.chunks(MAX_BATCH) {
            let crops = self.crops(img, chunk, 24);
            let out = self.rnet.run_batch(&crops)?;
            let n = chunk.len();
            expect_shape(self.rnet.pool.name(), &out[0], &[n, 2])?;
            expect_shape(self.rnet.pool.name(), &out[1], &[n, 4])?;
            for (i, b) in chunk.iter().enumerate() {
                let score = out[0].data[i * 2 + 1];
                if score > p.thresholds[1] {
                    let mut c = *b;
                    c.score = score;
                    c.reg.copy_from_slice(&out[1].data[i * 4..i * 4 + 4]);
                    kept.push(c);
                }
            }
        }
        let mut kept = nms(kept, p.nms_rnet, Overlap::Union, true);
        for b in &mut kept {
            regress(b);
            square(b);
        }
        Ok(kept)
    }

    fn stage3(&self, img: &RgbF32, boxes: Vec<Candidate>) -> Result<Vec<Candidate>, FaceError> {
        let p = &self.params;
        let boxes: Vec<Candidate> = boxes.into_iter().filter(finite).map(fix).collect();
        let mut kept = Vec::new();
        for chunk in boxes.chunks(MAX_BATCH) {
            let crops = self.crops(img, chunk, 48);
            let out = self.onet.run_batch(&crops)?;
            let n = chunk.len();
            expect_shape(self.onet.pool.name(), &out[0], &[n, 2])?;
            expect_shape(self.onet.pool.name(), &out[1], &[n, 4])?;
            expect_shape(self.onet.pool.name(), &out[2], &[n, 10])?;
            for (i, b) in chunk.iter().enumerate() {
                let score = out[0].data[i * 2 + 1];
                if score <= p.thresholds[2] {
                    continue;
                }
                let mut c = *b;
                c.score = score;
                c.reg.copy_from_slice(&out[1].data[i * 4..i * 4 + 4]);
                let (w, h) = (c.x2 - c.x1 + 1.0, c.y2 - c.y1 + 1.0);
                let lm = &out[2].data[i * 10..i * 10 + 10];
                for k in 0..5 {
                    c.landmarks[k] = [c.x1 + lm[k] * w - 1.0, c.y1 + lm[k + 5] * h - 1.0];
                }
                regress(&mut c);
                kept.push(c);
            }
        }
        Ok(nms(kept, p.nms_onet_min, Overlap::Min, true))
    }
}

fn finite(c: &Candidate) -> bool {
    [c.x1, c.y1, c.x2, c.y2].iter().all(|v| v.is_finite()) && c.x2 > c.x1 && c.y2 > c.y1
}

/// `np.fix` of the corners (toward zero), as the reference does before cropping.
fn fix(mut c: Candidate) -> Candidate {
    c.x1 = c.x1.trunc();
    c.y1 = c.y1.trunc();
    c.x2 = c.x2.trunc();
    c.y2 = c.y2.trunc();
    c
}

/// Box regression with inclusive widths (`bbreg`).
fn regress(c: &mut Candidate) {
    let (w, h) = (c.x2 - c.x1 + 1.0, c.y2 - c.y1 + 1.0);
    c.x1 += c.reg[0] * w;
    c.y1 += c.reg[1] * h;
    c.x2 += c.reg[2] * w;
    c.y2 += c.reg[3] * h;
}

/// Makes the box square around its centre (`rerec`), side = the longer side.
fn square(c: &mut Candidate) {
    let (w, h) = (c.x2 - c.x1, c.y2 - c.y1);
    let l = w.max(h);
    c.x1 += w * 0.5 - l * 0.5;
    c.y1 += h * 0.5 - l * 0.5;
    c.x2 = c.x1 + l;
    c.y2 = c.y1 + l;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_and_regress() {
        let mut c = Candidate::new(10.0, 20.0, 30.0, 60.0, 1.0);
        square(&mut c);
        assert_eq!((c.x1, c.y1, c.x2, c.y2), (0.0, 20.0, 40.0, 60.0));
        c.reg = [0.1, 0.0, -0.1, 0.0];
        regress(&mut c);
        assert!((c.x1 - 4.1).abs() < 1e-5 && (c.x2 - 35.9).abs() < 1e-5);
    }
}
