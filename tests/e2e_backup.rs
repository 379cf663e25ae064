//! End-to-end: a backup of a running server's gallery through the `Backup` RPC while inserts go
//! on, checked with `abis store verify` and restored with `abis store restore` into a new data
//! directory that a second server serves; a server killed with SIGKILL mid-backup leaves either
//! a complete backup or one `verify` calls incomplete, and its own data intact.

mod support;

use abis_engine::synth::{person_seed, MasterFinger};
use abis_engine::template::encode_native;
use abis_proto::v1::{
    identify_request, sample, BackupRequest, GetRequest, IdentifyRequest, InsertRequest, Modality,
    ReferenceCountRequest, Sample, SampleList,
};
use support::Server;
use tonic::Code;

fn id(person: u64) -> String {
    format!("{}", 800_000_000_000 + person)
}

fn enrolment(person: u64) -> InsertRequest {
    InsertRequest {
        reference_id: id(person),
        samples: [1u8, 2, 6, 7]
            .iter()
            .map(|&p| Sample {
                modality: Modality::Finger as i32,
                finger_position: u32::from(p),
                ppi: 500.0,
                data: Some(sample::Data::Template(
                    encode_native(
                        &MasterFinger::generate(person_seed(43, person), p).impression(0),
                    )
                    .expect("encode"),
                )),
            })
            .collect(),
        ..Default::default()
    }
}

async fn insert_range(server_addr: String, people: std::ops::Range<u64>) -> Vec<u64> {
    let mut client = abis_proto::v1::abis_client::AbisClient::connect(server_addr)
        .await
        .expect("connect");
    let mut acknowledged = Vec::new();
    for p in people {
        if client.insert(enrolment(p)).await.is_ok() {
            acknowledged.push(p);
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_backup_restores_to_a_server_that_holds_what_was_acknowledged_before_it() {
    let server = Server::start();
    let mut client = support::connect(&server).await;
    let before = insert_range(server.addr.clone(), 0..40).await;
    assert_eq!(before.len(), 40);
    // A hit opens an adjudication case (`<data>/cases`): the backup carries it.
    let found = client
        .identify(IdentifyRequest {
            probe: Some(identify_request::Probe::Samples(SampleList {
                samples: enrolment(3).samples,
            })),
            max_results: 5,
            target_fpir: 30,
            open_case: true,
            ..Default::default()
        })
        .await
        .expect("identify")
        .into_inner();
    assert!(!found.case_id.is_empty(), "{found:?}");
    let case_files = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("cases"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let cases = case_files(server.data_dir());
    assert!(!cases.is_empty());
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("backup");

    // Bad destinations are refused and change nothing.
    let relative = client
        .backup(BackupRequest {
            destination: "backup".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(relative.code(), Code::InvalidArgument, "{relative:?}");
    let existing = client
        .backup(BackupRequest {
            destination: out.path().display().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(existing.code(), Code::FailedPrecondition, "{existing:?}");

    // The backup while another client inserts.
    let during = tokio::spawn(insert_range(server.addr.clone(), 40..80));
    let r = client
        .backup(BackupRequest {
            destination: dest.display().to_string(),
        })
        .await
        .expect("backup")
        .into_inner();
    let during = during.await.unwrap();
    assert_eq!(during.len(), 40);
    assert!(r.files >= 2 && r.bytes > 0, "{r:?}");

    let verified = support::abis_json(&["store".as_ref(), "verify".as_ref(), dest.as_os_str()]);
    assert_eq!(verified["status"], "ok");
    assert_eq!(verified["files"], r.files);
    let restored_data = tempfile::tempdir().unwrap();
    let restored = support::abis_json(&[
        "store".as_ref(),
        "restore".as_ref(),
        "--from".as_ref(),
        dest.as_os_str(),
        "--data".as_ref(),
        restored_data.path().as_os_str(),
    ]);
    assert_eq!(restored["status"], "restored");
    assert_eq!(
        case_files(restored_data.path()),
        cases,
        "the cases restored"
    );

    let copy = Server::start_in(restored_data);
    let mut copy_client = support::connect(&copy).await;
    let n = copy_client
        .reference_count(ReferenceCountRequest {})
        .await
        .unwrap()
        .into_inner()
        .count;
    // Everything acknowledged before the backup began, some of what came during it, nothing else.
    assert!((40..=80).contains(&n), "{n} records restored");
    for p in &before {
        let got = copy_client
            .get(GetRequest {
                reference_id: id(*p),
                include_templates: true,
            })
            .await
            .expect("a record acknowledged before the backup is in it")
            .into_inner();
        let original = client
            .get(GetRequest {
                reference_id: id(*p),
                include_templates: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, original);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_backup_keeps_its_data_and_leaves_no_false_backup() {
    let server = Server::start();
    let acknowledged = insert_range(server.addr.clone(), 0..60).await;
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("backup");
    let mut client = support::connect(&server).await;
    let call = tokio::spawn({
        let dest = dest.display().to_string();
        async move { client.backup(BackupRequest { destination: dest }).await }
    });
    // Kill as soon as the backup directory appears (or after a short wait).
    for _ in 0..200 {
        if dest.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let data = server.kill_keep_data();
    let _ = call.await;

    // The backup is either complete and intact, or incomplete; never a damaged one taken as good.
    let out = support::abis()
        .args(["store", "verify"])
        .arg(&dest)
        .output()
        .expect("run abis");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("incomplete") || !dest.exists(),
        "verify after SIGKILL: {stderr}"
    );
    // The server's own data: every acknowledged record.
    let again = Server::start_in(data);
    let mut c = support::connect(&again).await;
    let n = c
        .reference_count(ReferenceCountRequest {})
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(n, acknowledged.len() as u64);
}
