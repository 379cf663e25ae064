//! The matching core of abis: everything below the gRPC line.
//!
//! Data path: bytes → [`image`] (decode, limits, resolution) → [`finger`] (minutiae extraction
//! through the [`model`] runtime, quality) → [`template`] (native and interchange formats).

pub mod finger;
pub mod image;
pub mod model;
pub mod template;
