//! Turning request samples (images or templates, fingers or faces) into the engine's templates.

use std::sync::Arc;

use abis_engine::face::{FaceChoice, FaceEngine, FaceOptions, FaceTemplate};
use abis_engine::finger::{CaptureInfo, Extraction, FingerExtractor};
use abis_engine::gallery::Probe;
use abis_engine::template::{FingerPosition, FingerTemplate};
use abis_proto::v1::{sample, FaceChoice as ProtoFaceChoice, Modality, Sample};
use tonic::{Code, Status};

use abis_proto::FailureReason;

use super::status;

/// Most samples one request may carry: ten fingers with a few impressions each, and faces.
pub const MAX_SAMPLES: usize = 48;

/// The models the service extracts with.
pub struct Engines {
    pub finger: Arc<FingerExtractor>,
    /// `None` when the face models are not installed: face samples are then refused.
    pub face: Option<Arc<FaceEngine>>,
}

/// One converted sample.
pub enum Item {
    Finger {
        position: FingerPosition,
        template: FingerTemplate,
        extraction: Option<Extraction>,
    },
    Face(FaceTemplate),
}

impl Engines {
    pub fn face(&self, field: &str) -> Result<&FaceEngine, Status> {
        self.face.as_deref().ok_or_else(|| {
            status::status(
                Code::Unavailable,
                FailureReason::Internal,
                format!("{field}: face models are not installed on this server (run `make setup`)"),
            )
        })
    }

    /// Converts one sample; `field` names it in errors (`samples[3]`).
    pub fn convert(&self, field: &str, sample: Sample) -> Result<Item, Status> {
        self.convert_with(field, sample, FaceChoice::Largest)
    }

    /// [`Engines::convert`] taking `choice` of the faces of a face image.
    pub fn convert_with(
        &self,
        field: &str,
        sample: Sample,
        choice: FaceChoice,
    ) -> Result<Item, Status> {
        let modality = match Modality::try_from(sample.modality) {
            Ok(m @ (Modality::Finger | Modality::Face)) => m,
            _ => {
                return Err(status::invalid(
                    &format!("{field}.modality"),
                    "must be FINGER or FACE",
                ))
            }
        };
        if !sample.ppi.is_finite() || sample.ppi < 0.0 {
            return Err(status::invalid(
                &format!("{field}.ppi"),
                "must be 0 or a resolution in pixels per inch",
            ));
        }
        let data = sample.data.ok_or_else(|| {
            status::status(
                Code::InvalidArgument,
                FailureReason::NoBiometricData,
                format!("{field}: an image or a template is required"),
            )
        })?;
        if modality == Modality::Finger {
            let position = u8::try_from(sample.finger_position)
                .ok()
                .and_then(|p| FingerPosition::new(p).ok())
                .ok_or_else(|| {
                    status::invalid(&format!("{field}.finger_position"), "must be 0..=10")
                })?;
            match data {
                sample::Data::Image(bytes) => {
                    let info = CaptureInfo {
                        ppi: (sample.ppi > 0.0).then_some(sample.ppi),
                        position,
                        ..Default::default()
                    };
                    let extraction = self
                        .finger
                        .extract(&bytes, info)
                        .map_err(|e| status::from_finger(&format!("{field}.image"), e))?;
                    Ok(Item::Finger {
                        position,
                        template: extraction.template.clone(),
                        extraction: Some(extraction),
                    })
                }
                sample::Data::Template(bytes) => {
                    let mut template = FingerTemplate::decode_any(&bytes, None)
                        .map_err(|e| status::from_template(&format!("{field}.template"), e))?;
                    // The request's position wins over one the template carries.
                    if position.code() != 0 {
                        template.position = position;
                    }
                    Ok(Item::Finger {
                        position: template.position,
                        template,
                        extraction: None,
                    })
                }
            }
        } else {
            let engine = self.face(field)?;
            match data {
                sample::Data::Image(bytes) => {
                    // Enrollment and counter photos are portraits: allow the whole-image
                    // fallback; `choice` says which face when a bystander is in the frame.
                    let opts = FaceOptions {
                        choice,
                        portrait: true,
                        ..Default::default()
                    };
                    let x = engine
                        .extract(&bytes, opts)
                        .map_err(|e| status::from_face(&format!("{field}.image"), e))?;
                    Ok(Item::Face(x.template))
                }
                sample::Data::Template(bytes) => {
                    let t = FaceTemplate::decode(&bytes)
                        .map_err(|e| status::from_face(&format!("{field}.template"), e))?;
                    if t.model != engine.fingerprint() {
                        return Err(status::bad_biometric(
                            &format!("{field}.template"),
                            "face template was made by another embedding model",
                        ));
                    }
                    Ok(Item::Face(t))
                }
            }
        }
    }

    /// Converts a list of samples into a probe.
    pub fn probe(&self, list_field: &str, samples: Vec<Sample>) -> Result<Probe, Status> {
        self.probe_with(list_field, samples, FaceChoice::Largest)
    }

    /// [`Engines::probe`] taking `choice` of the faces of each face image.
    pub fn probe_with(
        &self,
        list_field: &str,
        samples: Vec<Sample>,
        choice: FaceChoice,
    ) -> Result<Probe, Status> {
        check_count(list_field, samples.len())?;
        let mut probe = Probe::default();
        for (i, s) in samples.into_iter().enumerate() {
            match self.convert_with(&format!("{list_field}[{i}]"), s, choice)? {
                Item::Finger {
                    position, template, ..
                } => probe.fingers.push((position, template)),
                Item::Face(t) => probe.faces.push(t.embedding),
            }
        }
        Ok(probe)
    }
}

/// The engine's face choice for a request's `face_choice` field (unspecified: the largest face,
/// the server's default before the field existed).
pub fn face_choice(field: &str, value: i32) -> Result<FaceChoice, Status> {
    match ProtoFaceChoice::try_from(value) {
        Ok(ProtoFaceChoice::Unspecified | ProtoFaceChoice::Largest) => Ok(FaceChoice::Largest),
        Ok(ProtoFaceChoice::Only) => Ok(FaceChoice::Only),
        Ok(ProtoFaceChoice::MostCentral) => Ok(FaceChoice::MostCentral),
        Err(_) => Err(status::invalid(field, format!("unknown value {value}"))),
    }
}

pub fn check_count(field: &str, n: usize) -> Result<(), Status> {
    if n == 0 {
        return Err(status::status(
            Code::InvalidArgument,
            FailureReason::NoBiometricData,
            format!("{field}: at least one sample is required"),
        ));
    }
    if n > MAX_SAMPLES {
        return Err(status::invalid(
            field,
            format!("at most {MAX_SAMPLES} samples per request"),
        ));
    }
    Ok(())
}
