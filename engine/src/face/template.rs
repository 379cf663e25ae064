//! A stored face template: the L2-normalised embedding with the identity of the model that made
//! it, in a small versioned binary with a checksum.
//!
//! ```text
//! offset size  field
//! 0      4     magic "ABFT"
//! 4      1     version (1)
//! 5      1     flags (bit 0: the face came from the whole-image portrait fallback)
//! 6      2     dimension d (u16 little-endian), 1..=4096
//! 8      8     model fingerprint: first 8 bytes of sha256(model name "\0" model file sha256)
//! 16     4d    embedding, f32 little-endian, unit length
//! 16+4d  4     CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Templates from different models (or different files of one model) never compare: their
//! fingerprints differ and [`FaceTemplate::cosine`] refuses them. A template is biometric data:
//! it is never logged.

use sha2::{Digest, Sha256};

use super::FaceError;

pub const MAGIC: &[u8; 4] = b"ABFT";
pub const VERSION: u8 = 1;
const MAX_DIM: usize = 4096;
const FLAG_FALLBACK: u8 = 1;

#[derive(Clone, PartialEq)]
pub struct FaceTemplate {
    pub model: [u8; 8],
    pub embedding: Vec<f32>,
    /// The face was taken from the whole image (portrait fallback), not detected.
    pub fallback: bool,
}

impl std::fmt::Debug for FaceTemplate {
    // Never print the embedding.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceTemplate")
            .field("model", &hex(&self.model))
            .field("dimension", &self.embedding.len())
            .field("fallback", &self.fallback)
            .finish()
    }
}

/// The fingerprint of an embedder: its manifest name and its file's sha256.
pub fn model_fingerprint(name: &str, sha256: &str) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0u8]);
    h.update(sha256.to_ascii_lowercase().as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// L2-normalises in place; a zero or non-finite vector is an error.
pub fn l2_normalise(v: &mut [f32]) -> Result<(), FaceError> {
    let n = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if !(n.is_finite() && n > 1e-12) {
        return Err(FaceError::Template("embedding has no direction".into()));
    }
    for x in v {
        *x = (*x as f64 / n) as f32;
    }
    Ok(())
}

impl FaceTemplate {
    /// Cosine similarity in [-1, 1] (both unit length).
    pub fn cosine(&self, other: &FaceTemplate) -> Result<f32, FaceError> {
        if self.model != other.model || self.embedding.len() != other.embedding.len() {
            return Err(FaceError::ModelMismatch {
                a: hex(&self.model),
                b: hex(&other.model),
            });
        }
        let dot: f64 = self
            .embedding
            .iter()
            .zip(&other.embedding)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        Ok(dot.clamp(-1.0, 1.0) as f32)
    }

    pub fn encode(&self) -> Result<Vec<u8>, FaceError> {
        let d = self.embedding.len();
        if d == 0 || d > MAX_DIM {
            return Err(FaceError::Template(format!("dimension {d}")));
        }
        let mut out = Vec::with_capacity(20 + 4 * d);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(if self.fallback { FLAG_FALLBACK } else { 0 });
        out.extend_from_slice(&(d as u16).to_le_bytes());
        out.extend_from_slice(&self.model);
        for v in &self.embedding {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<FaceTemplate, FaceError> {
        let bad = |m: &str| FaceError::Template(m.to_owned());
        if bytes.len() < 20 || &bytes[..4] != MAGIC {
            return Err(bad("not a face template (magic)"));
        }
        if bytes[4] != VERSION {
            return Err(FaceError::Template(format!("version {}", bytes[4])));
        }
        let flags = bytes[5];
        if flags & !FLAG_FALLBACK != 0 {
            return Err(bad("unknown flags"));
        }
        let d = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
        if d == 0 || d > MAX_DIM {
            return Err(FaceError::Template(format!("dimension {d}")));
        }
        if bytes.len() != 20 + 4 * d {
            return Err(FaceError::Template(format!(
                "{} bytes for dimension {d}",
                bytes.len()
            )));
        }
        let body = &bytes[..16 + 4 * d];
        let crc = u32::from_le_bytes([
            bytes[16 + 4 * d],
            bytes[17 + 4 * d],
            bytes[18 + 4 * d],
            bytes[19 + 4 * d],
        ]);
        if crc32fast::hash(body) != crc {
            return Err(bad("checksum mismatch"));
        }
        let mut model = [0u8; 8];
        model.copy_from_slice(&bytes[8..16]);
        let embedding: Vec<f32> = bytes[16..16 + 4 * d]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let norm: f64 = embedding.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        if !(norm.is_finite() && (norm - 1.0).abs() < 1e-3) {
            return Err(bad("embedding is not unit length"));
        }
        Ok(FaceTemplate {
            model,
            embedding,
            fallback: flags & FLAG_FALLBACK != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> FaceTemplate {
        let mut e: Vec<f32> = (0..192).map(|i| (i as f32 * 0.37).sin()).collect();
        l2_normalise(&mut e).unwrap();
        FaceTemplate {
            model: model_fingerprint("mobilefacenet", "ABC"),
            embedding: e,
            fallback: true,
        }
    }

    #[test]
    fn round_trip_and_self_similarity() {
        let t = sample();
        let bytes = t.encode().unwrap();
        assert_eq!(bytes.len(), 20 + 4 * 192);
        let back = FaceTemplate::decode(&bytes).unwrap();
        assert_eq!(back, t);
        assert!((t.cosine(&back).unwrap() - 1.0).abs() < 1e-6);
        assert!(
            !format!("{t:?}").contains("0."),
            "Debug must not print the embedding"
        );
    }

    #[test]
    fn corruption_and_other_models_are_refused() {
        let t = sample();
        let mut bytes = t.encode().unwrap();
        bytes[40] ^= 1;
        assert!(FaceTemplate::decode(&bytes).is_err());
        let other = FaceTemplate {
            model: model_fingerprint("arcface_r50", "ABC"),
            ..t.clone()
        };
        assert!(matches!(
            t.cosine(&other),
            Err(FaceError::ModelMismatch { .. })
        ));
        assert!(l2_normalise(&mut [0.0, 0.0]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..900)) {
            let _ = FaceTemplate::decode(&bytes);
        }

        #[test]
        fn truncation_is_always_an_error(cut in 0usize..787) {
            let bytes = sample().encode().unwrap();
            prop_assert!(FaceTemplate::decode(&bytes[..cut]).is_err());
        }
    }
}
