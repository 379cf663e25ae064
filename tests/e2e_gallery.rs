//! End-to-end: a real `abis serve` process and a real tonic client enroll people from
//! ../shared/data, search, verify, delete, restart — the MOSIP ABIS contract as a caller sees it.

mod support;

use std::path::Path;

use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{
    identify_request, sample, verify_request, Decision, DeleteRequest, GetRequest, IdentifyRequest,
    InsertRequest, Modality, ReferenceCountRequest, Sample, VerifyRequest,
};
use support::Server;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Data {
    fvc: std::path::PathBuf,
    att: std::path::PathBuf,
    faces: bool,
}

impl Data {
    /// Finger `f` (101..110) impression `i` of FVC2002 DB1_B, at ISO position `pos`.
    fn finger(&self, f: u32, i: u32, pos: u32) -> Sample {
        Sample {
            modality: Modality::Finger as i32,
            finger_position: pos,
            ppi: 500.0,
            data: Some(sample::Data::Image(read(
                &self.fvc.join(format!("{f}_{i}.tif")),
            ))),
        }
    }

    /// Face `n` of ATT subject `s` (when the face models are installed).
    fn face(&self, s: u32, n: u32) -> Option<Sample> {
        self.faces.then(|| Sample {
            modality: Modality::Face as i32,
            finger_position: 0,
            ppi: 0.0,
            data: Some(sample::Data::Image(read(
                &self.att.join(format!("s{s}/{n}.pgm")),
            ))),
        })
    }

    /// A person: two fingers (right thumb and index) and a face.
    fn person(&self, fingers: (u32, u32), impression: u32, face: (u32, u32)) -> Vec<Sample> {
        let mut v = vec![
            self.finger(fingers.0, impression, 1),
            self.finger(fingers.1, impression, 2),
        ];
        v.extend(self.face(face.0, face.1));
        v
    }
}

fn mosip_code(status: &tonic::Status) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|i| i.metadata.get("failureReason").cloned())
}

