//! The meta file `meta.abis`: which segments are live, with which deletion bitmap, where WAL
//! replay starts, the next ids. Replaced atomically (temp file, fsync, rename, fsync directory),
//! so a crash leaves either the old or the new one.
//!
//! Layout: the line `ABISMETA <crc32 of the JSON, 8 hex digits> <JSON length>\n`, then the JSON
//! body. JSON keeps it readable for an operator; the checksum catches damage.

use serde::{Deserialize, Serialize};

pub(crate) const META_FILE: &str = "meta.abis";
pub(crate) const META_TMP: &str = "meta.abis.tmp";
pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentMeta {
    pub id: u64,
    pub records: u64,
    pub file_len: u64,
    /// Generation of the persisted deletion bitmap, if any record was deleted.
    pub deletions_gen: Option<u64>,
    pub deleted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub format_version: u32,
    pub face_dim: u32,
    /// Live segments, oldest first.
    pub segments: Vec<SegmentMeta>,
    /// Replay starts at the beginning of this log generation...
    pub wal_gen: u64,
    /// ...whose first entry carries this sequence number.
    pub next_seq: u64,
    pub next_segment_id: u64,
    pub next_file_gen: u64,
    /// Position of the last replicated-log operation in the segments (0: none; absent in meta
    /// files written before replication existed).
    #[serde(default)]
    pub replicated_position: u64,
}

impl Meta {
    pub(crate) fn new(face_dim: u32) -> Self {
        Meta {
            format_version: FORMAT_VERSION,
            face_dim,
            segments: Vec::new(),
            wal_gen: 1,
            next_seq: 1,
            next_segment_id: 1,
            next_file_gen: 1,
            replicated_position: 0,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising plain integers and vectors cannot fail.
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        let mut out =
            format!("ABISMETA {:08x} {}\n", crc32fast::hash(&json), json.len()).into_bytes();
        out.extend_from_slice(&json);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Meta, String> {
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .filter(|&p| p < 64)
            .ok_or("no header line")?;
        let line = std::str::from_utf8(&bytes[..nl]).map_err(|_| "header not text")?;
        let mut parts = line.split(' ');
        if parts.next() != Some("ABISMETA") {
            return Err("bad magic".into());
        }
        let crc = parts
            .next()
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or("bad checksum field")?;
        let len: usize = parts
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or("bad length field")?;
        let json = &bytes[nl + 1..];
        if json.len() != len {
            return Err(format!("body is {} bytes, header says {len}", json.len()));
        }
        if crc32fast::hash(json) != crc {
            return Err("checksum mismatch".into());
        }
        let meta: Meta = serde_json::from_slice(json).map_err(|e| format!("bad JSON: {e}"))?;
        if meta.format_version != FORMAT_VERSION {
            return Err(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                meta.format_version
            ));
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_meta_round_trip() {
        let mut m = Meta::new(192);
        m.segments.push(SegmentMeta {
            id: 3,
            records: 10,
            file_len: 4096,
            deletions_gen: Some(2),
            deleted: 1,
        });
        let b = m.encode();
        assert_eq!(Meta::decode(&b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(Meta::decode(&b[..cut]).is_err());
        }
        let mut bad = b.clone();
        let n = bad.len() - 5;
        bad[n] ^= 1;
        assert!(Meta::decode(&bad).is_err());
    }
}
