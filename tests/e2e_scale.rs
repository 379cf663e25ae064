//! End-to-end: a gallery written straight into the store format with its finger index files
//! (as `abis-bench gen` does) is served by `abis serve`; Identify goes through the index (codes
//! keep 30 of 300 people, local structures 5 of those; prepared templates not kept) and still
//! finds every mate; after a SIGKILL the index files are opened, not rebuilt, and Identify and
//! IdentifyBatch answer as before.

mod support;

use abis_engine::gallery::Gallery;
use abis_engine::store::synth::write_gallery;
use abis_engine::store::{FingerEntry, Record};
use abis_engine::synth::{person_seed, MasterFinger};
use abis_engine::template::{encode_native, FingerPosition};
use std::time::Duration;

use abis_proto::v1::{
    identify_batch_result, identify_request, sample, IdentifyBatchRequest, IdentifyRequest,
    InsertRequest, Modality, ReferenceCountRequest, Sample, SampleList,
};
use support::Server;

const PEOPLE: u64 = 300;

fn template(person: u64, position: u8, capture: u64) -> Vec<u8> {
    let t = MasterFinger::generate(person_seed(21, person), position).impression(capture);
    encode_native(&t).expect("encode")
}

/// Capture 1 of a person's fingers at these positions, as Identify samples.
fn probe_samples(person: u64, positions: &[u8]) -> Vec<Sample> {
    positions
        .iter()
        .map(|&pos| Sample {
            modality: Modality::Finger as i32,
            finger_position: u32::from(pos),
            ppi: 500.0,
            data: Some(sample::Data::Template(template(person, pos, 1))),
        })
        .collect()
}

fn id(person: u64) -> String {
    format!("{}", 500_000_000_000 + person)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_through_the_indexes_on_a_written_gallery() {
    if !support::models_ready() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let records: Vec<Record> = (0..PEOPLE)
        .map(|p| Record {
            reference_id: id(p),
            fingers: [1u8, 2, 6, 7]
                .iter()
                .map(|&pos| FingerEntry {
                    position: FingerPosition::new(pos).expect("position"),
                    template: template(p, pos, 0),
                })
                .collect(),
            ..Record::default()
        })
        .collect();
    write_gallery(
        &data.path().join("gallery"),
        192,
        records,
        Some(Gallery::index_files()),
    )
    .expect("write gallery");

    let server = Server::start_with(
        data,
        &[
            ("ABIS__SEARCH__INDEX_ABOVE", "0".as_ref()),
            ("ABIS__SEARCH__CODE_SHORTLIST", "30".as_ref()),
            ("ABIS__SEARCH__SHORTLIST", "5".as_ref()),
            ("ABIS__SEARCH__INDEX_MIN_FINGERS", "2".as_ref()),
            ("ABIS__SEARCH__RETAIN_PREPARED", "false".as_ref()),
        ],
    );
    let mut client = support::connect(&server).await;
    let count = client
        .reference_count(ReferenceCountRequest {})
        .await
        .expect("count")
        .into_inner();
    assert_eq!(count.count, PEOPLE);

    let probe = |person: u64| probe_samples(person, &[2, 7]);
    for person in [0, 41, 177, 299] {
        let r = support::identify_samples(&mut client, probe(person)).await;
        assert_eq!(r.gallery_size, PEOPLE);
        let first = r.candidates.first().map(|c| c.reference_id.clone());
        assert_eq!(first, Some(id(person)), "person {person}");
    }
    let stranger = support::identify_samples(&mut client, probe(PEOPLE + 5)).await;
    assert!(stranger.candidates.is_empty());
    assert_eq!(server.stop().code(), Some(0));
}

/// Companion index files of the gallery with their modification times: equal before and after a
/// restart means the index was opened, not rebuilt.
fn index_files(data: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(data.join("gallery"))
        .expect("gallery dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let index =
                name.ends_with(".fcodes") || name.ends_with(".fforms") || name.ends_with(".fbands");
            index.then(|| {
                (
                    name,
                    e.metadata().and_then(|m| m.modified()).expect("mtime"),
                )
            })
        })
        .collect();
    files.sort();
    files
}

