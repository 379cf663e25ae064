use thiserror::Error;

use crate::image::ImageError;
use crate::model::ModelError;
use crate::template::TemplateError;

/// Why a fingerprint could not be turned into a template.
#[derive(Debug, Error)]
pub enum FingerError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("image side of {0} pixels is too large for a template (at most 65535)")]
    TooLarge(u32),
}
