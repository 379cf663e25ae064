//! `VerifyDocument`, the bank counter: the live face against the portrait of a chip ID card or
//! passport (EF.DG2), and passive authentication of the chip's EF.SOD against the trust store of
//! `[document] trust_store` (see `abis_icao`). Stores nothing; the audit entry holds the
//! decision only, never a face, a data group or a certificate.

use std::sync::Arc;
use std::time::SystemTime;

use abis_engine::face::FaceChoice;
use abis_icao::{authenticate, parse_dg2, Check, PassiveAuthentication, Sod, TrustStore};
use abis_proto::v1::{
    sample, CheckResult, Decision, Modality, Sample, VerifyDocumentRequest, VerifyDocumentResponse,
};
use tonic::{Request, Response, Status};

use super::samples::face_choice;
use super::{decision, status, target_fmr, AbisService};
use crate::auth;

/// Data groups are numbered 1 to 16 (ICAO 9303 part 10).
const MAX_DATA_GROUP: u32 = 16;

impl AbisService {
    /// Passive authentication against `store` (`None`: every document fails the chain check).
    pub fn with_trust_store(mut self, store: Option<Arc<TrustStore>>) -> Self {
        self.trust_store = store;
        self
    }

    /// The `VerifyDocument` RPC, audited like `Verify`.
    pub(super) async fn verify_document_rpc(
        &self,
        request: Request<VerifyDocumentRequest>,
    ) -> Result<Response<VerifyDocumentResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let result = self.job(self.verify_document(request.into_inner())).await;
        self.audited(caller, "VerifyDocument", vec![], result, |r, _| {
            match (
                r.passive_authentication,
                r.decision == Decision::Matched as i32,
            ) {
                (true, true) => "match",
                (true, false) => "no_match",
                (false, _) => "document_not_authentic",
            }
            .into()
        })
        .await
        .map(Response::new)
    }

    async fn verify_document(
        &self,
        req: VerifyDocumentRequest,
    ) -> Result<VerifyDocumentResponse, Status> {
        let target_fmr = target_fmr(req.target_fmr)?;
        let choice = face_choice("face_choice", req.face_choice)?;
        check_live(&req.live)?;
        let (portrait, portrait_format) = portrait(&req.dg2)?;
        let sod = Sod::parse(&req.sod).map_err(|e| status::invalid("sod", e))?;
        let groups = data_groups(&req)?;
        let trust = self.trust_store.clone().unwrap_or_default();
        let authentication = authenticate(&sod, &groups, &trust, SystemTime::now());
        let live = req.live;
        let (probe, reference) = tokio::try_join!(
            self.extract(move |e| e.probe_with("live", live, choice)),
            self.extract(move |e| e.probe_with("dg2", vec![portrait], FaceChoice::Largest)),
        )?;
        let verification = self.backend.verify_samples(probe, reference).await?;
        let face_score = verification.face.as_ref().map_or(0.0, |m| m.score);
        let face_decision = match verification.face {
            Some(_) => decision(face_score, target_fmr),
            None => Decision::Error,
        };
        let passed = authentication.passed();
        let overall = if passed && face_decision == Decision::Matched {
            Decision::Matched
        } else {
            Decision::NotMatched
        };
        Ok(response(
            authentication,
            overall,
            face_decision,
            face_score,
            portrait_format,
        ))
    }
}

/// Live samples are face images.
fn check_live(live: &[Sample]) -> Result<(), Status> {
    super::samples::check_count("live", live.len())?;
    for (i, sample) in live.iter().enumerate() {
        if sample.modality != Modality::Face as i32 {
            return Err(status::invalid(
                &format!("live[{i}].modality"),
                "must be FACE",
            ));
        }
        if !matches!(sample.data, Some(sample::Data::Image(_))) {
            return Err(status::invalid(
                &format!("live[{i}]"),
                "a face image is required",
            ));
        }
    }
    Ok(())
}

/// The first portrait of DG2, as a face sample, and its declared format.
fn portrait(dg2: &[u8]) -> Result<(Sample, &'static str), Status> {
    if dg2.is_empty() {
        return Err(status::invalid("dg2", "EF.DG2 is required"));
    }
    let parsed = parse_dg2(dg2).map_err(|e| status::invalid("dg2", e))?;
    let image = parsed.first();
    let format = image.image_type.name();
    let sample = Sample {
        modality: Modality::Face as i32,
        data: Some(sample::Data::Image(image.data.to_vec())),
        ..Default::default()
    };
    Ok((sample, format))
}

/// DG2 and the other data groups given, each once.
fn data_groups(req: &VerifyDocumentRequest) -> Result<Vec<(u32, &[u8])>, Status> {
    let mut groups = vec![(2, req.dg2.as_slice())];
    for (i, group) in req.data_groups.iter().enumerate() {
        let field = format!("data_groups[{i}].number");
        if !(1..=MAX_DATA_GROUP).contains(&group.number) {
            return Err(status::invalid(&field, "must be 1..=16"));
        }
        if groups.iter().any(|(n, _)| *n == group.number) {
            return Err(status::invalid(
                &field,
                "data group given twice (DG2 goes in dg2)",
            ));
        }
        groups.push((group.number, group.content.as_slice()));
    }
    Ok(groups)
}

fn check(result: Check) -> Option<CheckResult> {
    Some(match result {
        Ok(reason) => CheckResult { ok: true, reason },
        Err(failure) => CheckResult {
            ok: false,
            reason: failure.to_string(),
        },
    })
}

fn response(
    authentication: PassiveAuthentication,
    overall: Decision,
    face_decision: Decision,
    face_score: f64,
    portrait_format: &str,
) -> VerifyDocumentResponse {
    VerifyDocumentResponse {
        decision: overall as i32,
        passive_authentication: authentication.passed(),
        signature: check(authentication.signature),
        chain: check(authentication.chain),
        revocation: check(authentication.revocation),
        hashes: check(authentication.hashes),
        face_decision: face_decision as i32,
        face_score,
        portrait_format: portrait_format.into(),
    }
}
