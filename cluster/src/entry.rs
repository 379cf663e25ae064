//! One message of the write log: an insert (the record's canonical bytes) or a delete (the
//! referenceId), sealed with the gallery key when encryption at rest is on.
//!
//! Why seal: nats-server keeps the stream in its own files, in clear, on three machines; with
//! encryption at rest the stream must not be the one place where templates and personal
//! identifiers lie unencrypted. The associated data is the subject and the op, so a sealed
//! payload cannot be replayed under another id's subject or turned from one op into the other.

use abis_engine::store::encryption::{Keyring, MessageSealError};
use abis_engine::store::{validate_reference_id, Record};
use abis_proto::cluster::v1::{log_entry, LogEntry};
use prost::Message;

/// What one log message does.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A record, with its canonical encoding (what "the same content" compares).
    Insert {
        record: Record,
        canonical: Vec<u8>,
    },
    Delete(String),
}

/// Why a log message could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EntryError {
    #[error("log entry is not a valid protobuf message: {0}")]
    Encoding(String),
    #[error("log entry holds no operation")]
    NoOp,
    #[error("log entry is sealed and this node has no gallery key ([store] encryption_key_file)")]
    NoKey,
    #[error("log entry: {0}")]
    Seal(#[from] MessageSealError),
    #[error("log entry record: {0}")]
    Record(String),
    #[error("log entry referenceId: {0}")]
    ReferenceId(String),
}

impl EntryError {
    /// Errors that mean this node is misconfigured (no key, another key) rather than that the
    /// message is bad: applying must stop, not skip the message.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            EntryError::NoKey | EntryError::Seal(MessageSealError::UnknownKey(_))
        )
    }
}

fn aad(subject: &str, op: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(subject.len() + op.len() + 1);
    a.extend_from_slice(subject.as_bytes());
    a.push(0);
    a.extend_from_slice(op.as_bytes());
    a
}

fn seal(
    keys: Option<&Keyring>,
    subject: &str,
    op: &str,
    plain: Vec<u8>,
) -> Result<(Vec<u8>, bool), EntryError> {
    match keys {
        Some(k) => Ok((k.seal_message(&aad(subject, op), &plain)?, true)),
        None => Ok((plain, false)),
    }
}

/// The message that inserts the record whose canonical encoding is `canonical` under `subject`.
pub fn encode_insert(
    keys: Option<&Keyring>,
    subject: &str,
    canonical: &[u8],
) -> Result<Vec<u8>, EntryError> {
    let (body, sealed) = seal(keys, subject, "insert", canonical.to_vec())?;
    Ok(LogEntry {
        op: Some(log_entry::Op::Insert(body)),
        sealed,
    }
    .encode_to_vec())
}

/// The message that deletes `id` (whose subject is `subject`).
pub fn encode_delete(
    keys: Option<&Keyring>,
    subject: &str,
    id: &str,
) -> Result<Vec<u8>, EntryError> {
    let (body, sealed) = seal(keys, subject, "delete", id.as_bytes().to_vec())?;
    Ok(LogEntry {
        op: Some(log_entry::Op::Delete(body)),
        sealed,
    }
    .encode_to_vec())
}

