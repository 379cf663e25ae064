//! The payload of an image file (inside its envelope), little-endian:
//! reference id (`u8` length, bytes), the record's digest (32 bytes), the image count (`u16`),
//! then per image: kind (`u8`: 1 finger, 2 face), finger position (`u8`), ordinal (`u16`),
//! length (`u32`) and the bytes as received.

/// Most images one file holds (a request carries at most `MAX_SAMPLES`).
const MAX_IMAGES: usize = crate::service::MAX_SAMPLES;

/// Finger or face.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Finger,
    Face,
}

/// One image as received, and which of the record's fingers or faces it is.
#[derive(Clone, PartialEq, Eq)]
pub struct KeptImage {
    pub kind: ImageKind,
    /// The record's n-th finger (or face), counting from 0.
    pub ordinal: u16,
    /// ISO finger position (0 for faces and unknown).
    pub position: u8,
    pub bytes: Vec<u8>,
}

// Never the image bytes in a log line.
impl std::fmt::Debug for KeptImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptImage")
            .field("kind", &self.kind)
            .field("ordinal", &self.ordinal)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The images of one record (or of one case's probe: no reference id, zero digest).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RecordImages {
    pub reference_id: String,
    pub record_digest: [u8; 32],
    pub images: Vec<KeptImage>,
}

// Never the reference id or image bytes in a log line.
impl std::fmt::Debug for RecordImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordImages")
            .field("reference_id_len", &self.reference_id.len())
            .field("images", &self.images)
            .finish()
    }
}

/// Why a payload does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("{0}")]
    Invalid(&'static str),
}

impl RecordImages {
    /// The image of the record's `ordinal`-th finger or face, if it was kept.
    pub fn find(&self, kind: ImageKind, ordinal: u16) -> Option<&KeptImage> {
        self.images
            .iter()
            .find(|i| i.kind == kind && i.ordinal == ordinal)
    }

    pub fn encode(&self) -> Vec<u8> {
        let total: usize = self.images.iter().map(|i| i.bytes.len() + 8).sum();
        let mut out = Vec::with_capacity(total + 100);
        let id = self.reference_id.as_bytes();
        out.push(id.len().min(255) as u8);
        out.extend_from_slice(&id[..id.len().min(255)]);
        out.extend_from_slice(&self.record_digest);
        out.extend_from_slice(&(self.images.len().min(MAX_IMAGES) as u16).to_le_bytes());
        for i in self.images.iter().take(MAX_IMAGES) {
            out.push(match i.kind {
                ImageKind::Finger => 1,
                ImageKind::Face => 2,
            });
            out.push(i.position);
            out.extend_from_slice(&i.ordinal.to_le_bytes());
            out.extend_from_slice(&(i.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&i.bytes);
        }
        out
    }

    /// Decodes a payload; never panics on hostile bytes.
    pub fn decode(bytes: &[u8]) -> Result<RecordImages, CodecError> {
        let mut r = Reader { bytes, at: 0 };
        let id_len = usize::from(r.take(1)?[0]);
        let reference_id = std::str::from_utf8(r.take(id_len)?)
            .map_err(|_| CodecError::Invalid("reference id is not UTF-8"))?
            .to_string();
        let mut record_digest = [0u8; 32];
        record_digest.copy_from_slice(r.take(32)?);
        let count = usize::from(r.u16()?);
        if count > MAX_IMAGES {
            return Err(CodecError::Invalid("too many images"));
        }
        let mut images = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = match r.take(1)?[0] {
                1 => ImageKind::Finger,
                2 => ImageKind::Face,
                _ => return Err(CodecError::Invalid("unknown image kind")),
            };
            let position = r.take(1)?[0];
            let ordinal = r.u16()?;
            let len = r.u32()? as usize;
            images.push(KeptImage {
                kind,
                ordinal,
                position,
                bytes: r.take(len)?.to_vec(),
            });
        }
        if r.at != bytes.len() {
            return Err(CodecError::Invalid("bytes after the last image"));
        }
        Ok(RecordImages {
            reference_id,
            record_digest,
            images,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(CodecError::Truncated(self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}
