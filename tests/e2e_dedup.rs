//! End-to-end: N:N deduplication as a job of `abis serve`. A gallery with planted duplicates
//! (people enrolled again under other numbers) is deduplicated through gRPC; the server is
//! SIGKILLed while the job runs; after the restart the job resumes by itself and its report
//! equals an uninterrupted job's on the same records, planted groups included. Bad calls get
//! their codes: a second start while one runs, an unknown or malformed job id, cancelling a
//! finished job. The CLI (`abis client dedup`) reads the same report.

mod support;

use std::time::{Duration, Instant};

use abis_engine::gallery::Gallery;
use abis_engine::store::synth::write_gallery;
use abis_engine::store::{FingerEntry, Record};
use abis_engine::synth::{person_seed, MasterFinger};
use abis_engine::template::{encode_native, FingerPosition};
use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{
    CancelDeduplicationRequest, DeduplicationState, DeduplicationStatus, DuplicateGroup,
    GetDeduplicationRequest, ListDuplicatesRequest, StartDeduplicationRequest,
};
use support::Server;
use tonic::transport::Channel;

const PEOPLE: u64 = 800;
const POSITIONS: [u8; 4] = [1, 2, 6, 7];

fn id(n: u64) -> String {
    format!("{}", 600_000_000_000 + n)
}

fn record(person: u64, capture: u64, number: u64) -> Record {
    Record {
        reference_id: id(number),
        fingers: POSITIONS
            .iter()
            .map(|&pos| {
                let t = MasterFinger::generate(person_seed(33, person), pos).impression(capture);
                FingerEntry {
                    position: FingerPosition::new(pos).expect("position"),
                    template: encode_native(&t).expect("encode"),
                }
            })
            .collect(),
        ..Record::default()
    }
}

/// (person, capture, number) of the planted duplicates: person 10 three times in all.
const PLANTED: [(u64, u64, u64); 4] = [
    (10, 2, 5_000),
    (10, 3, 5_001),
    (777, 2, 5_002),
    (799, 2, 5_003),
];

async fn status(client: &mut AbisClient<Channel>, job: &str) -> DeduplicationStatus {
    client
        .get_deduplication(GetDeduplicationRequest { job_id: job.into() })
        .await
        .expect("status")
        .into_inner()
}