async fn identify(client: &mut AbisClient<Channel>, samples: Vec<Sample>) -> Vec<(String, f64)> {
    let r = support::identify_samples(client, samples).await;
    eprintln!(
        "identify: threshold {} over {} records, {} candidates",
        r.threshold,
        r.gallery_size,
        r.candidates.len()
    );
    r.candidates
        .into_iter()
        .map(|c| (c.reference_id, c.score))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_search_verify_delete_and_restart() {
    if !support::models_ready() {
        return;
    }
    let Some(shared) = support::shared_data() else {
        return;
    };
    let data = Data {
        fvc: shared.join("fingerprint/FVC2002_DB1_B"),
        att: shared.join("face/ATT_ORL"),
        faces: support::face_models_ready(),
    };
    let server = Server::start();
    let mut client = support::connect(&server).await;

    // Four people: fingers (101,102), (103,104), (105,106), (107,108); faces s1..s4.
    let people = [
        ("100000000001", (101, 102), 1),
        ("100000000002", (103, 104), 2),
        ("100000000003", (105, 106), 3),
        ("100000000004", (107, 108), 4),
    ];
    for (id, fingers, face) in people {
        let r = client
            .insert(InsertRequest {
                reference_id: id.into(),
                samples: data.person(fingers, 1, (face, 1)),
                metadata: Default::default(),
            })
            .await
            .expect("insert")
            .into_inner();
        assert!(!r.already_present);
    }
    assert_eq!(
        client
            .reference_count(ReferenceCountRequest {})
            .await
            .unwrap()
            .into_inner()
            .count,
        4
    );

    // Another impression of person 1 finds person 1 first.
    let found = identify(&mut client, data.person((101, 102), 3, (1, 5))).await;
    assert_eq!(
        found.first().map(|c| c.0.as_str()),
        Some("100000000001"),
        "{found:?}"
    );
    // Fingers alone, and the face alone, each find the person too.
    let by_fingers = identify(
        &mut client,
        vec![data.finger(101, 3, 1), data.finger(102, 3, 2)],
    )
    .await;
    assert_eq!(
        by_fingers.first().map(|c| c.0.as_str()),
        Some("100000000001"),
        "{by_fingers:?}"
    );
    if let Some(face) = data.face(1, 7) {
        let by_face = identify(&mut client, vec![face]).await;
        assert_eq!(
            by_face.first().map(|c| c.0.as_str()),
            Some("100000000001"),
            "{by_face:?}"
        );
    }
    // A stranger (fingers 109, 110 and face s40 were never enrolled) gets no candidate.
    let stranger = identify(&mut client, data.person((109, 110), 2, (40, 1))).await;
    assert!(stranger.is_empty(), "stranger matched {stranger:?}");
    // Searching with a stored record never returns that record itself.
    let own = client
        .identify(IdentifyRequest {
            probe: Some(identify_request::Probe::ReferenceId("100000000002".into())),
            gallery_reference_ids: vec![],
            max_results: 5,
            target_fpir: 30,
            open_case: false,
        })
        .await
        .expect("identify by id")
        .into_inner();
    assert!(
        own.candidates
            .iter()
            .all(|c| c.reference_id != "100000000002"),
        "{:?}",
        own.candidates
    );
    assert_eq!(own.gallery_size, 3);

    // 1:1 verification against a stored record.
    let verify = |id: &str, samples: Vec<Sample>| VerifyRequest {
        face_choice: 0,
        probe: samples,
        reference: Some(verify_request::Reference::ReferenceId(id.into())),
        target_fmr: 1e-4,
    };
    let same = client
        .verify(verify("100000000003", vec![data.finger(105, 2, 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.decision, Decision::Matched as i32, "{same:?}");
    let other = client
        .verify(verify("100000000003", vec![data.finger(101, 5, 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.decision, Decision::NotMatched as i32, "{other:?}");

    // Insert is idempotent; different content under the same id is ALREADY_EXISTS (MOSIP 10).
    let again = client
        .insert(InsertRequest {
            reference_id: "100000000004".into(),
            samples: data.person((107, 108), 1, (4, 1)),
            metadata: Default::default(),
        })
        .await
        .expect("retried insert succeeds")
        .into_inner();
    assert!(again.already_present);
    let conflict = client
        .insert(InsertRequest {
            reference_id: "100000000004".into(),
            samples: vec![data.finger(109, 1, 1)],
            metadata: Default::default(),
        })
        .await
        .expect_err("conflicting insert");
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert_eq!(mosip_code(&conflict).as_deref(), Some("10"));

    // Get reports what is enrolled, never the templates unless asked.
    let got = client
        .get(GetRequest {
            reference_id: "100000000001".into(),
            include_templates: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.fingers.len(), 2);
    assert!(got
        .fingers
        .iter()
        .all(|f| f.impressions == 1 && f.templates.is_empty()));
    assert_eq!(got.faces, u32::from(data.faces));

    // Delete: a later search no longer returns the record; deleting again is NOT_FOUND (12).
    client
        .delete(DeleteRequest {
            reference_id: "100000000001".into(),
        })
        .await
        .expect("delete");
    let after = identify(&mut client, data.person((101, 102), 3, (1, 5))).await;
    assert!(after.iter().all(|c| c.0 != "100000000001"), "{after:?}");
    let gone = client
        .delete(DeleteRequest {
            reference_id: "100000000001".into(),
        })
        .await
        .expect_err("second delete");
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(mosip_code(&gone).as_deref(), Some("12"));
    let unknown = client
        .identify(IdentifyRequest {
            probe: Some(identify_request::Probe::ReferenceId("100000000001".into())),
            gallery_reference_ids: vec![],
            max_results: 5,
            target_fpir: 30,
            open_case: false,
        })
        .await
        .expect_err("identify by deleted id");
    assert_eq!(unknown.code(), Code::NotFound);

    // Bad requests get INVALID_ARGUMENT naming the field, and change nothing.
    let bad: Vec<(InsertRequest, &str, &str)> = vec![
        (
            InsertRequest {
                reference_id: "".into(),
                samples: vec![data.finger(101, 1, 1)],
                metadata: Default::default(),
            },
            "reference_id",
            "5",
        ),
        (
            InsertRequest {
                reference_id: "has space".into(),
                samples: vec![data.finger(101, 1, 1)],
                metadata: Default::default(),
            },
            "reference_id",
            "4",
        ),
        (
            InsertRequest {
                reference_id: "100000000009".into(),
                samples: vec![],
                metadata: Default::default(),
            },
            "samples",
            "11",
        ),
        (
            InsertRequest {
                reference_id: "100000000009".into(),
                samples: vec![Sample {
                    data: Some(sample::Data::Template(b"FMR\0 20\0garbage".to_vec())),
                    ..data.finger(101, 1, 1)
                }],
                metadata: Default::default(),
            },
            "samples[0].template",
            "16",
        ),
    ];
    for (req, field, code) in bad {
        let e = client.insert(req).await.expect_err("bad insert refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
        assert_eq!(mosip_code(&e).as_deref(), Some(code), "{field}: {e:?}");
    }
    let e = client
        .identify(IdentifyRequest {
            probe: None,
            gallery_reference_ids: vec![],
            max_results: 5,
            target_fpir: 30,
            open_case: false,
        })
        .await
        .expect_err("no probe");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = client
        .verify(VerifyRequest {
            face_choice: 0,
            target_fmr: 2.0,
            ..verify("100000000002", vec![data.finger(103, 2, 1)])
        })
        .await
        .expect_err("bad fmr");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        client
            .reference_count(ReferenceCountRequest {})
            .await
            .unwrap()
            .into_inner()
            .count,
        3
    );

    // Restart on the same data: every acknowledged record is there and searchable.
    let (status, dir) = server.stop_keep_data();
    assert!(status.success(), "{status:?}");
    let server = Server::start_in(dir);
    let mut client = support::connect(&server).await;
    assert_eq!(
        client
            .reference_count(ReferenceCountRequest {})
            .await
            .unwrap()
            .into_inner()
            .count,
        3
    );
    let found = identify(
        &mut client,
        vec![data.finger(103, 6, 1), data.finger(104, 6, 2)],
    )
    .await;
    assert_eq!(
        found.first().map(|c| c.0.as_str()),
        Some("100000000002"),
        "{found:?}"
    );
    assert!(server.stop().success());
}
