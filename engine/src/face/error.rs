use thiserror::Error;

use crate::image::ImageError;
use crate::model::ModelError;

/// Why a face could not be found, embedded or compared. No variant carries pixels or
/// embeddings (nothing biometric ends up in a log through an error message).
#[derive(Debug, Error)]
pub enum FaceError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("face configuration: {0}")]
    Config(String),
    #[error("no face found in the image")]
    NoFace,
    #[error("{count} faces found; choose one (largest or most central)")]
    SeveralFaces { count: usize },
    #[error("landmarks do not define a usable alignment (degenerate geometry)")]
    Degenerate,
    #[error("face template: {0}")]
    Template(String),
    #[error("templates come from different embedders ({a} and {b}); they cannot be compared")]
    ModelMismatch { a: String, b: String },
    #[error("false-match rate {0} is outside (0, 1)")]
    BadFmr(f64),
}