async fn wait_stopped(client: &mut AbisClient<Channel>, job: &str) -> DeduplicationStatus {
    let started = Instant::now();
    loop {
        let s = status(client, job).await;
        if s.state != DeduplicationState::Running as i32 {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "job never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn groups(client: &mut AbisClient<Channel>, job: &str) -> Vec<DuplicateGroup> {
    let mut stream = client
        .list_duplicates(ListDuplicatesRequest { job_id: job.into() })
        .await
        .expect("list")
        .into_inner();
    let mut out = Vec::new();
    while let Some(g) = stream.message().await.expect("group") {
        out.push(g);
    }
    out
}

async fn start(client: &mut AbisClient<Channel>) -> DeduplicationStatus {
    client
        .start_deduplication(StartDeduplicationRequest {
            expected_false_pairs: 1.0,
        })
        .await
        .expect("start")
        .into_inner()
}

/// Every adjudication case of the server, whole.
async fn dedup_cases(server: &Server) -> Vec<abis_proto::v1::AdjudicationCase> {
    use abis_proto::v1::adjudication_client::AdjudicationClient;
    use abis_proto::v1::{GetCaseRequest, ListCasesRequest};
    let channel = tonic::transport::Endpoint::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut adj = AdjudicationClient::new(channel).max_decoding_message_size(64 << 20);
    let list = ListCasesRequest {
        page_size: 500,
        ..Default::default()
    };
    let listed = adj.list_cases(list).await.expect("list cases").into_inner();
    assert!(listed.next_page_token.is_empty());
    let mut out = Vec::new();
    for c in listed.cases {
        let req = GetCaseRequest { case_id: c.case_id };
        out.push(adj.get_case(req).await.expect("get case").into_inner());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_sigkill_and_reports_what_an_uninterrupted_job_reports() {
    if !support::models_ready() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let records: Vec<Record> = (0..PEOPLE)
        .map(|p| record(p, 0, p))
        .chain(PLANTED.iter().map(|&(p, c, n)| record(p, c, n)))
        .collect();
    let total = records.len() as u64;
    write_gallery(
        &data.path().join("gallery"),
        192,
        records,
        Some(Gallery::index_files()),
    )
    .expect("write gallery");
    let env: &[(&str, &std::ffi::OsStr)] = &[
        ("ABIS__DEDUP__BLOCK", "8".as_ref()),
        ("ABIS__DEDUP__THREADS", "1".as_ref()),
    ];
    let server = Server::start_with(data, env);
    support::wait_serving(&server, "", Duration::from_secs(600)).await;
    let mut client = support::connect(&server).await;

    let first = start(&mut client).await;
    assert_eq!(first.records_total, total);
    let job = first.job_id.clone();
    let again = client
        .start_deduplication(StartDeduplicationRequest::default())
        .await
        .expect_err("a second job while one runs");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(again.message().contains(&job), "{}", again.message());
    for (bad, code) in [
        ("0123456789abcdef", tonic::Code::NotFound),
        ("../../etc", tonic::Code::InvalidArgument),
    ] {
        let e = client
            .get_deduplication(GetDeduplicationRequest { job_id: bad.into() })
            .await
            .expect_err("bad job id");
        assert_eq!(e.code(), code, "{bad}");
    }

    // SIGKILL while the job runs, with some blocks done.
    loop {
        let s = status(&mut client, &job).await;
        assert_eq!(
            s.state,
            DeduplicationState::Running as i32,
            "finished before the kill"
        );
        if s.records_done >= 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let data = server.kill_keep_data();
    let server = Server::start_with(data, env);
    support::wait_serving(&server, "", Duration::from_secs(600)).await;
    let mut client = support::connect(&server).await;
    let resumed = wait_stopped(&mut client, &job).await;
    assert_eq!(
        resumed.state,
        DeduplicationState::Finished as i32,
        "{}",
        resumed.error
    );
    assert_eq!(resumed.records_done, total);
    let after_kill = groups(&mut client, &job).await;

    // The same gallery, a job that nobody interrupts.
    let second = start(&mut client).await.job_id;
    assert_ne!(second, job);
    assert_eq!(
        wait_stopped(&mut client, &second).await.state,
        DeduplicationState::Finished as i32
    );
    let uninterrupted = groups(&mut client, &second).await;
    assert_eq!(
        after_kill, uninterrupted,
        "a resumed job reported otherwise"
    );

    // Each group of each finished job opened one adjudication case (none twice for the job
    // resumed after SIGKILL): the group's first record is the probe, the others candidates.
    let cases = dedup_cases(&server).await;
    for (job_id, groups) in [(&job, &after_kill), (&second, &uninterrupted)] {
        let mut opened: Vec<Vec<String>> = cases
            .iter()
            .filter(|c| &c.dedup_job_id == job_id)
            .map(|c| {
                let mut ids = vec![c.probe_reference_id.clone()];
                ids.extend(c.candidates.iter().map(|k| k.reference_id.clone()));
                ids
            })
            .collect();
        opened.sort();
        let mut want: Vec<Vec<String>> = groups.iter().map(|g| g.reference_ids.clone()).collect();
        want.sort();
        assert_eq!(opened, want, "the cases of job {job_id}");
    }

    // The planted groups are there.
    let ids: Vec<Vec<String>> = after_kill.iter().map(|g| g.reference_ids.clone()).collect();
    for want in [
        vec![id(10), id(5_000), id(5_001)],
        vec![id(777), id(5_002)],
        vec![id(799), id(5_003)],
    ] {
        assert!(ids.contains(&want), "group {want:?} missing from {ids:?}");
    }
    assert!(after_kill
        .iter()
        .flat_map(|g| &g.pairs)
        .all(|p| p.score >= resumed.pair_threshold && p.reference_id_a < p.reference_id_b));

    // Cancelling: a finished job cannot be; a running one stops and says how far it got.
    let e = client
        .cancel_deduplication(CancelDeduplicationRequest {
            job_id: job.clone(),
        })
        .await
        .expect_err("cancel a finished job");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let third = start(&mut client).await.job_id;
    client
        .cancel_deduplication(CancelDeduplicationRequest {
            job_id: third.clone(),
        })
        .await
        .expect("cancel");
    let cancelled = wait_stopped(&mut client, &third).await;
    assert_eq!(cancelled.state, DeduplicationState::Cancelled as i32);
    assert!(cancelled.records_done < total);

    // The CLI reads the same report.
    let listed = support::abis_json(&[
        "client",
        "--addr",
        server.addr.as_str(),
        "dedup",
        "list",
        job.as_str(),
    ]);
    let cli_groups = listed["groups"].as_array().expect("groups");
    assert_eq!(cli_groups.len(), after_kill.len());
    assert_eq!(server.stop().code(), Some(0));
}
