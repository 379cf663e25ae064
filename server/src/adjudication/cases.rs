//! The case desk: opening cases from identification hits, reading them, and recording an
//! examiner's decision — durably ([`CaseStore`]) and in the audit log — for the gRPC service and
//! the page alike, so both give the same answers and the same errors.

use std::sync::Arc;
use std::time::SystemTime;

use abis_engine::matcher::Matcher;
use abis_engine::template::{FingerPosition, FingerTemplate};
use abis_proto::v1::{
    AdjudicationCase, Candidate, CaseCandidate, CaseDecision, CaseState, CaseVerdict,
};
use tonic::Status;

use super::evidence;
use super::store::{CaseStore, CaseStoreError};
use crate::audit::{rfc3339_utc, AuditRecord, Auditor};

/// Longest decision comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// A candidate as the search returned it, with its stored fingers.
pub struct HitRecord {
    pub candidate: Candidate,
    pub fingers: Vec<(FingerPosition, FingerTemplate)>,
}

/// What a new case is made of.
pub struct Hit {
    /// The stored record searched with, if the probe was one.
    pub probe_reference_id: Option<String>,
    pub probe_fingers: Vec<(FingerPosition, FingerTemplate)>,
    pub threshold: f64,
    pub candidates: Vec<HitRecord>,
    /// The N:N job whose duplicate group this is (its probe is the group's first record).
    pub dedup_job_id: Option<String>,
}

pub struct Cases {
    store: CaseStore,
    auditor: Auditor,
    matcher: Matcher,
    /// Held across a decision's check, audit entry and write, so two examiners deciding the
    /// same case at once get one decision and one FAILED_PRECONDITION.
    deciding: tokio::sync::Mutex<()>,
}

impl From<CaseStoreError> for Status {
    fn from(e: CaseStoreError) -> Status {
        tracing::error!(error = %e, "case store");
        Status::unavailable("the case store cannot write")
    }
}

impl Cases {
    pub fn new(store: CaseStore, auditor: Auditor) -> Arc<Cases> {
        Arc::new(Cases {
            store,
            auditor,
            matcher: Matcher::new(),
            deciding: tokio::sync::Mutex::new(()),
        })
    }

    /// Builds and stores a case (matcher work: call it on the blocking pool); returns its id.
    /// A duplicate group's case has an id derived from its job and first record, so opening it
    /// again (a job resumed after a crash) finds the one already open.
    pub fn open(&self, hit: Hit) -> Result<String, Status> {
        let case_id = match &hit.dedup_job_id {
            Some(job) => group_case_id(job, hit.probe_reference_id.as_deref().unwrap_or("")),
            None => {
                let mut id = [0u8; 16];
                getrandom::fill(&mut id)
                    .map_err(|_| Status::unavailable("no randomness for a case id"))?;
                crate::hex::hex(&id)
            }
        };
        if self.store.get(&case_id).is_some() {
            return Ok(case_id);
        }
        let candidates = hit
            .candidates
            .into_iter()
            .map(|h| CaseCandidate {
                fingers: evidence::fingers(&self.matcher, &hit.probe_fingers, &h.fingers),
                reference_id: h.candidate.reference_id,
                score: h.candidate.score,
                modalities: h.candidate.modalities,
            })
            .collect();
        let case = AdjudicationCase {
            case_id: case_id.clone(),
            state: CaseState::Open as i32,
            opened_at: rfc3339_utc(SystemTime::now()),
            probe_reference_id: hit.probe_reference_id.unwrap_or_default(),
            threshold: hit.threshold,
            candidates,
            verdict: None,
            dedup_job_id: hit.dedup_job_id.unwrap_or_default(),
        };
        // Opened meanwhile by another call for the same group: that one stands.
        let _ = self.store.put(case, |old| match old {
            Some(_) => Err(()),
            None => Ok(()),
        })?;
        Ok(case_id)
    }

    /// One case; NOT_FOUND when there is none (and INVALID_ARGUMENT for what cannot be an id).
    pub fn get(&self, id: &str) -> Result<AdjudicationCase, Status> {
        check_id(id)?;
        self.store
            .get(id)
            .ok_or_else(|| Status::not_found(format!("case_id: no case {id}")))
    }

