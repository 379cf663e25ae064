//! `abis.v1.Adjudication` over gRPC: the case desk ([`Cases`]) behind the auth layer's
//! `adjudicator` check; the caller's key name is the examiner.

use std::sync::Arc;

use abis_proto::v1::adjudication_server::Adjudication;
use abis_proto::v1::{
    AdjudicationCase, CaseDecision, CaseState, CaseSummary, DecideCaseRequest, GetCaseRequest,
    ListCasesRequest, ListCasesResponse,
};
use tonic::{Request, Response, Status};

use super::cases::{case_refs, Cases};
use crate::auth;

/// Default and largest `page_size`.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

pub struct AdjudicationService {
    cases: Arc<Cases>,
}

impl AdjudicationService {
    pub fn new(cases: Arc<Cases>) -> Self {
        AdjudicationService { cases }
    }
}

/// `next_page_token` is the last case's `opened_at` and id: stable while cases are added.
fn page_token(case: &AdjudicationCase) -> String {
    format!("{} {}", case.opened_at, case.case_id)
}

fn parse_token(token: &str) -> Result<Option<(&str, &str)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .split_once(' ')
        .map(Some)
        .ok_or_else(|| Status::invalid_argument("page_token: not a token this server issued"))
}

pub fn summary(case: &AdjudicationCase) -> CaseSummary {
    CaseSummary {
        case_id: case.case_id.clone(),
        state: case.state,
        opened_at: case.opened_at.clone(),
        candidates: case.candidates.len() as u32,
        best_score: case.candidates.iter().map(|c| c.score).fold(0.0, f64::max),
        decision: case.verdict.as_ref().map_or(0, |v| v.decision),
    }
}

#[tonic::async_trait]
impl Adjudication for AdjudicationService {
    async fn list_cases(
        &self,
        request: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let req = request.into_inner();
        let limit = match req.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let state = match req.state() {
            CaseState::Unspecified => None,
            s => Some(s),
        };
        let listed = parse_token(&req.page_token).map(|after| self.cases.list(state, after, limit));
        let code = listed
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        let count = listed.as_ref().map_or(0, |(c, _)| c.len());
        self.cases
            .audit_read(&caller, "ListCases", vec![], format!("cases:{count}"), code)
            .await?;
        let (cases, more) = listed?;
        Ok(Response::new(ListCasesResponse {
            next_page_token: match (more, cases.last()) {
                (true, Some(last)) => page_token(last),
                _ => String::new(),
            },
            cases: cases.iter().map(summary).collect(),
        }))
    }

    async fn get_case(
        &self,
        request: Request<GetCaseRequest>,
    ) -> Result<Response<AdjudicationCase>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let id = request.into_inner().case_id;
        let found = self.cases.get(&id);
        let (refs, code) = match &found {
            Ok(case) => (case_refs(case), tonic::Code::Ok),
            Err(s) => (vec![], s.code()),
        };
        self.cases
            .audit_read(&caller, "GetCase", refs, format!("case:{id}"), code)
            .await?;
        found.map(Response::new)
    }

    async fn decide_case(
        &self,
        request: Request<DecideCaseRequest>,
    ) -> Result<Response<AdjudicationCase>, Status> {
        let caller = auth::caller(&request)?.name.clone();
        let req = request.into_inner();
        let decision = CaseDecision::try_from(req.decision).unwrap_or(CaseDecision::Unspecified);
        let case = self
            .cases
            .decide(&caller, &req.case_id, decision, &req.comment)
            .await?;
        Ok(Response::new(case))
    }
}
