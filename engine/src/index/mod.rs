//! One-to-many search structures beyond exhaustive matching. The exact int8 face
//! scan over the quantised rows that every segment already stores, and fixed-length finger
//! codes that pick the short list for the full minutiae matcher.

pub mod face_scan;
pub mod finger_code;
pub mod int8;
