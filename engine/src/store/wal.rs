//! Write-ahead log: file header, entry codec, and the recovery scan that tells a torn tail from
//! corruption.
//!
//! A log file `wal-<gen>.log` starts with a 32-byte header, then entries back to back. All
//! integers are **little-endian**.
//!
//! File header:
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! | 0      | 8    | magic `b"ABISWAL\0"`                    |
//! | 8      | 4    | version, `1`                            |
//! | 12     | 4    | reserved, 0                             |
//! | 16     | 8    | generation (the number in the name)     |
//! | 24     | 4    | reserved, 0                             |
//! | 28     | 4    | CRC-32 of bytes 0..28                   |
//!
//! Entry (28-byte header + payload):
//!
//! | offset | size | field                                                               |
//! |-------:|-----:|---------------------------------------------------------------------|
//! | 0      | 4    | payload length L (≤ 1 MiB)                                          |
//! | 4      | 1    | kind (below)                                                        |
//! | 5      | 3    | reserved, 0                                                         |
//! | 8      | 8    | sequence number (consecutive over the whole store, from 1)          |
//! | 16     | 8    | sequence number of the first entry of this entry's fsync batch     |
//! | 24     | 4    | CRC-32 of header bytes 0..24 followed by the payload                |
//! | 28     | L    | payload                                                             |
//!
//! Kinds: 1 insert (payload = record encoding), 2 delete (payload = id); for operations of a
//! replicated log (a cluster replica), 3 insert, 4 delete and 5 advance carry the log position
//! as a u64 before the same payloads (advance: the position alone), so the position a store
//! has applied is as durable as the operations up to it.
//!
//! Why the batch field: the writer writes one batch, fsyncs it, and only then writes the next.
//! So at most the last batch can be torn by a crash, and bytes of a torn batch may reach the
//! disk out of order (a later sector without an earlier one). On recovery, a damaged entry at
//! sequence `s` is a torn tail if no later valid entry belongs to a batch that started after
//! `s`; if one does, the batch holding `s` had been fsynced (acknowledged) before that later
//! batch was written, so the damage is corruption of acknowledged data and recovery refuses to
//! drop it.

use crc32fast::Hasher;

/// Log file name for a generation.
pub(crate) fn wal_name(gen: u64) -> String {
    format!("wal-{gen:010}.log")
}

/// Generation of a log file name.
pub(crate) fn parse_wal_name(name: &str) -> Option<u64> {
    let g = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if g.len() != 10 || !g.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    g.parse().ok()
}

pub(crate) const WAL_MAGIC: &[u8; 8] = b"ABISWAL\0";
pub(crate) const WAL_VERSION: u32 = 1;
pub(crate) const WAL_HEADER_LEN: usize = 32;
pub(crate) const ENTRY_HEADER_LEN: usize = 28;
/// Largest payload an entry may carry (a record is bounded well below this).
pub(crate) const MAX_PAYLOAD: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Insert = 1,
    Delete = 2,
    /// A replicated-log insert: position u64, then the record encoding.
    InsertAt = 3,
    /// A replicated-log delete: position u64, then the id.
    DeleteAt = 4,
    /// A replicated-log entry with no effect here: position u64 only.
    Advance = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub kind: EntryKind,
    pub seq: u64,
    pub batch_first_seq: u64,
    pub payload: &'a [u8],
}

