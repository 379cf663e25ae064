//! `abis client cases list|get|decide`: adjudication cases from a shell (role `adjudicator`).
//! `get` prints the case's scores and how many minutiae each finger mates, not the minutiae
//! themselves (the examiner's page draws them).

use abis_proto::v1::{
    AdjudicationCase, CaseDecision, CaseState, DecideCaseRequest, GetCaseRequest, ListCasesRequest,
};
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::{CaseClient, ClientError};

#[derive(Subcommand, Debug)]
pub enum CaseCommand {
    /// Cases, oldest first, one page.
    List {
        #[arg(long, value_enum, default_value_t = StateArg::Open)]
        state: StateArg,
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// `next_page_token` of the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// One case: candidates, scores per finger, mated minutiae counts, the verdict.
    Get { case_id: String },
    /// Record your decision (the API key's name is the examiner).
    Decide {
        case_id: String,
        #[arg(value_enum)]
        decision: DecisionArg,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StateArg {
    Open,
    Decided,
    All,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DecisionArg {
    Duplicate,
    Distinct,
    Inconclusive,
}

fn case_json(c: &AdjudicationCase) -> Value {
    let state = CaseState::try_from(c.state).map_or("UNKNOWN", |s| s.as_str_name());
    json!({
        "case_id": c.case_id,
        "state": state,
        "opened_at": c.opened_at,
        "probe_reference_id": c.probe_reference_id,
        "threshold": c.threshold,
        "candidates": c.candidates.iter().map(|k| json!({
            "reference_id": k.reference_id,
            "score": k.score,
            "fingers": k.fingers.iter().map(|f| json!({
                "position": f.position, "score": f.score, "mated_minutiae": f.pairs.len(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "verdict": c.verdict.as_ref().map(|v| json!({
            "decision": v.decision().as_str_name(),
            "examiner": v.examiner,
            "decided_at": v.decided_at,
            "comment": v.comment,
        })),
    })
}

pub async fn execute(mut client: CaseClient, command: CaseCommand) -> Result<Value, ClientError> {
    Ok(match command {
        CaseCommand::List {
            state,
            page_size,
            page_token,
        } => {
            let state = match state {
                StateArg::Open => CaseState::Open,
                StateArg::Decided => CaseState::Decided,
                StateArg::All => CaseState::Unspecified,
            };
            let req = ListCasesRequest {
                state: state as i32,
                page_size,
                page_token,
            };
            let r = client.list_cases(req).await?.into_inner();
            let cases: Vec<Value> = r
                .cases
                .iter()
                .map(|c| {
                    json!({"case_id": c.case_id, "opened_at": c.opened_at,
                    "candidates": c.candidates, "best_score": c.best_score})
                })
                .collect();
            json!({"cases": cases, "next_page_token": r.next_page_token})
        }
        CaseCommand::Get { case_id } => case_json(
            &client
                .get_case(GetCaseRequest { case_id })
                .await?
                .into_inner(),
        ),
        CaseCommand::Decide {
            case_id,
            decision,
            comment,
        } => {
            let decision = match decision {
                DecisionArg::Duplicate => CaseDecision::Duplicate,
                DecisionArg::Distinct => CaseDecision::Distinct,
                DecisionArg::Inconclusive => CaseDecision::Inconclusive,
            };
            let req = DecideCaseRequest {
                case_id,
                decision: decision as i32,
                comment,
            };
            case_json(&client.decide_case(req).await?.into_inner())
        }
    })
}
