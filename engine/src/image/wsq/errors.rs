//! The WSQ decoder's two kinds of error, built in one place so that every stage (markers,
//! Huffman tables, entropy decoding, wavelet synthesis) reports them alike.

use crate::image::ImageError;

/// Builds the decoder's error for malformed input, naming what was wrong and where.
pub(super) fn corrupt(offset: usize, detail: impl std::fmt::Display) -> ImageError {
    ImageError::Corrupt {
        format: "WSQ",
        detail: format!("{detail} (at byte offset {offset})"),
    }
}

/// Builds the decoder's error for a well-formed feature it does not implement.
pub(super) fn unsupported(offset: usize, detail: impl std::fmt::Display) -> ImageError {
    ImageError::Unsupported {
        format: "WSQ",
        detail: format!("{detail} (at byte offset {offset})"),
    }
}