pub(crate) fn encode_file_header(gen: u64) -> [u8; WAL_HEADER_LEN] {
    let mut h = [0u8; WAL_HEADER_LEN];
    h[0..8].copy_from_slice(WAL_MAGIC);
    h[8..12].copy_from_slice(&WAL_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&gen.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a file header; `Err` says why it is not one.
pub(crate) fn parse_file_header(buf: &[u8], gen: u64) -> Result<(), String> {
    let h = buf
        .get(..WAL_HEADER_LEN)
        .ok_or_else(|| format!("{} bytes, shorter than the header", buf.len()))?;
    if &h[0..8] != WAL_MAGIC {
        return Err("bad magic".into());
    }
    if le_u32(&h[28..32]) != crc32fast::hash(&h[..28]) {
        return Err("header checksum mismatch".into());
    }
    let version = le_u32(&h[8..12]);
    if version != WAL_VERSION {
        return Err(format!("unsupported log version {version}"));
    }
    let g = le_u64(&h[16..24]);
    if g != gen {
        return Err(format!("header says generation {g}, the name says {gen}"));
    }
    Ok(())
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Appends one entry to `out`.
pub(crate) fn encode_entry(
    out: &mut Vec<u8>,
    kind: EntryKind,
    seq: u64,
    batch_first_seq: u64,
    payload: &[u8],
) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4] = kind as u8;
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&batch_first_seq.to_le_bytes());
    let mut c = Hasher::new();
    c.update(&h);
    c.update(payload);
    out.extend_from_slice(&h);
    out.extend_from_slice(&c.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parses the entry at the start of `buf`, returning it and its encoded length.
pub(crate) fn parse_entry(buf: &[u8]) -> Result<(Entry<'_>, usize), &'static str> {
    let h = buf
        .get(..ENTRY_HEADER_LEN)
        .ok_or("truncated entry header")?;
    let len = le_u32(&h[0..4]) as usize;
    if len > MAX_PAYLOAD {
        return Err("payload length out of range");
    }
    let kind = match h[4] {
        1 => EntryKind::Insert,
        2 => EntryKind::Delete,
        3 => EntryKind::InsertAt,
        4 => EntryKind::DeleteAt,
        5 => EntryKind::Advance,
        _ => return Err("unknown entry kind"),
    };
    if h[5..8] != [0, 0, 0] {
        return Err("reserved bytes not zero");
    }
    let seq = le_u64(&h[8..16]);
    let batch_first_seq = le_u64(&h[16..24]);
    if batch_first_seq > seq || seq == 0 {
        return Err("impossible sequence numbers");
    }
    let payload = buf
        .get(ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + len)
        .ok_or("truncated payload")?;
    let mut c = Hasher::new();
    c.update(&h[..24]);
    c.update(payload);
    if c.finalize() != le_u32(&h[24..28]) {
        return Err("checksum mismatch");
    }
    Ok((
        Entry {
            kind,
            seq,
            batch_first_seq,
            payload,
        },
        ENTRY_HEADER_LEN + len,
    ))
}

/// Result of scanning one log file.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    pub entries: Vec<Entry<'a>>,
    /// Offset of the damaged tail that must be dropped (only in the last file).
    pub torn_at: Option<usize>,
}

/// Scans a whole log file (header included). `expected_seq` is the sequence number the first
/// entry must carry; `is_last` says whether this is the newest file (only it may be torn).
/// `Err` carries a corruption detail.
pub(crate) fn scan(buf: &[u8], expected_seq: u64, is_last: bool) -> Result<Scan<'_>, String> {
    let mut pos = WAL_HEADER_LEN.min(buf.len());
    let mut expected = expected_seq;
    let mut entries = Vec::new();
    while pos < buf.len() {
        let damage = match parse_entry(&buf[pos..]) {
            Ok((e, n)) if e.seq == expected => {
                entries.push(e);
                pos += n;
                expected += 1;
                continue;
            }
            Ok((e, _)) => {
                if e.seq > expected && e.batch_first_seq > expected {
                    return Err(format!(
                        "entry at offset {pos} has sequence {} where {expected} was expected",
                        e.seq
                    ));
                }
                "out-of-order sequence number"
            }
            Err(why) => why,
        };
        // A damaged entry. Look for proof that its batch had been fsynced: a valid entry
        // further on that belongs to a batch started after `expected`.
        for q in pos + 1..buf.len() {
            if let Ok((e, _)) = parse_entry(&buf[q..]) {
                if e.batch_first_seq > expected {
                    return Err(format!(
                        "damaged entry at offset {pos} ({damage}) is followed by a later \
                         acknowledged batch at offset {q}"
                    ));
                }
            }
        }
        if !is_last {
            return Err(format!(
                "damaged entry at offset {pos} ({damage}) in a log file that is not the newest"
            ));
        }
        return Ok(Scan {
            entries,
            torn_at: Some(pos),
        });
    }
    Ok(Scan {
        entries,
        torn_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(batches: &[usize], first_seq: u64) -> (Vec<u8>, Vec<usize>) {
        let mut out = encode_file_header(1).to_vec();
        let mut starts = Vec::new();
        let mut seq = first_seq;
        for &n in batches {
            let first = seq;
            for _ in 0..n {
                starts.push(out.len());
                let payload = format!("payload-{seq}").into_bytes();
                encode_entry(&mut out, EntryKind::Insert, seq, first, &payload);
                seq += 1;
            }
        }
        (out, starts)
    }

    #[test]
    fn store_wal_layout() {
        let mut out = Vec::new();
        encode_entry(&mut out, EntryKind::Delete, 5, 4, b"ab");
        assert_eq!(out.len(), 30);
        assert_eq!(&out[0..8], &[2, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&out[8..16], &5u64.to_le_bytes());
        assert_eq!(&out[16..24], &4u64.to_le_bytes());
        let mut c = Hasher::new();
        c.update(&out[..24]);
        c.update(b"ab");
        assert_eq!(&out[24..28], &c.finalize().to_le_bytes());
        assert_eq!(parse_wal_name(&wal_name(42)), Some(42));
        assert!(parse_file_header(&encode_file_header(3), 3).is_ok());
        assert!(parse_file_header(&encode_file_header(3), 4).is_err());
    }

    #[test]
    fn store_wal_torn_tail_vs_middle_corruption() {
        let (buf, starts) = log(&[1, 1, 3, 1], 10);
        let s = scan(&buf, 10, true).unwrap();
        assert_eq!(s.entries.len(), 6);
        assert_eq!(s.torn_at, None);

        // Torn last entry.
        let cut = buf.len() - 3;
        let s = scan(&buf[..cut], 10, true).unwrap();
        assert_eq!(s.entries.len(), 5);
        assert_eq!(s.torn_at, Some(starts[5]));

        // Damage inside the last batch, later entries of the same batch valid: torn.
        let (buf2, starts2) = log(&[1, 1, 3], 10);
        let mut b = buf2.clone();
        b[starts2[2] + 30] ^= 0xFF;
        let s = scan(&b, 10, true).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.torn_at, Some(starts2[2]));

        // Damage in an earlier batch followed by a later batch: corruption.
        let mut b = buf.clone();
        b[starts[1] + 30] ^= 0xFF;
        assert!(scan(&b, 10, true).is_err());
        // The same damage in a non-last file is corruption even at the end.
        assert!(scan(&buf[..cut], 10, false).is_err());
        // Zero fill after the end (pre-allocated blocks): torn.
        let mut z = buf.clone();
        z.extend_from_slice(&[0u8; 4096]);
        let s = scan(&z, 10, true).unwrap();
        assert_eq!((s.entries.len(), s.torn_at), (6, Some(buf.len())));
        // A sequence gap between valid entries is corruption.
        assert!(scan(&buf, 9, true).is_err());
    }

    proptest! {
        #[test]
        fn store_wal_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), seq in any::<u64>(), last in any::<bool>()) {
            let _ = parse_entry(&bytes);
            let _ = parse_file_header(&bytes, 1);
            let _ = scan(&bytes, seq, last);
        }

        #[test]
        fn store_wal_entry_round_trip(kind in prop_oneof![Just(EntryKind::Insert), Just(EntryKind::Delete)], seq in 1u64..u64::MAX, back in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let first = seq - back % seq;
            let mut out = Vec::new();
            encode_entry(&mut out, kind, seq, first, &payload);
            let (e, n) = parse_entry(&out).unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(e, Entry { kind, seq, batch_first_seq: first, payload: &payload });
        }

        #[test]
        fn store_wal_any_truncation_is_a_clean_prefix(batches in proptest::collection::vec(1usize..4, 1..8), cut in any::<usize>()) {
            let (buf, starts) = log(&batches, 1);
            let cut = WAL_HEADER_LEN + cut % (buf.len() - WAL_HEADER_LEN + 1);
            let s = scan(&buf[..cut], 1, true).unwrap();
            let whole = starts.iter().chain(std::iter::once(&buf.len())).skip(1).filter(|&&e| e <= cut).count();
            prop_assert_eq!(s.entries.len(), whole);
            prop_assert!(s.torn_at.unwrap_or(cut) <= cut);
        }

        #[test]
        fn store_wal_mutations_never_panic(batches in proptest::collection::vec(1usize..4, 1..8), flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..4)) {
            let (mut buf, _) = log(&batches, 1);
            for (i, x) in flips { let n = buf.len(); buf[i % n] ^= x; }
            if let Ok(s) = scan(&buf, 1, true) {
                // Whatever survives is a consecutive run from the expected start.
                for (i, e) in s.entries.iter().enumerate() { prop_assert_eq!(e.seq, 1 + i as u64); }
            }
        }
    }
}
