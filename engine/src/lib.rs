//! The matching core of abis: everything below the gRPC line.
//!
//! Data path: bytes → [`image`] (decode, limits, resolution) → [`finger`] (minutiae extraction
//! through the [`model`] runtime, quality) → [`template`] (native and interchange formats).

#[cfg(feature = "eval")]
pub mod eval;
pub mod face;
pub mod finger;
pub mod gallery;
pub mod hash;
pub mod image;
pub mod index;
pub mod matcher;
pub mod model;
pub mod priority;
pub mod store;
#[cfg(feature = "synth")]
pub mod synth;
pub mod template;
