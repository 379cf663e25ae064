//! Between the engine's types and the `abis.cluster.v1` messages routers and replicas exchange.
//!
//! Every `*_from_wire` checks what it decodes (lengths, ranges, finite numbers, valid ids), so a
//! replica or router that receives hostile or corrupt bytes answers with a typed error and never
//! panics or searches with nonsense.

use std::collections::HashSet;

use abis_engine::gallery::{Candidate, IdentifyOptions, ModalityEvidence, Probe, Verification};
use abis_engine::store::{validate_reference_id, MAX_FACE_DIM};
use abis_engine::template::{
    FingerPosition, FingerTemplate, Impression, Minutia, MinutiaKind, MAX_MINUTIAE,
};
use abis_proto::cluster::v1 as pb;
use prost::Message;

use crate::gallery_shard::{FailureKind, Identified, RemoteFailure, ShardError};
use crate::shard::shard_of;

/// Most fingers and faces in one probe (the service accepts fewer samples than this).
pub const MAX_PROBE_FINGERS: usize = 64;
pub const MAX_PROBE_FACES: usize = 16;
/// Most queries in one search request and most results a query may ask for.
pub const MAX_QUERIES: usize = 1024;
pub const MAX_RESULTS: usize = 1000;
/// Most ids a restricted search may list.
pub const MAX_ONLY: usize = 1 << 20;
/// Longest node name (it goes into audit entries).
pub const MAX_NODE_NAME: usize = 64;

const MINUTIA_BYTES: usize = 10;

/// Why a message could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("{what} is not a valid protobuf message: {detail}")]
    Decode { what: &'static str, detail: String },
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error("{0} is missing")]
    Missing(&'static str),
}

fn invalid(field: impl Into<String>, detail: impl Into<String>) -> WireError {
    WireError::Invalid {
        field: field.into(),
        detail: detail.into(),
    }
}

/// Decodes a request a replica received.
pub fn decode_request(bytes: &[u8]) -> Result<pb::ShardRequest, WireError> {
    pb::ShardRequest::decode(bytes).map_err(|e| WireError::Decode {
        what: "shard request",
        detail: e.to_string(),
    })
}

/// Decodes a replica's reply, checking the node name it carries.
pub fn decode_reply(bytes: &[u8]) -> Result<pb::ShardReply, WireError> {
    let reply = pb::ShardReply::decode(bytes).map_err(|e| WireError::Decode {
        what: "shard reply",
        detail: e.to_string(),
    })?;
    check_node_name(&reply.node)?;
    Ok(reply)
}

/// A node name is short and printable ASCII without spaces (it goes into audit entries and
/// KV keys).
pub fn check_node_name(name: &str) -> Result<(), WireError> {
    if name.is_empty()
        || name.len() > MAX_NODE_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "node",
            format!("node names are 1..={MAX_NODE_NAME} characters of A-Z a-z 0-9 - _"),
        ));
    }
    Ok(())
}

fn template_to_wire(position: FingerPosition, t: &FingerTemplate) -> pb::Finger {
    let mut minutiae = Vec::with_capacity(t.minutiae.len() * MINUTIA_BYTES);
    for m in &t.minutiae {
        minutiae.extend_from_slice(&m.x.to_le_bytes());
        minutiae.extend_from_slice(&m.y.to_le_bytes());
        minutiae.extend_from_slice(&m.direction.to_bits().to_le_bytes());
        minutiae.push(match m.kind {
            MinutiaKind::Ending => 0,
            MinutiaKind::Bifurcation => 1,
            MinutiaKind::Other => 2,
        });
        minutiae.push(m.quality);
    }
    pb::Finger {
        position: u32::from(position.code()),
        width: u32::from(t.width),
        height: u32::from(t.height),
        ppi: u32::from(t.ppi),
        template_position: u32::from(t.position.code()),
        impression: u32::from(t.impression.code()),
        quality: u32::from(t.quality),
        minutiae,
    }
}

fn small<T: TryFrom<u32>>(field: &str, v: u32) -> Result<T, WireError> {
    T::try_from(v).map_err(|_| invalid(field, format!("{v} is out of range")))
}

