//! End-to-end: a gallery written straight into the store format (as `abis-bench gen` does) is
//! with its finger index files is served by `abis serve`, and Identify goes through the index
//! (codes keep 30 of 300 people, local structures 5 of those; prepared templates not kept) and
//! still finds every mate.

mod support;

use abis_engine::gallery::Gallery;
use abis_engine::store::synth::write_gallery;
use abis_engine::store::{FingerEntry, Record};
use abis_engine::synth::{person_seed, MasterFinger};
use abis_engine::template::{encode_native, FingerPosition};
use abis_proto::v1::{sample, Modality, ReferenceCountRequest, Sample};
use support::Server;

const PEOPLE: u64 = 300;

fn template(person: u64, position: u8, capture: u64) -> Vec<u8> {
    let t = MasterFinger::generate(person_seed(21, person), position).impression(capture);
    encode_native(&t).expect("encode")
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

    let probe = |person: u64| -> Vec<Sample> {
        [2u8, 7]
            .iter()
            .map(|&pos| Sample {
                modality: Modality::Finger as i32,
                finger_position: u32::from(pos),
                ppi: 500.0,
                data: Some(sample::Data::Template(template(person, pos, 1))),
            })
            .collect()
    };
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
