//! The write path: inserts, deletes and operations of a replicated log are checked against the
//! visible and in-flight state, queued, written and fsynced in batches by one leader (group
//! commit), and only then applied to what reads see (steps 1-3 of the durability argument in
//! [`super`]).
//!
//! Replicated operations (a cluster replica applying its shard of a replicated log) carry the
//! log position in the same entry as the operation, so the position a store has applied is
//! exactly as durable as the operations up to it: a replica that crashes resumes from the
//! position its store recovered, and no operation is applied twice or skipped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::error::{Result, StoreError};
use super::record::{validate_reference_id, Record};
use super::wal::{encode_entry, wal_name, EntryKind};
use super::{lock, Held, Inner, InsertOutcome};

pub(super) enum Op {
    Insert(Arc<Record>, Arc<[u8]>),
    Delete(String),
    /// Moves the replicated position without changing any record.
    Advance,
}

pub(super) struct Queued {
    seq: u64,
    /// Position in a replicated log (replicated operations only).
    position: Option<u64>,
    op: Op,
}

/// Latest in-flight operation on an id: an insert (with its bytes) or a delete.
struct PendingOp {
    seq: u64,
    insert: Option<Arc<[u8]>>,
}

#[derive(Default)]
pub(super) struct CommitState {
    queue: Vec<Queued>,
    pending: HashMap<String, PendingOp>,
    pending_inserts: u64,
    next_seq: u64,
    durable_seq: u64,
    /// Highest replicated position queued (written or not).
    queued_position: u64,
    leader: bool,
    pub(super) failed: Option<String>,
}

/// An operation of a replicated log (a shard of the cluster's write stream).
#[derive(Debug, Clone)]
pub enum ReplicatedOp {
    Insert(Record),
    Delete(String),
    /// A log entry that changes nothing here (kept so that the position moves past it).
    Skip,
}

/// What applying a replicated operation did. Every outcome but `AlreadyApplied` moved the
/// store's replicated position to the operation's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicatedOutcome {
    Inserted,
    Deleted,
    Skipped,
    /// At or below the position the store had already applied (a redelivery): nothing done.
    AlreadyApplied,
    /// The same record was already stored.
    AlreadyPresent,
    /// Another record is stored under the id: the insert was not applied.
    Conflict,
    /// The id was not stored: the delete changed nothing.
    Missing,
    /// The record breaks the data model: not applied (the reason names the field).
    Rejected(String),
}

/// Whether an id is stored, and with which content, counting in-flight operations.
enum Presence {
    Absent,
    Same,
    Different,
}

impl CommitState {
    /// The state of a store whose log ends with entry `last_seq`.
    pub(super) fn resuming_after(last_seq: u64) -> CommitState {
        CommitState {
            next_seq: last_seq + 1,
            durable_seq: last_seq,
            ..CommitState::default()
        }
    }
}

impl Inner {
    fn presence(&self, st: &CommitState, record: &Record, payload: &[u8]) -> Result<Presence> {
        match st.pending.get(&record.reference_id) {
            Some(PendingOp {
                insert: Some(bytes),
                ..
            }) => Ok(if **bytes == *payload {
                Presence::Same
            } else {
                Presence::Different
            }),
            Some(PendingOp { insert: None, .. }) => Ok(Presence::Absent), // deleted in flight
            None => {
                let v = self.read_visible();
                let Some(loc) = v.locate(&record.reference_id) else {
                    return Ok(Presence::Absent);
                };
                let same = match loc {
                    Held::Active => v
                        .active
                        .get(&record.reference_id)
                        .is_some_and(|m| m.rec.same_content(record)),
                    Held::Frozen(i) => v
                        .frozen
                        .as_ref()
                        .and_then(|f| f.records.get(i))
                        .is_some_and(|r| r.same_content(record)),
                    Held::Seg(k, o) => v.segments[k].seg.record(o)?.same_content(record),
                };
                Ok(if same {
                    Presence::Same
                } else {
                    Presence::Different
                })
            }
        }
    }

    fn exists(&self, st: &CommitState, id: &str) -> bool {
        match st.pending.get(id) {
            Some(p) => p.insert.is_some(),
            None => self.read_visible().locate(id).is_some(),
        }
    }