/// Reads a log message received on `subject`. Never panics on hostile bytes.
pub fn decode(keys: Option<&Keyring>, subject: &str, payload: &[u8]) -> Result<Entry, EntryError> {
    let entry = LogEntry::decode(payload).map_err(|e| EntryError::Encoding(e.to_string()))?;
    let open = |op: &str, body: Vec<u8>| -> Result<Vec<u8>, EntryError> {
        if !entry.sealed {
            return Ok(body);
        }
        let keys = keys.ok_or(EntryError::NoKey)?;
        Ok(keys.open_message(&aad(subject, op), &body)?)
    };
    match entry.op.clone() {
        None => Err(EntryError::NoOp),
        Some(log_entry::Op::Insert(body)) => {
            let canonical = open("insert", body)?;
            let record =
                Record::decode(&canonical).map_err(|e| EntryError::Record(e.to_string()))?;
            Ok(Entry::Insert { record, canonical })
        }
        Some(log_entry::Op::Delete(body)) => {
            let id = String::from_utf8(open("delete", body)?)
                .map_err(|_| EntryError::ReferenceId("not UTF-8".into()))?;
            validate_reference_id(&id).map_err(|e| EntryError::ReferenceId(e.to_string()))?;
            Ok(Entry::Delete(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abis_engine::store::synth::synthetic_record;
    use proptest::prelude::*;

    fn keys(seed: u8) -> Keyring {
        Keyring::from_keys(&[[seed; 32]]).unwrap()
    }

    #[test]
    fn inserts_and_deletes_round_trip_in_clear_and_sealed() {
        let record = synthetic_record("100000000001", 7, 3, 1, 8);
        let canonical = record.encode().unwrap();
        let subject = crate::shard::log_subject("100000000001", 5);
        for k in [None, Some(keys(1))] {
            let msg = encode_insert(k.as_ref(), &subject, &canonical).unwrap();
            assert_eq!(
                decode(k.as_ref(), &subject, &msg).unwrap(),
                Entry::Insert {
                    record: record.clone(),
                    canonical: canonical.clone()
                }
            );
            let msg = encode_delete(k.as_ref(), &subject, "100000000001").unwrap();
            assert_eq!(
                decode(k.as_ref(), &subject, &msg).unwrap(),
                Entry::Delete("100000000001".into())
            );
        }
    }

    #[test]
    fn sealed_entries_hide_the_id_and_stay_on_their_subject() {
        let k = keys(2);
        let record = synthetic_record("100000000001", 7, 3, 0, 0);
        let canonical = record.encode().unwrap();
        let subject = crate::shard::log_subject("100000000001", 5);
        let insert = encode_insert(Some(&k), &subject, &canonical).unwrap();
        let delete = encode_delete(Some(&k), &subject, "100000000001").unwrap();
        for msg in [&insert, &delete] {
            assert!(!msg.windows(12).any(|w| w == b"100000000001"));
        }
        let other = crate::shard::log_subject("100000000002", 5);
        assert_eq!(
            decode(Some(&k), &other, &insert),
            Err(EntryError::Seal(MessageSealError::Forged))
        );
        assert_eq!(decode(None, &subject, &insert), Err(EntryError::NoKey));
        assert!(decode(None, &subject, &insert)
            .unwrap_err()
            .is_configuration());
        assert!(decode(Some(&keys(3)), &subject, &insert)
            .unwrap_err()
            .is_configuration());
        // The op is bound too: an insert's body under a delete op does not open.
        let mut swapped = LogEntry::decode(&insert[..]).unwrap();
        if let Some(log_entry::Op::Insert(b)) = swapped.op.take() {
            swapped.op = Some(log_entry::Op::Delete(b));
        }
        assert_eq!(
            decode(Some(&k), &subject, &swapped.encode_to_vec()),
            Err(EntryError::Seal(MessageSealError::Forged))
        );
    }

    #[test]
    fn malformed_entries_are_typed_errors() {
        let subject = "abis.rec.0.00";
        assert_eq!(
            decode(None, subject, &LogEntry::default().encode_to_vec()),
            Err(EntryError::NoOp)
        );
        let bad_id = LogEntry {
            op: Some(log_entry::Op::Delete(b"".to_vec())),
            sealed: false,
        };
        assert!(matches!(
            decode(None, subject, &bad_id.encode_to_vec()),
            Err(EntryError::ReferenceId(_))
        ));
        let bad_record = LogEntry {
            op: Some(log_entry::Op::Insert(vec![1, 2, 3])),
            sealed: false,
        };
        assert!(matches!(
            decode(None, subject, &bad_record.encode_to_vec()),
            Err(EntryError::Record(_))
        ));
        assert!(matches!(
            decode(None, subject, &[0xff, 0xff, 0xff]),
            Err(EntryError::Encoding(_))
        ));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let k = keys(4);
            // Whatever the bytes, an answer comes back (a typed error or a checked entry).
            let _ = decode(None, "abis.rec.0.00", &bytes);
            prop_assert!(decode(Some(&k), "abis.rec.0.00", &bytes).is_err() || !bytes.is_empty());
        }
    }
}
