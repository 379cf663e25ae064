//! End-to-end: API keys made with `abis keys add`, a real server that enforces roles per RPC,
//! and the audit log it writes, checked with `abis audit verify` (and caught when tampered).

mod support;

use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{
    identify_request, sample, verify_request, DeleteRequest, IdentifyRequest, InsertRequest,
    Modality, ReferenceCountRequest, Sample, SampleList, VerifyRequest,
};
use support::{new_key, Server};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(k) = key {
        let v: MetadataValue<_> = format!("Bearer {k}").parse().unwrap();
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn finger(image: &[u8]) -> Sample {
    Sample {
        modality: Modality::Finger as i32,
        finger_position: 1,
        ppi: 500.0,
        data: Some(sample::Data::Image(image.to_vec())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_exactly_what_it_may_and_every_call_is_audited() {
    if !support::models_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let bank = new_key(&keys, "bank-counter", "verify");
    let office = new_key(&keys, "enrollment-office", "enroll,search");
    let admin = new_key(&keys, "administrator", "admin");
    // The file holds hashes only.
    let text = std::fs::read_to_string(&keys).unwrap();
    for k in [&bank, &office, &admin] {
        assert!(!text.contains(k.as_str()), "key stored in clear");
    }

    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data, &[("ABIS__AUTH__KEYS_FILE", keys.as_os_str())]);
    let channel: Channel = tonic::transport::Endpoint::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AbisClient::new(channel).max_decoding_message_size(64 << 20);
    let p1 = std::fs::read(support::afis_sample("p1_1.png")).unwrap();
    let p2 = std::fs::read(support::afis_sample("p1_2.png")).unwrap();
    let insert = || InsertRequest {
        reference_id: "200000000001".into(),
        samples: vec![finger(&p1)],
        metadata: Default::default(),
    };
    let identify = || IdentifyRequest {
        probe: Some(identify_request::Probe::Samples(SampleList {
            samples: vec![finger(&p2)],
        })),
        gallery_reference_ids: vec![],
        max_results: 5,
        target_fpir: 30,
        open_case: false,
    };
    let verify = || VerifyRequest {
        face_choice: 0,
        probe: vec![finger(&p2)],
        reference: Some(verify_request::Reference::ReferenceId(
            "200000000001".into(),
        )),
        target_fmr: 1e-4,
    };
    let delete = || DeleteRequest {
        reference_id: "200000000001".into(),
    };

    // No key, or a wrong one: UNAUTHENTICATED.
    for key in [None, Some("abis_not-a-real-key")] {
        let e = client
            .reference_count(with_key(ReferenceCountRequest {}, key))
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::Unauthenticated, "{key:?}");
    }
    // A bank may verify, never insert, search or delete.
    assert_eq!(
        client
            .insert(with_key(insert(), Some(&bank)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        client
            .identify(with_key(identify(), Some(&bank)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        client
            .delete(with_key(delete(), Some(&bank)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // An enrollment office may insert and search, not delete or verify.
    client
        .insert(with_key(insert(), Some(&office)))
        .await
        .expect("office inserts");
    let found = client
        .identify(with_key(identify(), Some(&office)))
        .await
        .expect("office searches")
        .into_inner();
    assert_eq!(
        found.candidates.first().map(|c| c.reference_id.as_str()),
        Some("200000000001")
    );
    assert_eq!(
        client
            .delete(with_key(delete(), Some(&office)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        client
            .verify(with_key(verify(), Some(&office)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // The bank verifies; the administrator deletes, but may not search.
    client
        .verify(with_key(verify(), Some(&bank)))
        .await
        .expect("bank verifies");
    assert_eq!(
        client
            .identify(with_key(identify(), Some(&admin)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    client
        .delete(with_key(delete(), Some(&admin)))
        .await
        .expect("admin deletes");

    let audit_dir = server.data_dir().join("audit");
    let (status, _data) = server.stop_keep_data();
    assert!(status.success());

    // The audit log holds every call (refusals included), chained; no template or key in it.
    let out = support::abis()
        .args(["audit", "verify"])
        .arg(&audit_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut log = String::new();
    for entry in std::fs::read_dir(&audit_dir).unwrap() {
        log.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for expected in [
        "\"bank-counter\"",
        "\"enrollment-office\"",
        "\"administrator\"",
        "PERMISSION_DENIED",
        "\"Delete\"",
    ] {
        assert!(log.contains(expected), "audit log lacks {expected}");
    }
    for k in [&bank, &office, &admin] {
        assert!(!log.contains(k.as_str()), "a key reached the audit log");
    }
    // Changing one recorded decision breaks the chain, and `abis audit verify` says so.
    let first = std::fs::read_dir(&audit_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&first).unwrap();
    let tampered = text.replacen("PERMISSION_DENIED", "OK", 1);
    assert_ne!(tampered, text);
    std::fs::write(&first, tampered).unwrap();
    let out = support::abis()
        .args(["audit", "verify"])
        .arg(&audit_dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "tampering went unnoticed");
}

/// `abis serve` must refuse to start on `data` with this environment; returns its stderr.
fn serve_refused(data: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let mut c = support::abis();
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .output()
        .expect("run abis serve");
    assert!(!out.status.success(), "abis serve started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn identify_first(client: &mut AbisClient<Channel>, probe: &[u8]) -> Option<String> {
    let r = support::identify_samples(client, vec![finger(probe)]).await;
    r.candidates.first().map(|c| c.reference_id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_gallery_is_unreadable_without_its_key_and_survives_restart_and_rotation() {
    if !support::models_ready() {
        return;
    }
    const ID: &str = "300000000007";
    let keys_dir = tempfile::tempdir().unwrap();
    let key = keys_dir.path().join("store.key");
    let json = support::abis_json(&["store".as_ref(), "keygen".as_ref(), key.as_os_str()]);
    let first_key = json["active_key"].as_str().unwrap().to_owned();
    // Never overwritten: that would orphan the gallery it seals.
    let again = support::abis()
        .args(["store", "keygen"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let with_key = [("ABIS__STORE__ENCRYPTION_KEY_FILE", key.as_os_str())];

    let p1 = std::fs::read(support::afis_sample("p1_1.png")).unwrap();
    let p2 = std::fs::read(support::afis_sample("p1_2.png")).unwrap();
    let server = Server::start_with(tempfile::tempdir().unwrap(), &with_key);
    let mut client = support::connect(&server).await;
    client
        .insert(InsertRequest {
            reference_id: ID.into(),
            samples: vec![finger(&p1)],
            metadata: Default::default(),
        })
        .await
        .expect("insert");
    drop(client);
    let (status, data) = server.stop_keep_data();
    assert!(status.success());

    // Every store file is sealed, and the referenceId appears in none of them.
    let gallery = data.path().join("gallery");
    let mut sealed = 0;
    for e in std::fs::read_dir(&gallery).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().is_some_and(|n| n == "LOCK") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.starts_with(b"ABISENC"),
            "{} not sealed",
            path.display()
        );
        assert!(
            !bytes.windows(ID.len()).any(|w| w == ID.as_bytes()),
            "referenceId readable in {}",
            path.display()
        );
        sealed += 1;
    }
    assert!(sealed >= 2, "log and meta at least");

    // Without the key, or with another key, the server refuses to start and says why.
    let err = serve_refused(data.path(), &[]);
    assert!(err.contains("encrypted"), "{err}");
    let other = keys_dir.path().join("other.key");
    support::abis_json(&["store".as_ref(), "keygen".as_ref(), other.as_os_str()]);
    let err = serve_refused(
        data.path(),
        &[("ABIS__STORE__ENCRYPTION_KEY_FILE", other.as_os_str())],
    );
    assert!(err.contains("does not hold"), "{err}");

    // With its key the record is back and searchable.
    let server = Server::start_with(data, &with_key);
    let mut client = support::connect(&server).await;
    assert_eq!(identify_first(&mut client, &p2).await.as_deref(), Some(ID));
    drop(client);
    let (status, data) = server.stop_keep_data();
    assert!(status.success());

    // Rotation: a new active key on top, rekey the stopped gallery, then the old key can go.
    let json = support::abis_json(&[
        "store".as_ref(),
        "keygen".as_ref(),
        "--prepend".as_ref(),
        key.as_os_str(),
    ]);
    let new_key = json["active_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, first_key);
    let json = support::abis_json(&[
        "store".as_ref(),
        "rekey".as_ref(),
        "--data".as_ref(),
        data.path().as_os_str(),
        "--key-file".as_ref(),
        key.as_os_str(),
    ]);
    assert!(json["rewritten"].as_u64().unwrap() >= 2, "{json}");
    let text = std::fs::read_to_string(&key).unwrap();
    let newest_only = keys_dir.path().join("rotated.key");
    let mut opts = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(opts.write(true).create_new(true), 0o600);
    std::io::Write::write_all(
        &mut opts.open(&newest_only).unwrap(),
        text.lines().next().unwrap().as_bytes(),
    )
    .unwrap();
    let server = Server::start_with(
        data,
        &[("ABIS__STORE__ENCRYPTION_KEY_FILE", newest_only.as_os_str())],
    );
    let mut client = support::connect(&server).await;
    assert_eq!(identify_first(&mut client, &p2).await.as_deref(), Some(ID));
    drop(client);
    assert!(server.stop().success());
}