    /// Queues an entry and returns its sequence number.
    fn enqueue(&self, st: &mut CommitState, position: Option<u64>, op: Op) -> u64 {
        let seq = st.next_seq;
        st.next_seq += 1;
        match &op {
            Op::Insert(rec, payload) => {
                st.pending.insert(
                    rec.reference_id.clone(),
                    PendingOp {
                        seq,
                        insert: Some(Arc::clone(payload)),
                    },
                );
                st.pending_inserts += 1;
            }
            Op::Delete(id) => {
                st.pending
                    .insert(id.clone(), PendingOp { seq, insert: None });
            }
            Op::Advance => {}
        }
        if let Some(p) = position {
            st.queued_position = st.queued_position.max(p);
        }
        st.queue.push(Queued { seq, position, op });
        seq
    }

    fn check_room(&self, st: &CommitState) -> Result<()> {
        if let Some(max) = self.cfg.max_records {
            if self.read_visible().live + st.pending_inserts >= max {
                return Err(StoreError::Full {
                    detail: format!("the gallery holds its configured maximum of {max} records"),
                });
            }
        }
        Ok(())
    }

    pub(super) fn insert(&self, record: Record) -> Result<InsertOutcome> {
        record.validate(self.cfg.face_dim)?;
        let payload: Arc<[u8]> = record.encode()?.into();
        let mut st = lock(&self.commit);
        self.check_failed(&st)?;
        match self.presence(&st, &record, &payload)? {
            Presence::Different => return Err(StoreError::AlreadyExists),
            Presence::Same => {
                // The same record may be in flight: answer once it is durable.
                if let Some(seq) = st.pending.get(&record.reference_id).map(|p| p.seq) {
                    self.wait_durable(st, seq)?;
                }
                return Ok(InsertOutcome::AlreadyPresent);
            }
            Presence::Absent => {}
        }
        self.check_room(&st)?;
        let seq = self.enqueue(&mut st, None, Op::Insert(Arc::new(record), payload));
        self.wait_durable(st, seq)?;
        Ok(InsertOutcome::Inserted)
    }

    pub(super) fn delete(&self, id: &str) -> Result<()> {
        validate_reference_id(id)?;
        let mut st = lock(&self.commit);
        self.check_failed(&st)?;
        if !self.exists(&st, id) {
            return Err(StoreError::NotFound);
        }
        let seq = self.enqueue(&mut st, None, Op::Delete(id.to_owned()));
        self.wait_durable(st, seq)
    }

    /// Applies operations of a replicated log in order, in one group commit. Operations at or
    /// below the position already applied are skipped (redeliveries); every other one moves the
    /// position, durably and atomically with its effect, even when it changes nothing (a
    /// conflicting insert, the delete of a missing id, an invalid record). Positions must
    /// increase. Errors are only those of the store itself (failed, full, I/O).
    pub(super) fn apply_replicated(
        &self,
        ops: Vec<(u64, ReplicatedOp)>,
    ) -> Result<Vec<ReplicatedOutcome>> {
        let mut st = lock(&self.commit);
        self.check_failed(&st)?;
        let mut last = st.queued_position.max(self.read_visible().replicated);
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut last_seq = None;
        for (position, op) in ops {
            if position <= last {
                outcomes.push(ReplicatedOutcome::AlreadyApplied);
                continue;
            }
            let (entry, outcome) = self.replicated_entry(&st, op)?;
            last_seq = Some(self.enqueue(&mut st, Some(position), entry));
            last = position;
            outcomes.push(outcome);
        }
        if let Some(seq) = last_seq {
            self.wait_durable(st, seq)?;
        }
        Ok(outcomes)
    }

    /// The entry that applies `op` here, and what it will do.
    fn replicated_entry(
        &self,
        st: &CommitState,
        op: ReplicatedOp,
    ) -> Result<(Op, ReplicatedOutcome)> {
        Ok(match op {
            ReplicatedOp::Skip => (Op::Advance, ReplicatedOutcome::Skipped),
            ReplicatedOp::Delete(id) => {
                if validate_reference_id(&id).is_ok() && self.exists(st, &id) {
                    (Op::Delete(id), ReplicatedOutcome::Deleted)
                } else {
                    (Op::Advance, ReplicatedOutcome::Missing)
                }
            }
            ReplicatedOp::Insert(record) => {
                let checked = record
                    .validate(self.cfg.face_dim)
                    .and_then(|()| record.encode());
                let payload: Arc<[u8]> = match checked {
                    Ok(p) => p.into(),
                    Err(e) => return Ok((Op::Advance, ReplicatedOutcome::Rejected(e.to_string()))),
                };
                match self.presence(st, &record, &payload)? {
                    Presence::Same => (Op::Advance, ReplicatedOutcome::AlreadyPresent),
                    Presence::Different => (Op::Advance, ReplicatedOutcome::Conflict),
                    Presence::Absent => {
                        self.check_room(st)?;
                        (
                            Op::Insert(Arc::new(record), payload),
                            ReplicatedOutcome::Inserted,
                        )
                    }
                }
            }
        })
    }