fn position(field: &str, code: u32) -> Result<FingerPosition, WireError> {
    FingerPosition::new(small(field, code)?).map_err(|e| invalid(field, e.to_string()))
}

fn template_from_wire(
    field: &str,
    f: pb::Finger,
) -> Result<(FingerPosition, FingerTemplate), WireError> {
    let at = position(&format!("{field}.position"), f.position)?;
    if !f.minutiae.len().is_multiple_of(MINUTIA_BYTES)
        || f.minutiae.len() / MINUTIA_BYTES > MAX_MINUTIAE
    {
        return Err(invalid(
            format!("{field}.minutiae"),
            format!(
                "{} bytes is not a whole number of at most {MAX_MINUTIAE} minutiae",
                f.minutiae.len()
            ),
        ));
    }
    let mut minutiae = Vec::with_capacity(f.minutiae.len() / MINUTIA_BYTES);
    for m in f.minutiae.chunks_exact(MINUTIA_BYTES) {
        let kind = match m[8] {
            0 => MinutiaKind::Ending,
            1 => MinutiaKind::Bifurcation,
            2 => MinutiaKind::Other,
            k => return Err(invalid(format!("{field}.minutiae"), format!("kind {k}"))),
        };
        minutiae.push(Minutia {
            x: u16::from_le_bytes([m[0], m[1]]),
            y: u16::from_le_bytes([m[2], m[3]]),
            direction: f32::from_bits(u32::from_le_bytes([m[4], m[5], m[6], m[7]])),
            kind,
            quality: m[9],
        });
    }
    let template = FingerTemplate {
        width: small(&format!("{field}.width"), f.width)?,
        height: small(&format!("{field}.height"), f.height)?,
        ppi: small(&format!("{field}.ppi"), f.ppi)?,
        position: position(&format!("{field}.template_position"), f.template_position)?,
        impression: Impression::from_code(small(&format!("{field}.impression"), f.impression)?)
            .map_err(|e| invalid(format!("{field}.impression"), e.to_string()))?,
        quality: small(&format!("{field}.quality"), f.quality)?,
        minutiae,
    };
    template
        .validate()
        .map_err(|e| invalid(field.to_string(), e.to_string()))?;
    Ok((at, template))
}

/// The wire form of a probe: templates field for field, faces as they are.
pub fn probe_to_wire(p: &Probe) -> pb::Probe {
    pb::Probe {
        fingers: p
            .fingers
            .iter()
            .map(|(pos, t)| template_to_wire(*pos, t))
            .collect(),
        faces: p
            .faces
            .iter()
            .map(|f| pb::Face { values: f.clone() })
            .collect(),
    }
}

/// A probe from the wire, checked: at most [`MAX_PROBE_FINGERS`] valid templates and
/// [`MAX_PROBE_FACES`] finite embeddings of at most [`MAX_FACE_DIM`] values.
pub fn probe_from_wire(field: &str, p: pb::Probe) -> Result<Probe, WireError> {
    if p.fingers.len() > MAX_PROBE_FINGERS || p.faces.len() > MAX_PROBE_FACES {
        return Err(invalid(
            field,
            format!(
                "{} fingers and {} faces (at most {MAX_PROBE_FINGERS} and {MAX_PROBE_FACES})",
                p.fingers.len(),
                p.faces.len()
            ),
        ));
    }
    let fingers = p
        .fingers
        .into_iter()
        .enumerate()
        .map(|(i, f)| template_from_wire(&format!("{field}.fingers[{i}]"), f))
        .collect::<Result<_, _>>()?;
    let mut faces = Vec::with_capacity(p.faces.len());
    for (i, f) in p.faces.into_iter().enumerate() {
        if f.values.is_empty()
            || f.values.len() > MAX_FACE_DIM
            || f.values.iter().any(|v| !v.is_finite())
        {
            return Err(invalid(
                format!("{field}.faces[{i}]"),
                format!("1..={MAX_FACE_DIM} finite values expected"),
            ));
        }
        faces.push(f.values);
    }
    Ok(Probe { fingers, faces })
}

