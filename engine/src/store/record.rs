//! The stored record, its validation rules and its canonical binary encoding (the WAL insert
//! payload).
//!
//! Encoding, all integers **little-endian**, every count bounded by the limits below:
//!
//! | size        | field                                                      |
//! |------------:|------------------------------------------------------------|
//! | 1           | codec version, `1`                                         |
//! | 1           | referenceId length L (1..=64)                              |
//! | L           | referenceId, graphic ASCII                                 |
//! | 1           | finger entry count F (≤ 40)                                |
//! | F × (3 + T) | position u8 (ISO 0..=10), template length T u16, template  |
//! | 1           | face embedding count K (≤ 8)                               |
//! | 2           | embedding dimension D (0 when K = 0, else 1..=4096)        |
//! | K × D × 4   | embeddings, f32 bit patterns                               |
//! | 1           | metadata entry count M (≤ 32)                              |
//! | M × …       | key length u8, key (UTF-8), value length u16, value (UTF-8)|
//!
//! The encoding is canonical (metadata is a sorted map, floats are compared by bit pattern), so
//! "same content" is "same bytes": that is how an idempotent insert is recognised.

use std::collections::BTreeMap;
use std::fmt;

use crate::template::{decode_native, FingerPosition};

use super::error::{Result, StoreError};

/// Longest referenceId, bytes.
pub const MAX_REFERENCE_ID_LEN: usize = 64;
/// Most finger entries (impressions) in one record.
pub const MAX_FINGERS: usize = 40;
/// Longest native finger template: 16-byte header, 255 minutiae of 8 bytes, CRC.
pub const MAX_TEMPLATE_LEN: usize = 16 + 8 * 255 + 4;
/// Most face embeddings in one record.
pub const MAX_FACES: usize = 8;
/// Largest face embedding dimension a gallery may use.
pub const MAX_FACE_DIM: usize = 4096;
/// Most metadata entries in one record.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, bytes.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest metadata value, bytes.
pub const MAX_METADATA_VALUE_LEN: usize = 1024;

const CODEC_VERSION: u8 = 1;

/// One finger impression: its ISO position and its template in the native encoding
/// ([`crate::template::encode_native`]).
#[derive(Clone, PartialEq)]
pub struct FingerEntry {
    pub position: FingerPosition,
    pub template: Vec<u8>,
}

/// What the gallery stores for one person. No personal data beyond the referenceId.
#[derive(Clone, PartialEq, Default)]
pub struct Record {
    /// 1..=64 bytes of graphic ASCII (`!`..=`~`, no spaces).
    pub reference_id: String,
    /// Finger impressions, several per position allowed, at most [`MAX_FINGERS`].
    pub fingers: Vec<FingerEntry>,
    /// Face embeddings, each of the gallery's dimension, finite values.
    pub faces: Vec<Vec<f32>>,
    /// Small bounded annotations (capture device, campaign); never biometric data.
    pub metadata: BTreeMap<String, String>,
}

// Debug never prints the referenceId or biometric data, so a stray `{:?}` in a log is harmless.
impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("reference_id_len", &self.reference_id.len())
            .field("fingers", &self.fingers.len())
            .field("faces", &self.faces.len())
            .field("metadata_entries", &self.metadata.len())
            .finish()
    }
}

impl fmt::Debug for FingerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FingerEntry")
            .field("position", &self.position.code())
            .field("template_len", &self.template.len())
            .finish()
    }
}

/// Checks a referenceId: 1..=64 bytes of graphic ASCII.
pub fn validate_reference_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(StoreError::invalid("reference_id", "empty referenceId"));
    }
    if id.len() > MAX_REFERENCE_ID_LEN {
        return Err(StoreError::invalid(
            "reference_id",
            format!("{} bytes, more than {MAX_REFERENCE_ID_LEN}", id.len()),
        ));
    }
    if let Some(i) = id.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(StoreError::invalid(
            "reference_id",
            format!("byte {i} is not printable ASCII (0x21..=0x7E)"),
        ));
    }
    Ok(())
}

fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(StoreError::invalid(
            "metadata",
            format!(
                "{} entries, more than {MAX_METADATA_ENTRIES}",
                metadata.len()
            ),
        ));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.len() > MAX_METADATA_KEY_LEN {
            return Err(StoreError::invalid(
                "metadata",
                format!("key of {} bytes (1..={MAX_METADATA_KEY_LEN})", k.len()),
            ));
        }
        if v.len() > MAX_METADATA_VALUE_LEN {
            return Err(StoreError::invalid(
                "metadata",
                format!(
                    "value of {} bytes, more than {MAX_METADATA_VALUE_LEN}",
                    v.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks one native template and its agreement with the entry's position.
fn validate_finger(i: usize, f: &FingerEntry) -> Result<()> {
    if f.template.len() > MAX_TEMPLATE_LEN {
        return Err(StoreError::invalid(
            "fingers",
            format!(
                "template {i} is {} bytes, more than {MAX_TEMPLATE_LEN}",
                f.template.len()
            ),
        ));
    }
    let t = decode_native(&f.template).map_err(|e| {
        StoreError::invalid(
            "fingers",
            format!("template {i} is not a valid native template: {e}"),
        )
    })?;
    if t.position != f.position && t.position != FingerPosition::UNKNOWN {
        return Err(StoreError::invalid(
            "fingers",
            format!(
                "template {i} says finger position {} but the entry says {}",
                t.position.code(),
                f.position.code()
            ),
        ));
    }
    Ok(())
}

impl Record {
    /// Checks every rule of the data model. `face_dim` is the gallery's embedding dimension.
    pub fn validate(&self, face_dim: usize) -> Result<()> {
        validate_reference_id(&self.reference_id)?;
        if self.fingers.is_empty() && self.faces.is_empty() {
            return Err(StoreError::invalid(
                "biometrics",
                "the record has no finger template and no face embedding",
            ));
        }
        if self.fingers.len() > MAX_FINGERS {
            return Err(StoreError::invalid(
                "fingers",
                format!("{} entries, more than {MAX_FINGERS}", self.fingers.len()),
            ));
        }
        for (i, f) in self.fingers.iter().enumerate() {
            validate_finger(i, f)?;
        }
        if self.faces.len() > MAX_FACES {
            return Err(StoreError::invalid(
                "faces",
                format!("{} embeddings, more than {MAX_FACES}", self.faces.len()),
            ));
        }
        for (i, face) in self.faces.iter().enumerate() {
            if face_dim == 0 || face.len() != face_dim {
                return Err(StoreError::invalid(
                    "faces",
                    format!(
                        "embedding {i} has dimension {}, the gallery uses {face_dim}",
                        face.len()
                    ),
                ));
            }
            if face.iter().any(|v| !v.is_finite()) {
                return Err(StoreError::invalid(
                    "faces",
                    format!("embedding {i} holds a value that is not finite"),
                ));
            }
        }
        validate_metadata(&self.metadata)
    }

    /// Dimension of the face embeddings, 0 without faces.
    pub fn face_dim(&self) -> usize {
        self.faces.first().map_or(0, Vec::len)
    }

    /// Canonical encoding (see the module docs). Fails only when a count or length does not fit
    /// the layout, which [`Record::validate`] rules out.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let id = self.reference_id.as_bytes();
        let dim = self.face_dim();
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.push(CODEC_VERSION);
        out.push(fit_u8(id.len(), "reference_id")?);
        out.extend_from_slice(id);
        out.push(fit_u8(self.fingers.len(), "fingers")?);
        for f in &self.fingers {
            out.push(f.position.code());
            out.extend_from_slice(&fit_u16(f.template.len(), "fingers")?.to_le_bytes());
            out.extend_from_slice(&f.template);
        }
        out.push(fit_u8(self.faces.len(), "faces")?);
        out.extend_from_slice(&fit_u16(dim, "faces")?.to_le_bytes());
        for face in &self.faces {
            if face.len() != dim {
                return Err(StoreError::invalid(
                    "faces",
                    "embeddings of different dimensions",
                ));
            }
            for v in face {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        encode_metadata(&self.metadata, &mut out)?;
        Ok(out)
    }

    fn encoded_len_hint(&self) -> usize {
        8 + self.reference_id.len()
            + self
                .fingers
                .iter()
                .map(|f| 3 + f.template.len())
                .sum::<usize>()
            + self.faces.iter().map(|f| 4 * f.len()).sum::<usize>()
            + self
                .metadata
                .iter()
                .map(|(k, v)| 3 + k.len() + v.len())
                .sum::<usize>()
    }

    /// Decodes and fully validates an encoding produced by [`Record::encode`]. Never panics;
    /// any deviation (truncation, trailing bytes, bad counts, bad templates) is an
    /// [`StoreError::InvalidRecord`] with field `encoding` or the failing field.
    pub fn decode(bytes: &[u8]) -> Result<Record> {
        let mut r = Cursor { b: bytes, pos: 0 };
        let version = r.u8()?;
        if version != CODEC_VERSION {
            return Err(StoreError::invalid(
                "encoding",
                format!("record codec version {version}, expected {CODEC_VERSION}"),
            ));
        }
        let id_len = usize::from(r.u8()?);
        let id = r.take(id_len)?;
        let reference_id = std::str::from_utf8(id)
            .map_err(|_| StoreError::invalid("reference_id", "not UTF-8"))?
            .to_owned();
        validate_reference_id(&reference_id)?;
        let nf = usize::from(r.u8()?);
        if nf > MAX_FINGERS {
            return Err(StoreError::invalid("fingers", format!("{nf} entries")));
        }
        let mut fingers = Vec::with_capacity(nf);
        for _ in 0..nf {
            let pos = r.u8()?;
            let position = FingerPosition::new(pos)
                .map_err(|_| StoreError::invalid("fingers", format!("position {pos}")))?;
            let len = usize::from(r.u16()?);
            let template = r.take(len)?.to_vec();
            fingers.push(FingerEntry { position, template });
        }
        let nfaces = usize::from(r.u8()?);
        let dim = usize::from(r.u16()?);
        if nfaces > MAX_FACES || dim > MAX_FACE_DIM || (nfaces == 0) != (dim == 0) {
            return Err(StoreError::invalid(
                "faces",
                format!("{nfaces} embeddings of dimension {dim}"),
            ));
        }
        let mut faces = Vec::with_capacity(nfaces);
        for _ in 0..nfaces {
            let raw = r.take(dim * 4)?;
            faces.push(
                raw.chunks_exact(4)
                    .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            );
        }
        let metadata = decode_metadata_from(&mut r)?;
        if r.pos != bytes.len() {
            return Err(StoreError::invalid(
                "encoding",
                format!("{} trailing bytes", bytes.len() - r.pos),
            ));
        }
        let rec = Record {
            reference_id,
            fingers,
            faces,
            metadata,
        };
        rec.validate(dim)?;
        Ok(rec)
    }

    /// Same content, compared as the canonical encoding compares (floats by bit pattern).
    pub fn same_content(&self, other: &Record) -> bool {
        self.reference_id == other.reference_id
            && self.fingers == other.fingers
            && self.metadata == other.metadata
            && self.faces.len() == other.faces.len()
            && self.faces.iter().zip(&other.faces).all(|(a, b)| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            })
    }
}

fn fit_u8(n: usize, field: &'static str) -> Result<u8> {
    u8::try_from(n).map_err(|_| StoreError::invalid(field, format!("{n} does not fit the layout")))
}

fn fit_u16(n: usize, field: &'static str) -> Result<u16> {
    u16::try_from(n).map_err(|_| StoreError::invalid(field, format!("{n} does not fit the layout")))
}

/// Metadata block: count u8, then key length u8, key, value length u16, value.
pub(crate) fn encode_metadata(m: &BTreeMap<String, String>, out: &mut Vec<u8>) -> Result<()> {
    out.push(fit_u8(m.len(), "metadata")?);
    for (k, v) in m {
        out.push(fit_u8(k.len(), "metadata")?);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&fit_u16(v.len(), "metadata")?.to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    Ok(())
}

/// Decodes a metadata block that must fill `bytes` exactly.
pub(crate) fn decode_metadata(bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    let mut r = Cursor { b: bytes, pos: 0 };
    let m = decode_metadata_from(&mut r)?;
    if r.pos != bytes.len() {
        return Err(StoreError::invalid("metadata", "trailing bytes"));
    }
    Ok(m)
}

fn decode_metadata_from(r: &mut Cursor<'_>) -> Result<BTreeMap<String, String>> {
    let n = usize::from(r.u8()?);
    let mut m = BTreeMap::new();
    let mut last: Option<String> = None;
    for _ in 0..n {
        let kl = usize::from(r.u8()?);
        let k = utf8(r.take(kl)?)?;
        let vl = usize::from(r.u16()?);
        let v = utf8(r.take(vl)?)?;
        // Canonical form: keys strictly increasing (a map cannot hold duplicates).
        if last.as_deref().is_some_and(|l| l >= k.as_str()) {
            return Err(StoreError::invalid(
                "metadata",
                "keys not strictly increasing",
            ));
        }
        last = Some(k.clone());
        m.insert(k, v);
    }
    validate_metadata(&m)?;
    Ok(m)
}

fn utf8(b: &[u8]) -> Result<String> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| StoreError::invalid("metadata", "not UTF-8"))
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                StoreError::invalid(
                    "encoding",
                    format!("truncated: {n} bytes needed at offset {}", self.pos),
                )
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::synth::synthetic_record;
    use proptest::prelude::*;

    #[test]
    fn store_record_round_trip_and_rules() {
        let r = synthetic_record("ABC-123", 7, 3, 2, 16);
        r.validate(16).unwrap();
        let b = r.encode().unwrap();
        let d = Record::decode(&b).unwrap();
        assert!(d.same_content(&r));
        assert_eq!(d.encode().unwrap(), b);
        assert!(
            format!("{r:?}").find("ABC").is_none(),
            "Debug must not print the id"
        );

        for bad in ["", "has space", "tab\t", "é", &"x".repeat(65)] {
            let mut r2 = r.clone();
            r2.reference_id = bad.to_string();
            assert!(matches!(
                r2.validate(16),
                Err(StoreError::InvalidRecord {
                    field: "reference_id",
                    ..
                })
            ));
        }
        let mut r3 = r.clone();
        r3.faces[0][3] = f32::NAN;
        assert!(matches!(
            r3.validate(16),
            Err(StoreError::InvalidRecord { field: "faces", .. })
        ));
        assert!(matches!(
            r.validate(8),
            Err(StoreError::InvalidRecord { field: "faces", .. })
        ));
        let mut r4 = r.clone();
        r4.fingers[0].template[20] ^= 1;
        assert!(matches!(
            r4.validate(16),
            Err(StoreError::InvalidRecord {
                field: "fingers",
                ..
            })
        ));
        let empty = Record {
            reference_id: "x".into(),
            ..Record::default()
        };
        let e = empty.validate(16).unwrap_err();
        assert_eq!(
            e.record_defect(),
            Some(crate::store::RecordDefect::NoBiometrics)
        );
    }

    proptest! {
        #[test]
        fn store_record_decode_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn store_record_decode_mutated_never_panics(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
            let r = synthetic_record("R-1", seed, 2, 1, 8);
            let mut b = r.encode().unwrap();
            for (i, x) in flips { let n = b.len(); b[i % n] ^= x; }
            let keep = cut % (b.len() + 1);
            let _ = Record::decode(&b);
            let _ = Record::decode(&b[..keep]);
        }

        #[test]
        fn store_record_round_trips(seed in any::<u64>(), nf in 0usize..12, nfaces in 0usize..3, dim in 1usize..40, meta in proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,20}", 0..5)) {
            prop_assume!(nf + nfaces > 0);
            let mut r = synthetic_record("P-2", seed, nf, nfaces, dim);
            r.metadata = meta;
            let b = r.encode().unwrap();
            let d = Record::decode(&b).unwrap();
            prop_assert!(d.same_content(&r));
            prop_assert_eq!(d.encode().unwrap(), b);
        }
    }
}
