//! One-to-many search structures beyond exhaustive matching (issue 6). So far: the exact int8
//! face scan over the quantised rows that every segment already stores.

pub mod face_scan;
pub mod int8;