/// The query one shard runs for a search over the whole cluster: the same probe and options,
/// the probe's own id excluded only where it lives, and a restricting list cut to the ids of
/// this shard. `None` when the list names no id of this shard (the shard searches nothing).
pub fn query_to_wire(
    probe: &pb::Probe,
    options: &IdentifyOptions,
    shard: u32,
    shards: u32,
) -> Option<pb::Query> {
    let only: Vec<String> = match &options.only {
        None => Vec::new(),
        Some(ids) => {
            let mut mine: Vec<String> = ids
                .iter()
                .filter(|id| shard_of(id, shards) == shard)
                .cloned()
                .collect();
            if mine.is_empty() {
                return None;
            }
            mine.sort_unstable();
            mine
        }
    };
    Some(pb::Query {
        probe: Some(probe.clone()),
        max_results: options.max_results.min(MAX_RESULTS) as u32,
        target_fpir: options.target_fpir,
        exclude: options
            .exclude
            .clone()
            .filter(|id| shard_of(id, shards) == shard)
            .unwrap_or_default(),
        restrict: options.only.is_some(),
        only,
    })
}

/// A query from the wire, checked.
pub fn query_from_wire(field: &str, q: pb::Query) -> Result<(Probe, IdentifyOptions), WireError> {
    let probe = probe_from_wire(
        &format!("{field}.probe"),
        q.probe.ok_or(WireError::Missing("query probe"))?,
    )?;
    let max_results = q.max_results as usize;
    if !(1..=MAX_RESULTS).contains(&max_results) {
        return Err(invalid(
            format!("{field}.max_results"),
            format!("{max_results} is not in 1..={MAX_RESULTS}"),
        ));
    }
    if !(q.target_fpir > 0.0 && q.target_fpir < 1.0) {
        return Err(invalid(format!("{field}.target_fpir"), "must be in (0, 1)"));
    }
    let exclude = if q.exclude.is_empty() {
        None
    } else {
        validate_reference_id(&q.exclude)
            .map_err(|e| invalid(format!("{field}.exclude"), e.to_string()))?;
        Some(q.exclude)
    };
    if q.only.len() > MAX_ONLY {
        return Err(invalid(
            format!("{field}.only"),
            format!("more than {MAX_ONLY} ids"),
        ));
    }
    for (i, id) in q.only.iter().enumerate() {
        validate_reference_id(id)
            .map_err(|e| invalid(format!("{field}.only[{i}]"), e.to_string()))?;
    }
    let only = q
        .restrict
        .then(|| q.only.into_iter().collect::<HashSet<_>>());
    Ok((
        probe,
        IdentifyOptions {
            max_results,
            target_fpir: q.target_fpir,
            exclude,
            only,
        },
    ))
}

fn evidence_to_wire(e: &ModalityEvidence) -> pb::Evidence {
    pb::Evidence {
        score: e.score,
        positions: e.positions.clone(),
    }
}

fn evidence_from_wire(field: &str, e: pb::Evidence) -> Result<ModalityEvidence, WireError> {
    if !e.score.is_finite()
        || e.positions.len() > MAX_PROBE_FINGERS
        || e.positions.iter().any(|&p| p > 10)
    {
        return Err(invalid(
            field,
            "score not finite or finger positions out of range",
        ));
    }
    Ok(ModalityEvidence {
        score: e.score,
        positions: e.positions,
    })
}

pub fn candidate_to_wire(c: &Candidate) -> pb::Candidate {
    pb::Candidate {
        reference_id: c.reference_id.clone(),
        score: c.score,
        finger: c.finger.as_ref().map(evidence_to_wire),
        face: c.face.as_ref().map(evidence_to_wire),
    }
}

pub fn candidate_from_wire(field: &str, c: pb::Candidate) -> Result<Candidate, WireError> {
    validate_reference_id(&c.reference_id)
        .map_err(|e| invalid(format!("{field}.reference_id"), e.to_string()))?;
    if !c.score.is_finite() {
        return Err(invalid(format!("{field}.score"), "not finite"));
    }
    Ok(Candidate {
        reference_id: c.reference_id,
        score: c.score,
        finger: c
            .finger
            .map(|e| evidence_from_wire(&format!("{field}.finger"), e))
            .transpose()?,
        face: c
            .face
            .map(|e| evidence_from_wire(&format!("{field}.face"), e))
            .transpose()?,
    })
}

