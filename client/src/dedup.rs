//! `abis client dedup start|status|list|cancel`: the server's N:N deduplication job (admin
//! role). `status --watch` draws the job's progress on stderr until it stops.

use std::io::Write;
use std::time::Duration;

use abis_proto::v1::{
    CancelDeduplicationRequest, DeduplicationState, DeduplicationStatus, GetDeduplicationRequest,
    ListDuplicatesRequest, StartDeduplicationRequest,
};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::{Client, ClientError};

#[derive(Subcommand, Debug)]
pub enum DedupCommand {
    /// Start a job over every record of the gallery.
    Start {
        /// False pairs the whole job may expect (sets the pair threshold).
        #[arg(long, default_value_t = 1.0)]
        expected_false_pairs: f64,
    },
    /// A job's state and progress.
    Status {
        job: String,
        /// Draw a progress bar on stderr until the job stops, then print its status.
        #[arg(long)]
        watch: bool,
    },
    /// The duplicate groups found so far (all of them once the job is finished).
    List { job: String },
    /// Stop a running job after its current block.
    Cancel { job: String },
}

fn state_name(s: i32) -> &'static str {
    DeduplicationState::try_from(s).map_or("UNKNOWN", |s| s.as_str_name())
}

fn status_json(s: &DeduplicationStatus) -> Value {
    json!({
        "job_id": s.job_id,
        "state": state_name(s.state),
        "records_total": s.records_total,
        "records_done": s.records_done,
        "pairs_found": s.pairs_found,
        "pair_threshold": s.pair_threshold,
        "elapsed_s": s.elapsed_s,
        "remaining_s": s.remaining_s,
        "error": s.error,
    })
}

/// One line of progress: `[#####-----]  50.0%  500/1000 records  3 pairs  12 s left`.
fn bar(s: &DeduplicationStatus) -> String {
    const WIDTH: usize = 30;
    let share = s.records_done as f64 / s.records_total.max(1) as f64;
    let filled = ((share * WIDTH as f64) as usize).min(WIDTH);
    format!(
        "[{}{}] {:5.1}%  {}/{} records  {} pairs  {:.0} s left",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        share * 100.0,
        s.records_done,
        s.records_total,
        s.pairs_found,
        s.remaining_s
    )
}

async fn watch(client: &mut Client, job: String) -> Result<DeduplicationStatus, ClientError> {
    loop {
        let s = client
            .get_deduplication(GetDeduplicationRequest {
                job_id: job.clone(),
            })
            .await?
            .into_inner();
        eprint!("\r{}", bar(&s));
        let _ = std::io::stderr().flush();
        if s.state != DeduplicationState::Running as i32 {
            eprintln!();
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn execute(mut client: Client, command: DedupCommand) -> Result<Value, ClientError> {
    Ok(match command {
        DedupCommand::Start {
            expected_false_pairs,
        } => {
            let r = client
                .start_deduplication(StartDeduplicationRequest {
                    expected_false_pairs,
                })
                .await?
                .into_inner();
            status_json(&r)
        }
        DedupCommand::Status { job, watch: true } => status_json(&watch(&mut client, job).await?),
        DedupCommand::Status { job, watch: false } => {
            let r = client
                .get_deduplication(GetDeduplicationRequest { job_id: job })
                .await?
                .into_inner();
            status_json(&r)
        }
        DedupCommand::Cancel { job } => {
            let r = client
                .cancel_deduplication(CancelDeduplicationRequest { job_id: job })
                .await?
                .into_inner();
            status_json(&r)
        }
        DedupCommand::List { job } => {
            let mut stream = client
                .list_duplicates(ListDuplicatesRequest { job_id: job })
                .await?
                .into_inner();
            let mut groups = Vec::new();
            while let Some(g) = stream.message().await? {
                groups.push(json!({
                    "reference_ids": g.reference_ids,
                    "pairs": g.pairs.iter().map(|p| json!({
                        "a": p.reference_id_a,
                        "b": p.reference_id_b,
                        "score": p.score,
                        "finger_score": p.finger_score,
                        "face_score": p.face_score,
                        "strong_positions": p.strong_positions,
                        "code_score": p.code_score,
                    })).collect::<Vec<_>>(),
                }));
            }
            json!({"groups": groups})
        }
    })
}
