//! Which shard holds a referenceId, and the NATS subjects of a shard.
//!
//! A referenceId is a personal identification number: it never appears in a subject (NATS
//! servers log subjects, monitoring endpoints list them). Subjects carry the shard number and a
//! key derived from the id by SHA-256 instead, so one id always maps to one subject (per-subject
//! optimistic concurrency needs that) and the subject says nothing about the person.
//!
//! - shard of an id = the first 8 bytes of SHA-256(id), read big-endian, modulo the number of
//!   shards fixed at cluster creation;
//! - its log subject = `abis.rec.<shard>.<key>`, key = the first 16 bytes of SHA-256(id) in
//!   lowercase hex (128 bits: collisions between the ids of one registry are not a concern);
//! - requests to a shard's replicas go to `abis.<kind>.<shard>` in queue group `shard-<shard>`,
//!   so each request reaches one live replica of the shard.

use sha2::{Digest, Sha256};

/// Prefix of every log subject; the stream captures `abis.rec.>`.
pub const LOG_PREFIX: &str = "abis.rec";
/// The most shards a cluster may have (a subject token stays short, a fan-out stays bounded).
pub const MAX_SHARDS: u32 = 4096;

/// The shard of `id` among `shards` (at least 1).
pub fn shard_of(id: &str, shards: u32) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % u64::from(shards.max(1))) as u32
}

/// The subject key of `id`: 32 lowercase hex digits.
pub fn subject_key(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The log subject of `id` in a cluster of `shards` shards.
pub fn log_subject(id: &str, shards: u32) -> String {
    format!("{LOG_PREFIX}.{}.{}", shard_of(id, shards), subject_key(id))
}

/// Every log subject of `shard` (for consumers, direct gets and purges).
pub fn log_filter(shard: u32) -> String {
    format!("{LOG_PREFIX}.{shard}.>")
}

/// The kinds of request a replica answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Search,
    Verify,
    Get,
    Count,
    Bootstrap,
}

impl RequestKind {
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Search,
        RequestKind::Verify,
        RequestKind::Get,
        RequestKind::Count,
        RequestKind::Bootstrap,
    ];

    fn token(self) -> &'static str {
        match self {
            RequestKind::Search => "search",
            RequestKind::Verify => "verify",
            RequestKind::Get => "get",
            RequestKind::Count => "count",
            RequestKind::Bootstrap => "bootstrap",
        }
    }
}

/// `abis.<kind>.<shard>`.
pub fn request_subject(kind: RequestKind, shard: u32) -> String {
    format!("abis.{}.{shard}", kind.token())
}

/// The queue group of a shard's replicas.
pub fn queue_group(shard: u32) -> String {
    format!("shard-{shard}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values_never_change() {
        // Changing the function would move every record of a running cluster: pin it. Values
        // from `printf 100000000001 | sha256sum` (b41aaa1989b66759a0572cbe647b7ab0...).
        assert_eq!(
            subject_key("100000000001"),
            "b41aaa1989b66759a0572cbe647b7ab0"
        );
        assert_eq!(shard_of("100000000001", 7), 4);
        assert_eq!(shard_of("100000000001", 16), 9);
        assert_eq!(
            log_subject("100000000001", 7),
            "abis.rec.4.b41aaa1989b66759a0572cbe647b7ab0"
        );
        assert_eq!(log_filter(3), "abis.rec.3.>");
        assert_eq!(request_subject(RequestKind::Search, 12), "abis.search.12");
        assert_eq!(queue_group(12), "shard-12");
    }

    #[test]
    fn ids_spread_evenly_over_shards() {
        let shards = 16u32;
        let n = 64_000u64;
        let mut counts = vec![0u64; shards as usize];
        for i in 0..n {
            counts[shard_of(&format!("{}", 100_000_000_000 + i), shards) as usize] += 1;
        }
        let expected = n / u64::from(shards);
        for (s, c) in counts.iter().enumerate() {
            // 4000 expected, sd ≈ 61: 5 sd either way.
            assert!(c.abs_diff(expected) < 310, "shard {s}: {c} of {n}");
        }
    }

    proptest! {
        #[test]
        fn shard_is_in_range_and_stable(id in "\\PC{1,64}", shards in 1u32..MAX_SHARDS) {
            let s = shard_of(&id, shards);
            prop_assert!(s < shards);
            prop_assert_eq!(s, shard_of(&id, shards));
            prop_assert_eq!(shard_of(&id, 1), 0);
        }

        #[test]
        fn subjects_are_valid_tokens_without_the_id(id in "[0-9]{12}", shards in 1u32..64) {
            let subject = log_subject(&id, shards);
            prop_assert!(!subject.contains(&id));
            prop_assert!(subject.split('.').all(|t| !t.is_empty()
                && t.chars().all(|c| c.is_ascii_alphanumeric())));
            prop_assert_eq!(subject.split('.').count(), 4);
        }
    }
}