pub fn verification_to_wire(v: &Verification) -> pb::VerifyReply {
    pb::VerifyReply {
        score: v.score,
        finger: v.finger.as_ref().map(evidence_to_wire),
        face: v.face.as_ref().map(evidence_to_wire),
    }
}

pub fn verification_from_wire(v: pb::VerifyReply) -> Result<Verification, WireError> {
    if !v.score.is_finite() {
        return Err(invalid("verify.score", "not finite"));
    }
    Ok(Verification {
        score: v.score,
        finger: v
            .finger
            .map(|e| evidence_from_wire("verify.finger", e))
            .transpose()?,
        face: v
            .face
            .map(|e| evidence_from_wire("verify.face", e))
            .transpose()?,
    })
}

fn kind_to_wire(kind: FailureKind) -> pb::FailureKind {
    match kind {
        FailureKind::NotFound => pb::FailureKind::NotFound,
        FailureKind::EmptyProbe => pb::FailureKind::EmptyProbe,
        FailureKind::Invalid => pb::FailureKind::Invalid,
        FailureKind::Unavailable => pb::FailureKind::Unavailable,
        FailureKind::Internal => pb::FailureKind::Internal,
    }
}

/// A failure as a replica sends it: the kind, and the error's words — except for an internal
/// failure, logged here, whose details stay on the replica.
pub fn failure_to_wire(e: &ShardError) -> pb::Failure {
    let kind = e.kind();
    let message = match kind {
        FailureKind::Internal => {
            tracing::error!(error = %e, "replica gallery failure");
            "the replica's gallery failed".to_string()
        }
        _ => e.to_string(),
    };
    failure(kind, message)
}

/// A failure of `kind` with `message`, for the wire.
pub fn failure(kind: FailureKind, message: impl Into<String>) -> pb::Failure {
    pb::Failure {
        kind: kind_to_wire(kind) as i32,
        message: message.into(),
    }
}

/// A replica's definite failure (one that is not worth asking another replica about).
pub fn failure_from_wire(f: &pb::Failure) -> RemoteFailure {
    let kind = match pb::FailureKind::try_from(f.kind).unwrap_or(pb::FailureKind::Unspecified) {
        pb::FailureKind::NotFound => FailureKind::NotFound,
        pb::FailureKind::EmptyProbe => FailureKind::EmptyProbe,
        pb::FailureKind::Invalid => FailureKind::Invalid,
        _ => FailureKind::Internal,
    };
    RemoteFailure::Refused {
        kind,
        message: f.message.clone(),
    }
}

/// One query's answer as a replica sends it.
pub fn found_to_wire(r: Result<Identified, ShardError>) -> pb::QueryResult {
    let outcome = match r {
        Ok(found) => pb::query_result::Outcome::Found(pb::Found {
            candidates: found.candidates.iter().map(candidate_to_wire).collect(),
            threshold: found.threshold,
            searched: found.searched,
        }),
        Err(e) => pb::query_result::Outcome::Failure(failure_to_wire(&e)),
    };
    pb::QueryResult {
        outcome: Some(outcome),
    }
}

