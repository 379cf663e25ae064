use thiserror::Error;

/// Why a template could not be read or written. Offsets are byte offsets into the record.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TemplateError {
    #[error("template format not recognised")]
    UnknownFormat,
    #[error("unsupported record version {version:?} ({standard}); only ISO/IEC 19794-2:2005 and ANSI/INCITS 378-2004 are read")]
    UnsupportedVersion {
        standard: &'static str,
        version: String,
    },
    #[error(
        "template truncated: {field} needs {needed} bytes at offset {offset}, have {available}"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("bad {field} at offset {offset}: {detail}")]
    Malformed {
        field: &'static str,
        offset: usize,
        detail: String,
    },
    /// A line of a text encoding (`.xyt`) is wrong; `line` counts from 1.
    #[error("bad {field} on line {line}: {detail}")]
    BadLine {
        line: usize,
        field: &'static str,
        detail: String,
    },
    #[error("invalid {field}: {detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("template holds {0} minutiae, more than the 255 a record can carry")]
    TooManyMinutiae(usize),
    #[error("template checksum mismatch")]
    Checksum,
}