    /// Group commit: waits until entry `seq` is durable, leading a batch when no one else is.
    pub(super) fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, CommitState>,
        seq: u64,
    ) -> Result<()> {
        loop {
            if st.durable_seq >= seq {
                return Ok(());
            }
            self.check_failed(&st)?;
            if !st.leader && !st.queue.is_empty() {
                st.leader = true;
                let batch = std::mem::take(&mut st.queue);
                let inserts = batch
                    .iter()
                    .filter(|q| matches!(q.op, Op::Insert(..)))
                    .count() as u64;
                drop(st);
                let res = self.write_batch(batch);
                st = lock(&self.commit);
                st.leader = false;
                st.pending_inserts -= inserts;
                match res {
                    Ok(last) => {
                        st.durable_seq = last;
                        st.pending.retain(|_, p| p.seq > last);
                    }
                    Err(reason) => {
                        tracing::error!(reason = %reason, "log write failed; gallery store refuses writes until reopened");
                        st.failed.get_or_insert(reason);
                    }
                }
                self.committed.notify_all();
            } else {
                st = self.committed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Writes and fsyncs one batch, then applies it. `Err` is fatal.
    fn write_batch(&self, batch: Vec<Queued>) -> Result<u64, String> {
        let mut wal = lock(&self.wal);
        let first = batch.first().map_or(0, |q| q.seq);
        let last = batch.last().map_or(0, |q| q.seq);
        let mut buf = std::mem::take(&mut wal.buf);
        buf.clear();
        for q in &batch {
            encode_queued(&mut buf, q, first);
        }
        let name = wal_name(wal.gen);
        wal.file
            .write_all(&buf)
            .map_err(|e| format!("write to {name}: {e}"))?;
        wal.file
            .sync()
            .map_err(|e| format!("fsync of {name}: {e}"))?;
        wal.len += buf.len() as u64;
        wal.last_seq = last;
        self.wal_syncs.fetch_add(1, Ordering::Relaxed);
        self.wal_entries
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.wal_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if buf.capacity() <= 8 << 20 {
            wal.buf = buf;
        }
        // Apply under the log lock, so a checkpoint's rotation sees every synced batch applied.
        let mut v = self.write_visible();
        for q in batch {
            let r = match q.op {
                Op::Insert(rec, p) => v.apply_insert(rec, p.len()),
                Op::Delete(id) => v.apply_delete(&id),
                Op::Advance => Ok(()),
            };
            r.map_err(|d| format!("internal inconsistency at entry {}: {d}", q.seq))?;
            if let Some(p) = q.position {
                v.replicated = p;
            }
        }
        v.version += 1;
        let over = self.memtable_full(&v) || self.wants_merge(&v);
        drop(v);
        drop(wal);
        if over && self.cfg.background {
            lock(&self.bg).wake = true;
            self.bg_cv.notify_all();
        }
        Ok(last)
    }
}

/// One queued operation as a log entry: local operations as before, replicated ones with their
/// position as the first 8 bytes of the payload.
fn encode_queued(buf: &mut Vec<u8>, q: &Queued, batch_first: u64) {
    match (q.position, &q.op) {
        (None, Op::Insert(_, p)) => encode_entry(buf, EntryKind::Insert, q.seq, batch_first, p),
        (None, Op::Delete(id)) => {
            encode_entry(buf, EntryKind::Delete, q.seq, batch_first, id.as_bytes())
        }
        (position, op) => {
            let position = position.unwrap_or(0);
            let (kind, rest): (EntryKind, &[u8]) = match op {
                Op::Insert(_, p) => (EntryKind::InsertAt, p),
                Op::Delete(id) => (EntryKind::DeleteAt, id.as_bytes()),
                Op::Advance => (EntryKind::Advance, &[]),
            };
            let mut payload = Vec::with_capacity(8 + rest.len());
            payload.extend_from_slice(&position.to_le_bytes());
            payload.extend_from_slice(rest);
            encode_entry(buf, kind, q.seq, batch_first, &payload);
        }
    }
}