/// One query's answer from a replica: its candidates, or the failure it sent (the outer error:
/// an answer that does not decode).
pub fn found_from_wire(r: pb::QueryResult) -> Result<Result<Identified, RemoteFailure>, WireError> {
    match r.outcome {
        Some(pb::query_result::Outcome::Found(found)) => {
            let candidates = found
                .candidates
                .into_iter()
                .enumerate()
                .map(|(k, c)| candidate_from_wire(&format!("candidates[{k}]"), c))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Ok(Identified {
                candidates,
                threshold: found.threshold,
                searched: found.searched,
            }))
        }
        Some(pb::query_result::Outcome::Failure(f)) => Ok(Err(failure_from_wire(&f))),
        None => Err(WireError::Missing("search result")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abis_engine::store::synth::synthetic_record;
    use proptest::prelude::*;

    fn probe() -> Probe {
        let mut p = Probe::from_record(&synthetic_record("1", 3, 4, 1, 16)).unwrap();
        // Directions off the native encoding's grid must survive exactly.
        p.fingers[0].1.minutiae[0].direction = 1.234_567_9;
        p
    }

    #[test]
    fn probes_cross_the_wire_exactly() {
        let p = probe();
        let back = probe_from_wire("probe", probe_to_wire(&p)).unwrap();
        assert_eq!(back.fingers, p.fingers);
        assert_eq!(back.faces, p.faces);
    }

    #[test]
    fn queries_are_cut_to_their_shard() {
        let wire = probe_to_wire(&probe());
        let ids: Vec<String> = (0..40)
            .map(|i| format!("{}", 100_000_000_000u64 + i))
            .collect();
        let options = IdentifyOptions {
            max_results: 5,
            target_fpir: 1e-3,
            exclude: Some(ids[0].clone()),
            only: Some(ids.iter().cloned().collect()),
        };
        let mut seen = 0;
        for shard in 0..4 {
            let Some(q) = query_to_wire(&wire, &options, shard, 4) else {
                continue;
            };
            assert!(q.only.iter().all(|id| shard_of(id, 4) == shard));
            assert_eq!(q.exclude.is_empty(), shard_of(&ids[0], 4) != shard);
            seen += q.only.len();
            let (_, o) = query_from_wire("q", q).unwrap();
            assert_eq!(o.max_results, 5);
            assert!(o.only.is_some());
        }
        assert_eq!(seen, ids.len());
        let all = IdentifyOptions::default();
        let q = query_to_wire(&wire, &all, 2, 4).unwrap();
        assert!(!q.restrict);
        assert!(query_from_wire("q", q).unwrap().1.only.is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        let mut w = probe_to_wire(&probe());
        w.fingers[1].position = 11;
        let e = probe_from_wire("probe", w).unwrap_err();
        assert!(e.to_string().contains("probe.fingers[1].position"), "{e}");
        let mut w = probe_to_wire(&probe());
        w.fingers[0].minutiae.pop();
        assert!(probe_from_wire("probe", w).is_err());
        let mut w = probe_to_wire(&probe());
        w.fingers[0].minutiae[4..8].copy_from_slice(&f32::NAN.to_bits().to_le_bytes());
        assert!(probe_from_wire("probe", w).is_err());
        let mut w = probe_to_wire(&probe());
        w.faces[0].values[3] = f32::INFINITY;
        assert!(probe_from_wire("probe", w).is_err());
        let q = pb::Query {
            probe: Some(probe_to_wire(&probe())),
            max_results: 0,
            target_fpir: 1e-3,
            ..Default::default()
        };
        assert!(query_from_wire("q", q.clone()).is_err());
        let q = pb::Query {
            max_results: 3,
            target_fpir: 1.5,
            ..q
        };
        assert!(query_from_wire("q", q).is_err());
        let c = pb::Candidate {
            reference_id: "bad id with spaces".into(),
            score: 1.0,
            ..Default::default()
        };
        assert!(candidate_from_wire("c", c).is_err());
        assert!(check_node_name("replica-a").is_ok());
        assert!(check_node_name("a b").is_err());
        assert!(check_node_name("").is_err());
    }

    proptest! {
        #[test]
        fn hostile_requests_and_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Ok(req) = decode_request(&bytes) {
                if let Some(pb::shard_request::Body::Search(s)) = req.body {
                    for q in s.queries {
                        let _ = query_from_wire("q", q);
                    }
                }
            }
            if let Ok(reply) = decode_reply(&bytes) {
                if let Some(pb::shard_reply::Body::Search(s)) = reply.body {
                    for r in s.results {
                        if let Some(pb::query_result::Outcome::Found(f)) = r.outcome {
                            for c in f.candidates {
                                let _ = candidate_from_wire("c", c);
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn mutated_probes_are_checked_not_trusted(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = probe_to_wire(&probe()).encode_to_vec();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            if let Ok(p) = pb::Probe::decode(&bytes[..]) {
                if let Ok(p) = probe_from_wire("p", p) {
                    for (_, t) in &p.fingers {
                        prop_assert!(t.validate().is_ok());
                    }
                    prop_assert!(p.faces.iter().flatten().all(|v| v.is_finite()));
                }
            }
        }
    }
}
