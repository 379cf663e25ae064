//! SCRFD (InsightFace) output decoding, for operators who bring `det_10g.onnx` or a sibling.
//!
//! The image is letterboxed into the square input (scaled to fit, placed top-left, zero
//! elsewhere); for each stride s in 8/16/32 the network gives, per anchor (row-major locations
//! of the `ceil(size/s)` grid, `anchors_per_location` anchors each, all at the location's
//! top-left corner `(x * s, y * s)`):
//!
//! - a score `[A, 1]` (already a probability);
//! - a box `[A, 4]`: distances (left, top, right, bottom) in units of the stride:
//!   `x1 = cx - l * s`, `y1 = cy - t * s`, `x2 = cx + r * s`, `y2 = cy + b * s`;
//! - 5 keypoints `[A, 10]`: `(cx + dx * s, cy + dy * s)` pairs.
//!
//! Candidates with score >= threshold go through NMS (IoU 0.4, continuous extents) and are
//! mapped back to the original image by dividing by the letterbox scale.

use super::geometry::{nms, Candidate, Overlap};
use super::FaceError;

/// The raw outputs for one stride.
pub struct StrideOutputs<'a> {
    pub stride: u32,
    pub scores: &'a [f32],
    pub boxes: &'a [f32],
    /// Empty when the model has no keypoints.
    pub keypoints: &'a [f32],
}

/// Decodes the outputs of a `size` x `size` input into faces of the original image, where the
/// image was scaled by `letterbox_scale` before being placed top-left.
pub fn decode(
    outputs: &[StrideOutputs<'_>],
    size: u32,
    anchors_per_location: usize,
    score_threshold: f32,
    nms_iou: f32,
    letterbox_scale: f32,
) -> Result<Vec<Candidate>, FaceError> {
    if !(letterbox_scale.is_finite() && letterbox_scale > 0.0) || anchors_per_location == 0 {
        return Err(FaceError::Config(
            "SCRFD: bad letterbox scale or anchors".into(),
        ));
    }
    let mut found = Vec::new();
    for o in outputs {
        if o.stride == 0 {
            return Err(FaceError::Config("SCRFD: stride 0".into()));
        }
        let grid = size.div_ceil(o.stride) as usize;
        let n = grid * grid * anchors_per_location;
        let has_kps = !o.keypoints.is_empty();
        if o.scores.len() != n || o.boxes.len() != n * 4 || (has_kps && o.keypoints.len() != n * 10)
        {
            return Err(FaceError::Config(format!(
                "SCRFD stride {}: {} scores, {} box values, {} keypoint values for {n} anchors",
                o.stride,
                o.scores.len(),
                o.boxes.len(),
                o.keypoints.len()
            )));
        }
        let s = o.stride as f32;
        for (i, &score) in o.scores.iter().enumerate() {
            // NaN scores are not faces either.
            if score.is_nan() || score < score_threshold {
                continue;
            }
            let loc = i / anchors_per_location;
            let (cx, cy) = ((loc % grid) as f32 * s, (loc / grid) as f32 * s);
            let d = &o.boxes[i * 4..i * 4 + 4];
            let mut c = Candidate::new(
                cx - d[0] * s,
                cy - d[1] * s,
                cx + d[2] * s,
                cy + d[3] * s,
                score,
            );
            if has_kps {
                let k = &o.keypoints[i * 10..i * 10 + 10];
                for j in 0..5 {
                    c.landmarks[j] = [cx + k[2 * j] * s, cy + k[2 * j + 1] * s];
                }
            }
            found.push(c);
        }
    }
    let mut kept = nms(found, nms_iou, Overlap::Union, false);
    for c in &mut kept {
        c.x1 /= letterbox_scale;
        c.y1 /= letterbox_scale;
        c.x2 /= letterbox_scale;
        c.y2 /= letterbox_scale;
        for p in &mut c.landmarks {
            p[0] /= letterbox_scale;
            p[1] /= letterbox_scale;
        }
    }
    Ok(kept)
}

/// The scale that fits a `w` x `h` image into a `size` square (keeping its aspect).
pub fn letterbox_scale(w: u32, h: u32, size: u32) -> f32 {
    (size as f32 / w.max(1) as f32).min(size as f32 / h.max(1) as f32)
}
