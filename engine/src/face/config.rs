//! The face-specific parts of `models/manifest.toml`: which models the pipeline uses (`[face]`)
//! and, per model, the input contract (layout, size, colour order, normalisation, batch), the
//! embedding dimension, SCRFD's output layout and the score calibration table.
//!
//! Read here rather than in [`crate::model::Manifest`] (which stays the generic part every model
//! shares): unknown keys are ignored there, so both read the same file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::FaceError;

#[derive(Debug, Clone, Deserialize)]
pub struct FaceManifest {
    pub face: FaceSection,
    pub models: BTreeMap<String, FaceModel>,
}

/// `[face]`: the models in use and the pipeline parameters.
#[derive(Debug, Clone, Deserialize)]
pub struct FaceSection {
    /// `"mtcnn"` or the name of a model with task `face-detect-scrfd`.
    pub detector: String,
    #[serde(default)]
    pub mtcnn: Vec<String>,
    pub embedder: String,
    /// Empty: no presentation-attack score.
    #[serde(default)]
    pub antispoof: String,
    pub template: [[f32; 2]; 5],
    #[serde(default)]
    pub mtcnn_params: MtcnnParams,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct MtcnnParams {
    pub thresholds: [f32; 3],
    pub scale_factor: f32,
    pub min_face: f32,
    pub nms_within_scale: f32,
    pub nms_across_scales: f32,
    pub nms_rnet: f32,
    pub nms_onet_min: f32,
    pub max_side: u32,
}

impl Default for MtcnnParams {
    fn default() -> Self {
        MtcnnParams {
            thresholds: [0.6, 0.7, 0.7],
            scale_factor: 0.709,
            min_face: 20.0,
            nms_within_scale: 0.5,
            nms_across_scales: 0.7,
            nms_rnet: 0.7,
            nms_onet_min: 0.7,
            max_side: 1024,
        }
    }
}

/// One `[models.NAME]` entry, the keys the face pipeline needs.
#[derive(Debug, Clone, Deserialize)]
pub struct FaceModel {
    pub task: String,
    pub input: FaceInput,
    #[serde(default)]
    pub outputs: Vec<FaceOutput>,
    #[serde(default)]
    pub scrfd: Option<ScrfdSpec>,
    #[serde(default)]
    pub calibration: Option<CalibrationSpec>,
    #[serde(default)]
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FaceInput {
    pub name: String,
    /// `NHWC` or `NCHW`.
    pub layout: String,
    #[serde(default)]
    pub size: Option<u32>,
    /// `RGB` (default) or `BGR`.
    #[serde(default)]
    pub color: Option<String>,
    /// Input value = (pixel - mean) * scale.
    #[serde(default)]
    pub mean: Option<f32>,
    #[serde(default)]
    pub scale: Option<f32>,
    /// MTCNN convention: the image is fed with x and y swapped.
    #[serde(default)]
    pub transposed: bool,
    /// `"dynamic"` or a fixed batch size.
    #[serde(default)]
    pub batch: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FaceOutput {
    pub name: String,
    #[serde(default)]
    pub dimension: Option<usize>,
}

/// SCRFD output layout: per stride, the names of the score, box and keypoint outputs.
#[derive(Debug, Clone, Deserialize)]
pub struct ScrfdSpec {
    pub strides: Vec<u32>,
    pub anchors_per_location: usize,
    pub score_threshold: f32,
    pub nms_iou: f32,
    pub scores: Vec<String>,
    pub boxes: Vec<String>,
    #[serde(default)]
    pub keypoints: Vec<String>,
}

/// Cosine similarity -> false-match rate, fitted on impostor comparisons (see
/// [`super::calibration`]).
#[derive(Debug, Clone, Deserialize)]
pub struct CalibrationSpec {
    pub cosine: Vec<f64>,
    pub log10_fmr: Vec<f64>,
    #[serde(default)]
    pub fitted_on: String,
}

/// How an image becomes a model input tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputContract {
    pub nchw: bool,
    pub bgr: bool,
    pub mean: f32,
    pub scale: f32,
    pub transposed: bool,
    /// `Some(n)` when the graph only accepts batches of exactly n.
    pub fixed_batch: Option<usize>,
}

impl FaceManifest {
    pub fn load(path: &Path) -> Result<FaceManifest, FaceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FaceError::Config(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<FaceManifest, FaceError> {
        toml::from_str(text).map_err(|e| FaceError::Config(e.to_string()))
    }

    pub fn model(&self, name: &str) -> Result<&FaceModel, FaceError> {
        self.models
            .get(name)
            .ok_or_else(|| FaceError::Config(format!("model {name:?} is not in the manifest")))
    }
}

impl FaceModel {
    pub fn contract(&self) -> Result<InputContract, FaceError> {
        let nchw = match self.input.layout.as_str() {
            "NCHW" => true,
            "NHWC" => false,
            other => {
                return Err(FaceError::Config(format!(
                    "input {}: layout {other:?} (expected NHWC or NCHW)",
                    self.input.name
                )))
            }
        };
        let bgr = match self.input.color.as_deref().unwrap_or("RGB") {
            "RGB" => false,
            "BGR" => true,
            other => return Err(FaceError::Config(format!("colour order {other:?}"))),
        };
        let fixed_batch = match &self.input.batch {
            Some(toml::Value::Integer(n)) if *n >= 1 => Some(*n as usize),
            Some(toml::Value::String(s)) if s == "dynamic" => None,
            None => None,
            Some(other) => return Err(FaceError::Config(format!("batch {other}"))),
        };
        let scale = self.input.scale.unwrap_or(1.0);
        if !scale.is_finite() || scale == 0.0 {
            return Err(FaceError::Config(format!("input scale {scale}")));
        }
        Ok(InputContract {
            nchw,
            bgr,
            mean: self.input.mean.unwrap_or(0.0),
            scale,
            transposed: self.input.transposed,
            fixed_batch,
        })
    }

    pub fn output(&self, index: usize) -> Result<&FaceOutput, FaceError> {
        self.outputs
            .get(index)
            .ok_or_else(|| FaceError::Config(format!("model has no output #{index}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_manifest_describes_every_face_model() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/manifest.toml");
        let m = FaceManifest::load(&path).unwrap();
        assert_eq!(m.face.detector, "mtcnn");
        assert_eq!(m.face.mtcnn_params, MtcnnParams::default());
        let mfn = m.model(&m.face.embedder).unwrap();
        let c = mfn.contract().unwrap();
        assert!(!c.nchw && !c.bgr && c.fixed_batch.is_none());
        assert_eq!(mfn.outputs[0].dimension, Some(192));
        let arc = m.model("arcface_r50").unwrap().contract().unwrap();
        assert!(arc.nchw);
        assert!((arc.scale - 1.0 / 127.5).abs() < 1e-9);
        assert_eq!(
            m.model("arcface_r50").unwrap().outputs[0].dimension,
            Some(512)
        );
        let scrfd = m.model("scrfd_10g").unwrap();
        assert_eq!(scrfd.scrfd.as_ref().unwrap().strides, vec![8, 16, 32]);
        for n in &m.face.mtcnn {
            assert!(m.model(n).unwrap().contract().unwrap().transposed);
        }
        assert_eq!(
            m.model("face_antispoofing")
                .unwrap()
                .contract()
                .unwrap()
                .fixed_batch,
            Some(1)
        );
    }
}
