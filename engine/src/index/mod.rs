//! One-to-many search structures beyond exhaustive matching: the exact int8 face scan over
//! the quantised rows every segment already stores; for fingers, coarse local structures
//! (`local`), fixed-length codes drawn from them (`code`), and the per-segment files that keep
//! both beside the templates (`segment_index`).

pub mod code;
pub mod face_scan;
pub mod int8;
pub mod local;
pub mod segment_index;