    /// A page of cases (see [`CaseStore::list`]).
    pub fn list(
        &self,
        state: Option<CaseState>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> (Vec<AdjudicationCase>, bool) {
        self.store.list(state, after, limit)
    }

    /// Records `examiner`'s decision: audited first (who, which case, what), then written. A
    /// decided case answers FAILED_PRECONDITION naming the decision; every outcome is audited.
    pub async fn decide(
        &self,
        examiner: &str,
        id: &str,
        decision: CaseDecision,
        comment: &str,
    ) -> Result<AdjudicationCase, Status> {
        let _one_at_a_time = self.deciding.lock().await;
        let checked = self.check_decision(id, decision, comment);
        let entry = |code: tonic::Code, refs: Vec<String>| {
            AuditRecord::new(examiner, "DecideCase")
                .refs(refs)
                .decision(format!("case:{id} {}", decision_name(decision)))
                .code(code)
        };
        let case = match checked {
            Ok(case) => case,
            Err(status) => {
                self.auditor.record(entry(status.code(), vec![])).await?;
                return Err(status);
            }
        };
        self.auditor
            .record(entry(tonic::Code::Ok, case_refs(&case)))
            .await?;
        let decided = AdjudicationCase {
            state: CaseState::Decided as i32,
            verdict: Some(CaseVerdict {
                decision: decision as i32,
                examiner: examiner.to_string(),
                decided_at: rfc3339_utc(SystemTime::now()),
                comment: comment.to_string(),
            }),
            ..case
        };
        let written = self.store.put(decided.clone(), |_| Ok::<(), Status>(()));
        if let Err(e) = written {
            let status = Status::from(e);
            self.auditor.record(entry(status.code(), vec![])).await?;
            return Err(status);
        }
        Ok(decided)
    }

    fn check_decision(
        &self,
        id: &str,
        decision: CaseDecision,
        comment: &str,
    ) -> Result<AdjudicationCase, Status> {
        if decision == CaseDecision::Unspecified {
            return Err(Status::invalid_argument(
                "decision: duplicate, distinct or inconclusive",
            ));
        }
        if comment.chars().count() > MAX_COMMENT_CHARS {
            return Err(Status::invalid_argument(format!(
                "comment: at most {MAX_COMMENT_CHARS} characters"
            )));
        }
        let case = self.get(id)?;
        if let Some(v) = &case.verdict {
            return Err(Status::failed_precondition(format!(
                "case {id} was already decided: {} by {} at {}",
                decision_name(v.decision()),
                v.examiner,
                v.decided_at
            )));
        }
        Ok(case)
    }

    /// Audits a read of cases by `caller` (`rpc` names the reader: GetCase, ListCases).
    pub async fn audit_read(
        &self,
        caller: &str,
        rpc: &str,
        refs: Vec<String>,
        what: String,
        code: tonic::Code,
    ) -> Result<(), Status> {
        let record = AuditRecord::new(caller, rpc)
            .refs(refs)
            .decision(what)
            .code(code);
        self.auditor.record(record).await?;
        Ok(())
    }
}

/// The reference ids a case touches (probe first), for its audit entries.
pub fn case_refs(case: &AdjudicationCase) -> Vec<String> {
    let probe = (!case.probe_reference_id.is_empty()).then(|| case.probe_reference_id.clone());
    probe
        .into_iter()
        .chain(case.candidates.iter().map(|c| c.reference_id.clone()))
        .collect()
}

pub fn decision_name(d: CaseDecision) -> &'static str {
    match d {
        CaseDecision::Unspecified => "unspecified",
        CaseDecision::Duplicate => "duplicate",
        CaseDecision::Distinct => "distinct",
        CaseDecision::Inconclusive => "inconclusive",
    }
}

/// The case id of job `job`'s duplicate group whose first record is `first`: opaque (a hash
/// with the job's random id), and the same every time.
fn group_case_id(job: &str, first: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"abis dedup case\0");
    h.update(job.as_bytes());
    h.update([0]);
    h.update(first.as_bytes());
    crate::hex::hex(&h.finalize()[..16])
}

/// Case ids are 32 lower-case hex digits; anything else is refused before any lookup.
fn check_id(id: &str) -> Result<(), Status> {
    let ok = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument("case_id: 32 hexadecimal digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditOptions;

    fn hit(job: Option<&str>) -> Hit {
        Hit {
            probe_reference_id: Some("rec-1".into()),
            probe_fingers: vec![],
            threshold: 97.0,
            candidates: vec![HitRecord {
                candidate: Candidate {
                    reference_id: "rec-2".into(),
                    score: 120.0,
                    modalities: vec![],
                },
                fingers: vec![],
            }],
            dedup_job_id: job.map(str::to_string),
        }
    }

    /// A job resumed after a crash opens its groups again: each group keeps one case.
    #[test]
    fn a_duplicate_group_opens_one_case_however_often_it_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = Auditor::open(&dir.path().join("audit"), AuditOptions::default()).unwrap();
        let cases = Cases::new(
            CaseStore::open(&dir.path().join("cases"), None).unwrap(),
            auditor,
        );
        let first = cases.open(hit(Some("00112233aabbccdd"))).unwrap();
        assert_eq!(cases.open(hit(Some("00112233aabbccdd"))).unwrap(), first);
        let other_job = cases.open(hit(Some("ffeeddccbbaa9988"))).unwrap();
        let search = cases.open(hit(None)).unwrap();
        assert!(first != other_job && first != search);
        let (all, _) = cases.list(None, None, 10);
        assert_eq!(all.len(), 3);
        let case = cases.get(&first).unwrap();
        assert_eq!(case.dedup_job_id, "00112233aabbccdd");
        assert_eq!(case.candidates[0].reference_id, "rec-2");
        check_id(&first).unwrap();
    }
}