/// Reference ids and scores of the candidates, in order.
fn answer(r: &abis_proto::v1::IdentifyResponse) -> Vec<(String, u64)> {
    r.candidates
        .iter()
        .map(|c| (c.reference_id.clone(), c.score.to_bits()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_again_after_sigkill_with_the_index_opened_not_rebuilt() {
    const PEOPLE: u64 = 20_000;
    const ENROLLED_LIVE: u64 = 40;
    if !support::models_ready() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let fingers = [2u8, 7];
    let record = |p: u64| Record {
        reference_id: id(p),
        fingers: fingers
            .iter()
            .map(|&pos| FingerEntry {
                position: FingerPosition::new(pos).expect("position"),
                template: template(p, pos, 0),
            })
            .collect(),
        ..Record::default()
    };
    write_gallery(
        &data.path().join("gallery"),
        192,
        (0..PEOPLE).map(record).collect(),
        Some(Gallery::index_files()),
    )
    .expect("write gallery");
    let env: &[(&str, &std::ffi::OsStr)] = &[
        ("ABIS__SEARCH__INDEX_ABOVE", "0".as_ref()),
        ("ABIS__SEARCH__INDEX_MIN_FINGERS", "2".as_ref()),
        ("ABIS__SEARCH__CODE_SHORTLIST", "64".as_ref()),
        ("ABIS__SEARCH__SHORTLIST", "8".as_ref()),
        ("ABIS__SEARCH__RETAIN_PREPARED", "false".as_ref()),
    ];
    let probe = |person: u64| probe_samples(person, &fingers);
    let server = Server::start_with(data, env);
    let first_wait = support::wait_serving(&server, "", Duration::from_secs(600)).await;
    let mut client = support::connect(&server).await;
    // Records enrolled through the service live in the log until the next segment: a restart
    // replays them and indexes them again.
    for p in PEOPLE..PEOPLE + ENROLLED_LIVE {
        client
            .insert(InsertRequest {
                reference_id: id(p),
                samples: probe(p),
                metadata: Default::default(),
            })
            .await
            .expect("insert");
    }
    let people = [0, 7_777, PEOPLE - 1, PEOPLE + 3, PEOPLE + ENROLLED_LIVE - 1];
    let mut before = Vec::new();
    for &p in &people {
        let r = support::identify_samples(&mut client, probe(p)).await;
        assert_eq!(r.gallery_size, PEOPLE + ENROLLED_LIVE);
        assert_eq!(
            r.candidates.first().map(|c| c.reference_id.clone()),
            Some(id(p))
        );
        before.push(answer(&r));
    }
    let index_before = index_files(server.data_dir());
    assert!(!index_before.is_empty());

    let data = server.kill_keep_data();
    let started = std::time::Instant::now();
    let server = Server::start_with(data, env);
    support::wait_serving(&server, "", Duration::from_secs(600)).await;
    eprintln!(
        "{PEOPLE} people: SERVING {:.2} s after the first start, {:.2} s from process start \
         after a SIGKILL (debug build)",
        first_wait.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(
        index_files(server.data_dir()),
        index_before,
        "index rebuilt"
    );
    let mut client = support::connect(&server).await;
    for (&p, expected) in people.iter().zip(&before) {
        let r = support::identify_samples(&mut client, probe(p)).await;
        assert_eq!(r.gallery_size, PEOPLE + ENROLLED_LIVE);
        assert_eq!(&answer(&r), expected, "person {p}");
    }
    // IdentifyBatch through gRPC: one pass over the index, each answer the single one.
    let batch = client
        .identify_batch(IdentifyBatchRequest {
            requests: people
                .iter()
                .map(|&p| IdentifyRequest {
                    probe: Some(identify_request::Probe::Samples(SampleList {
                        samples: probe(p),
                    })),
                    gallery_reference_ids: vec![],
                    max_results: 5,
                    target_fpir: 30,
                    open_case: false,
                })
                .collect(),
        })
        .await
        .expect("identify batch")
        .into_inner();
    assert_eq!(batch.results.len(), people.len());
    for ((result, expected), &p) in batch.results.iter().zip(&before).zip(&people) {
        match &result.outcome {
            Some(identify_batch_result::Outcome::Response(r)) => {
                assert_eq!(&answer(r), expected, "batch, person {p}")
            }
            other => panic!("batch result for person {p}: {other:?}"),
        }
    }
    assert_eq!(server.stop().code(), Some(0));
}
