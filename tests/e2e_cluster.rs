//! End-to-end: a partitioned, replicated gallery of real processes on loopback — NATS servers
//! (JetStream, the write log replicated on 3), `abis cluster init`, shard replicas and routers —
//! driven through the routers' gRPC API like any client, against a single `abis serve` holding
//! the same records, and under faults (SIGKILL of replicas, routers and NATS servers).
//!
//! The tests share the machine's two cores, so they run one at a time (a lock), and each keeps
//! its gallery small enough for every search to be exhaustive on both sides.

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abis_cluster::shard::shard_of;
use abis_engine::synth::{person_seed, MasterFinger};
use abis_engine::template::encode_native;
use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{
    identify_batch_result, identify_request, sample, verify_request, DeleteRequest, GetRequest,
    IdentifyBatchRequest, IdentifyRequest, IdentifyResponse, InsertRequest, Modality,
    ReferenceCountRequest, Sample, SampleList, VerifyRequest,
};
use cluster::{connect, connect_to, Cluster, Options};
use tonic::transport::Channel;
use tonic::Code;

/// One cluster test at a time: each starts a dozen processes on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The models (routers extract) and `nats-server`, or `None` (skipped or failed by the rule).
fn prerequisites() -> Option<PathBuf> {
    if !support::models_ready() {
        return None;
    }
    abis_testkit::nats_server()
}

const SHARDS: u32 = 3;

fn id(person: u64) -> String {
    format!("{}", 700_000_000_000 + person)
}

fn template(person: u64, position: u8, capture: u64) -> Vec<u8> {
    let t = MasterFinger::generate(person_seed(41, person), position).impression(capture);
    encode_native(&t).expect("encode")
}

fn finger(position: u8, bytes: Vec<u8>) -> Sample {
    Sample {
        modality: Modality::Finger as i32,
        finger_position: u32::from(position),
        ppi: 500.0,
        data: Some(sample::Data::Template(bytes)),
    }
}

/// A person's enrolment: four fingers, first captures.
fn enrolment(person: u64) -> InsertRequest {
    InsertRequest {
        reference_id: id(person),
        samples: [1u8, 2, 6, 7]
            .iter()
            .map(|&p| finger(p, template(person, p, 0)))
            .collect(),
        metadata: [("office".to_string(), "e2e".to_string())].into(),
    }
}

/// A search probe of a person: two fingers, second captures.
fn probe(person: u64) -> Vec<Sample> {
    [2u8, 7]
        .iter()
        .map(|&p| finger(p, template(person, p, 1)))
        .collect()
}

fn identify_request(samples: Vec<Sample>) -> IdentifyRequest {
    IdentifyRequest {
        probe: Some(identify_request::Probe::Samples(SampleList { samples })),
        gallery_reference_ids: vec![],
        max_results: 5,
        target_fpir: 30,
        open_case: false,
    }
}

async fn identify(
    client: &mut AbisClient<Channel>,
    samples: Vec<Sample>,
) -> Result<IdentifyResponse, tonic::Status> {
    client
        .identify(identify_request(samples))
        .await
        .map(|r| r.into_inner())
}

fn first(r: &IdentifyResponse) -> Option<&str> {
    r.candidates.first().map(|c| c.reference_id.as_str())
}

async fn insert(client: &mut AbisClient<Channel>, person: u64) -> Result<bool, tonic::Status> {
    client
        .insert(enrolment(person))
        .await
        .map(|r| r.into_inner().already_present)
}

async fn count(client: &mut AbisClient<Channel>) -> u64 {
    client
        .reference_count(ReferenceCountRequest {})
        .await
        .expect("count")
        .into_inner()
        .count
}

/// Everything a client can see of the gallery must be the same through either router as
/// through one node holding the same records; read-your-writes across routers; audit names the
/// replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_answer_exactly_like_one_node() {
    let _serial = SERIAL.lock().await;
    let Some(nats) = prerequisites() else {
        return;
    };
    let t0 = Instant::now();
    let cluster = Cluster::start(&nats, Options::default());
    let single = support::Server::start();
    eprintln!("cluster up in {:?}", t0.elapsed());
    let mut a = connect(&cluster.routers[0]).await;
    let mut b = connect(&cluster.routers[1]).await;
    let mut one = support::connect(&single).await;

    const PEOPLE: u64 = 48;
    for p in 0..PEOPLE {
        let router = if p % 2 == 0 { &mut a } else { &mut b };
        assert!(!insert(router, p).await.expect("insert through a router"));
        assert!(!insert(&mut one, p).await.expect("insert"));
    }
    // Retries are idempotent, through either router; other content under an id is refused.
    assert!(insert(&mut b, 0).await.unwrap());
    assert!(insert(&mut a, 1).await.unwrap());
    let mut other = enrolment(7);
    other.reference_id = id(2);
    for c in [&mut a, &mut b, &mut one] {
        let e = c.insert(other.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    }
    assert_eq!(count(&mut a).await, PEOPLE);
    assert_eq!(count(&mut b).await, PEOPLE);
    assert_eq!(count(&mut one).await, PEOPLE);

    // Identify: the same candidates, scores, threshold and gallery size everywhere.
    let probes: Vec<u64> = vec![0, 5, 17, 30, 47, PEOPLE + 3, PEOPLE + 9];
    let mut expected = Vec::new();
    for &p in &probes {
        let want = identify(&mut one, probe(p)).await.expect("identify");
        assert_eq!(
            identify(&mut a, probe(p)).await.unwrap(),
            want,
            "person {p}"
        );
        assert_eq!(
            identify(&mut b, probe(p)).await.unwrap(),
            want,
            "person {p}"
        );
        if p < PEOPLE {
            assert_eq!(first(&want), Some(id(p).as_str()));
        } else {
            assert!(want.candidates.is_empty());
        }
        expected.push(want);
    }
    // IdentifyBatch: each result what Identify gives alone.
    let batch = a
        .identify_batch(IdentifyBatchRequest {
            requests: probes.iter().map(|&p| identify_request(probe(p))).collect(),
        })
        .await
        .expect("identify batch")
        .into_inner();
    for (r, want) in batch.results.iter().zip(&expected) {
        match &r.outcome {
            Some(identify_batch_result::Outcome::Response(got)) => assert_eq!(got, want),
            other => panic!("batch result {other:?}"),
        }
    }
    // A stored probe, restricted to a list of ids spread over the shards.
    let by_id = IdentifyRequest {
        probe: Some(identify_request::Probe::ReferenceId(id(3))),
        gallery_reference_ids: (0..12).map(id).collect(),
        max_results: 3,
        target_fpir: 40,
        open_case: false,
    };
    let want = one.identify(by_id.clone()).await.unwrap().into_inner();
    assert_eq!(b.identify(by_id).await.unwrap().into_inner(), want);
    // Verify and Get go to the id's shard.
    let verify = VerifyRequest {
        face_choice: 0,
        probe: probe(5),
        reference: Some(verify_request::Reference::ReferenceId(id(5))),
        target_fmr: 1e-4,
    };
    let want = one.verify(verify.clone()).await.unwrap().into_inner();
    assert_eq!(a.verify(verify).await.unwrap().into_inner(), want);
    let samples = VerifyRequest {
        face_choice: 0,
        probe: probe(6),
        reference: Some(verify_request::Reference::Samples(SampleList {
            samples: enrolment(6).samples,
        })),
        target_fmr: 1e-4,
    };
    let want = one.verify(samples.clone()).await.unwrap().into_inner();
    assert_eq!(b.verify(samples).await.unwrap().into_inner(), want);
    let get = GetRequest {
        reference_id: id(9),
        include_templates: true,
    };
    let want = one.get(get.clone()).await.unwrap().into_inner();
    assert_eq!(a.get(get).await.unwrap().into_inner(), want);
    let missing = GetRequest {
        reference_id: id(PEOPLE + 1),
        include_templates: false,
    };
    assert_eq!(a.get(missing).await.unwrap_err().code(), Code::NotFound);

    // Deletions are honoured everywhere; a second delete is NOT_FOUND.
    for p in [5u64, 17] {
        for c in [&mut b, &mut one] {
            c.delete(DeleteRequest {
                reference_id: id(p),
            })
            .await
            .unwrap();
        }
        let e = a
            .delete(DeleteRequest {
                reference_id: id(p),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    for &p in &probes {
        let want = identify(&mut one, probe(p)).await.unwrap();
        assert_eq!(
            identify(&mut a, probe(p)).await.unwrap(),
            want,
            "person {p}"
        );
        assert!(!want.candidates.iter().any(|c| c.reference_id == id(5)));
    }
    assert_eq!(count(&mut a).await, PEOPLE - 2);

    // Read-your-writes: an insert acknowledged by router a is seen by an Identify that router b
    // starts right after, while another client keeps inserting.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let stop = Arc::clone(&stop);
        let mut c = connect(&cluster.routers[0]).await;
        tokio::spawn(async move {
            let mut p = 10_000;
            while !stop.load(Ordering::Relaxed) {
                insert(&mut c, p).await.expect("background insert");
                p += 1;
                // A steady stream of about 40 inserts a second, not a flood.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            p - 10_000
        })
    };
    let t_ryw = Instant::now();
    for k in 0..40u64 {
        let p = 500 + k;
        let (writer, reader) = if k % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        insert(writer, p).await.unwrap();
        let r = identify(reader, probe(p)).await.unwrap();
        assert_eq!(first(&r), Some(id(p).as_str()), "insert {k} not visible");
        if k % 4 == 0 {
            writer
                .delete(DeleteRequest {
                    reference_id: id(p),
                })
                .await
                .unwrap();
            let r = identify(reader, probe(p)).await.unwrap();
            assert!(!r.candidates.iter().any(|c| c.reference_id == id(p)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let background_inserts = background.await.unwrap();
    eprintln!(
        "read-your-writes: 40 insert→identify pairs across routers in {:?} with {background_inserts} concurrent inserts",
        t_ryw.elapsed()
    );

    // The audit entry of a search names the router and the replica of each shard.
    let audit_dir = cluster.routers[0].data.join("audit");
    let mut nodes = Vec::new();
    for f in std::fs::read_dir(&audit_dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["rpc"] == "Identify" {
                nodes.push(v["node"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let pattern = |n: &str| {
        n.starts_with("router-a [s0:replica-0")
            && n.contains(" s1:replica-1")
            && n.contains(" s2:replica-2")
    };
    assert!(nodes.iter().any(|n| pattern(n)), "audit nodes: {nodes:?}");
    drop(cluster);
    assert_eq!(single.stop().code(), Some(0));
}

/// Outcomes of the searches a client kept sending during the faults.
#[derive(Default)]
struct Searches {
    ok: u64,
    wrong: u64,
    errors: BTreeMap<String, u64>,
    /// (start, end) of runs of consecutive failures.
    outages: Vec<(Duration, Duration)>,
}

/// SIGKILL of replicas, routers and NATS servers at random moments under a bounded load:
/// no acknowledged insert is lost, searches answer (or say UNAVAILABLE) and are never wrong;
/// a shard with no replica left is UNAVAILABLE, never partial; a killed replica catches up
/// and answers like its peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_no_acknowledged_insert() {
    let _serial = SERIAL.lock().await;
    let Some(nats) = prerequisites() else {
        return;
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("fault schedule seed {seed}");
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let options = Options {
        env: vec![
            ("ABIS__CLUSTER__ATTEMPT_TIMEOUT_MS".into(), "1000".into()),
            ("ABIS__CLUSTER__REQUEST_TIMEOUT_MS".into(), "10000".into()),
            ("ABIS__CLUSTER__WRITE_TIMEOUT_MS".into(), "20000".into()),
            ("ABIS__CLUSTER__HEARTBEAT_MS".into(), "500".into()),
        ],
        ..Options::default()
    };
    let cluster = Arc::new(Mutex::new(Cluster::start(&nats, options)));
    let router_nodes: Vec<(String, String)> = {
        let c = cluster.lock().unwrap();
        c.routers
            .iter()
            .map(|r| (r.name.clone(), r.addr()))
            .collect()
    };
    const BASE: u64 = 30;
    let mut a = {
        let addr = cluster.lock().unwrap().routers[0].addr();
        connect_to(addr).await
    };
    for p in 0..BASE {
        insert(&mut a, p).await.unwrap();
    }

    // Load: two writers (each insert retried on the other router until acknowledged) and one
    // searcher, for the whole fault schedule.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (stop, acked, routers) = (Arc::clone(&stop), Arc::clone(&acked), router_nodes.clone());
        writers.push(tokio::spawn(async move {
            let mut r = w as usize;
            let mut failures = 0u64;
            let mut p = 1_000 + w * 100_000;
            while !stop.load(Ordering::Relaxed) {
                loop {
                    let attempt = async {
                        let mut c = AbisClient::connect(routers[r].1.clone()).await.ok()?;
                        Some(insert(&mut c, p).await)
                    };
                    match tokio::time::timeout(Duration::from_secs(30), attempt).await {
                        Ok(Some(Ok(_))) => break,
                        _ => {
                            failures += 1;
                            r = 1 - r;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                acked.lock().unwrap().push(p);
                p += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            failures
        }));
    }
    let searches = Arc::new(Mutex::new(Searches::default()));
    let searcher = {
        let (stop, searches, routers) = (
            Arc::clone(&stop),
            Arc::clone(&searches),
            router_nodes.clone(),
        );
        tokio::spawn(async move {
            let mut r = 0usize;
            let mut outage: Option<Duration> = None;
            while !stop.load(Ordering::Relaxed) {
                let started = t0.elapsed();
                let outcome = match AbisClient::connect(routers[r].1.clone()).await {
                    Ok(mut c) => identify(&mut c, probe(3)).await,
                    Err(e) => Err(tonic::Status::unavailable(e.to_string())),
                };
                {
                    let mut s = searches.lock().unwrap();
                    match outcome {
                        Ok(resp) => {
                            if first(&resp) == Some(id(3).as_str()) {
                                s.ok += 1;
                            } else {
                                s.wrong += 1;
                            }
                            if let Some(from) = outage.take() {
                                s.outages.push((from, t0.elapsed()));
                            }
                        }
                        Err(e) => {
                            *s.errors.entry(format!("{:?}", e.code())).or_default() += 1;
                            outage.get_or_insert(started);
                            r = 1 - r;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(from) = outage {
                searches.lock().unwrap().outages.push((from, t0.elapsed()));
            }
        })
    };

    let mut schedule = Vec::new();
    for round in 0..3 {
        let pause = |n: u64| Duration::from_millis(300 + n);
        tokio::time::sleep(pause(next(900))).await;
        let (s, r) = (next(u64::from(SHARDS)) as u32, next(2) as usize);
        schedule.push(format!(
            "{:?} kill replica-{s}{}",
            t0.elapsed(),
            ['a', 'b'][r]
        ));
        tokio::task::block_in_place(|| cluster.lock().unwrap().replica(s, r).kill());
        tokio::time::sleep(Duration::from_millis(800)).await;
        tokio::task::block_in_place(|| cluster.lock().unwrap().replica(s, r).start());

        tokio::time::sleep(pause(next(900))).await;
        let k = round % 2;
        schedule.push(format!("{:?} kill router-{}", t0.elapsed(), ['a', 'b'][k]));
        tokio::task::block_in_place(|| cluster.lock().unwrap().routers[k].kill());
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::block_in_place(|| cluster.lock().unwrap().routers[k].start());

        tokio::time::sleep(pause(next(900))).await;
        let n = next(3) as usize;
        schedule.push(format!("{:?} kill nats n{}", t0.elapsed(), n + 1));
        tokio::task::block_in_place(|| cluster.lock().unwrap().nats.kill_node(n));
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::block_in_place(|| {
            let mut c = cluster.lock().unwrap();
            c.nats.start_node(n);
            c.nats.wait_ready(Duration::from_secs(30));
        });
        schedule.push(format!("{:?} nats n{} back", t0.elapsed(), n + 1));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut insert_retries = 0;
    for w in writers {
        insert_retries += w.await.unwrap();
    }
    searcher.await.unwrap();
    let elapsed = t0.elapsed();
    for line in &schedule {
        eprintln!("  {line}");
    }

    // Every acknowledged insert is there, through either router.
    tokio::task::block_in_place(|| {
        cluster
            .lock()
            .unwrap()
            .wait_serving(Duration::from_secs(60))
    });
    let acked = acked.lock().unwrap().clone();
    let mut b = {
        let addr = cluster.lock().unwrap().routers[1].addr();
        connect_to(addr).await
    };
    let mut a = {
        let addr = cluster.lock().unwrap().routers[0].addr();
        connect_to(addr).await
    };
    assert_eq!(count(&mut a).await, BASE + acked.len() as u64);
    for (i, &p) in acked.iter().enumerate() {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        let got = c
            .get(GetRequest {
                reference_id: id(p),
                include_templates: false,
            })
            .await;
        assert!(got.is_ok(), "acknowledged insert {p} lost: {got:?}");
    }
    {
        let s = searches.lock().unwrap();
        eprintln!(
            "faults over {elapsed:?}: {} inserts acknowledged ({insert_retries} retried), searches ok {} wrong {} errors {:?}, outages {:?}",
            acked.len(),
            s.ok,
            s.wrong,
            s.errors,
            s.outages
        );
        assert_eq!(s.wrong, 0, "a search answered without its mate");
        assert!(s.ok > 20, "searches kept answering: {}", s.ok);
        for code in s.errors.keys() {
            assert!(
                ["Unavailable", "Unknown", "Cancelled"].contains(&code.as_str()),
                "unexpected search failure {code}"
            );
        }
        for (from, to) in &s.outages {
            assert!(
                *to - *from < Duration::from_secs(15),
                "outage {from:?}..{to:?}"
            );
        }
    }

    // A killed replica caught up and answers like its peer: take each shard's other replica
    // away in turn and compare.
    let want = identify(&mut a, probe(3)).await.unwrap();
    let mut shard_people: Vec<u64> = Vec::new();
    for s in 0..SHARDS {
        let p = (0..BASE).find(|&p| shard_of(&id(p), SHARDS) == s).unwrap();
        shard_people.push(p);
    }
    let baseline: Vec<IdentifyResponse> = {
        let mut v = Vec::new();
        for &p in &shard_people {
            v.push(identify(&mut a, probe(p)).await.unwrap());
        }
        v
    };
    for s in 0..SHARDS {
        for gone in 0..2 {
            tokio::task::block_in_place(|| cluster.lock().unwrap().replica(s, gone).stop());
            assert_eq!(identify(&mut a, probe(3)).await.unwrap(), want);
            let p = shard_people[s as usize];
            assert_eq!(
                identify(&mut b, probe(p)).await.unwrap(),
                baseline[s as usize],
                "shard {s} without replica {gone}"
            );
            tokio::task::block_in_place(|| {
                let mut c = cluster.lock().unwrap();
                c.replica(s, gone).start();
                c.wait_serving(Duration::from_secs(60));
            });
        }
    }

    // Both replicas of shard 0 gone: searches are UNAVAILABLE naming shard 0 (never partial),
    // writes go on (they only need the log), and nothing is lost once the replicas are back.
    tokio::task::block_in_place(|| {
        let mut c = cluster.lock().unwrap();
        c.replica(0, 0).kill();
        c.replica(0, 1).kill();
    });
    let mut request = tonic::Request::new(identify_request(probe(3)));
    request.set_timeout(Duration::from_secs(3));
    let t = Instant::now();
    let e = a.identify(request).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("shard(s) 0"), "{}", e.message());
    eprintln!(
        "shard 0 down: UNAVAILABLE after {:?}: {}",
        t.elapsed(),
        e.message()
    );
    let mut during = Vec::new();
    for p in 50_000..50_012u64 {
        insert(&mut b, p)
            .await
            .expect("insert while shard 0 is down");
        during.push(p);
    }
    assert!(during.iter().any(|&p| shard_of(&id(p), SHARDS) == 0));
    tokio::task::block_in_place(|| {
        let mut c = cluster.lock().unwrap();
        c.replica(0, 0).start();
        c.replica(0, 1).start();
        c.wait_serving(Duration::from_secs(60));
    });
    for &p in &during {
        let r = identify(&mut a, probe(p)).await.unwrap();
        assert_eq!(
            first(&r),
            Some(id(p).as_str()),
            "insert {p} made while shard 0 was down"
        );
    }
    assert_eq!(
        count(&mut a).await,
        BASE + acked.len() as u64 + during.len() as u64
    );
}

/// A replica that stayed away longer than the grace finds its shard's log trimmed past it and
/// copies a live peer's store, then serves like it; the write path checks ids whose history was
/// trimmed with a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_trimmed_log_copies_a_peer() {
    let _serial = SERIAL.lock().await;
    let Some(nats) = prerequisites() else {
        return;
    };
    let mut cluster = Cluster::start(&nats, trimming(2));
    let mut router = connect(&cluster.routers[0]).await;
    for p in 0..40 {
        insert(&mut router, p).await.unwrap();
    }
    cluster.wait_serving(Duration::from_secs(30));
    cluster.replica(0, 1).kill();
    let left_at = Cluster::heartbeat(&cluster.status(), "replica-0b")
        .and_then(|h| h["applied"].as_u64())
        .unwrap_or(0);
    for p in 40..80 {
        insert(&mut router, p).await.unwrap();
    }
    wait_trimmed_past(&cluster, left_at);
    // Ids whose history was purged: the router asks a replica.
    let trimmed_person = (0..40)
        .find(|&p| shard_of(&id(p), 2) == 0)
        .expect("a person of shard 0");
    assert!(insert(&mut router, trimmed_person).await.unwrap());
    let mut other = enrolment(999);
    other.reference_id = id(trimmed_person);
    assert_eq!(
        router.insert(other).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let before: Vec<IdentifyResponse> = {
        let mut v = Vec::new();
        for p in [trimmed_person, 79, 200] {
            v.push(identify(&mut router, probe(p)).await.unwrap());
        }
        v
    };

    let t_back = Instant::now();
    cluster.replica(0, 1).start();
    cluster.wait_serving(Duration::from_secs(60));
    eprintln!(
        "replica-0b copied its peer and serves after {:?}",
        t_back.elapsed()
    );
    assert!(
        cluster
            .replica(0, 1)
            .log_text()
            .contains("store copied from a peer"),
        "replica-0b did not bootstrap:\n{}",
        cluster::tail(&cluster.replica(0, 1).log)
    );
    assert_replicas_level(&cluster, "replica-0a", "replica-0b");
    // Only the copy answers for shard 0 now.
    cluster.replica(0, 0).kill();
    for (k, p) in [trimmed_person, 79, 200].into_iter().enumerate() {
        assert_eq!(identify(&mut router, probe(p)).await.unwrap(), before[k]);
    }
    router
        .delete(DeleteRequest {
            reference_id: id(trimmed_person),
        })
        .await
        .unwrap();
    let e = router
        .delete(DeleteRequest {
            reference_id: id(trimmed_person),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

/// A replica seeded from a backup (`abis store backup` of its stopped store, checked and
/// restored into an empty data directory) resumes at the backup's log position: it catches up
/// from the log, copies no peer, and then answers alone like the shard did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restored_from_a_backup_catches_up_from_the_log() {
    let _serial = SERIAL.lock().await;
    let Some(nats) = prerequisites() else {
        return;
    };
    let mut cluster = Cluster::start(
        &nats,
        Options {
            shards: 1,
            routers: 1,
            ..Options::default()
        },
    );
    let mut router = connect(&cluster.routers[0]).await;
    for p in 0..30 {
        insert(&mut router, p).await.unwrap();
    }
    cluster.wait_serving(Duration::from_secs(30));
    cluster.replica(0, 1).stop();
    let data = cluster.replica(0, 1).data.clone();
    let backup = cluster.dir.path().join("backup-0b");
    let store = |args: &[&std::ffi::OsStr]| {
        let out = cluster.abis().arg("store").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "abis store {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("store JSON")
    };
    let taken = store(&[
        "backup".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--to".as_ref(),
        backup.as_os_str(),
    ]);
    let position = taken["position"].as_u64().expect("backup position");
    assert!(position >= 30, "the backup holds the 30 inserts: {taken}");
    assert_eq!(
        store(&["verify".as_ref(), backup.as_os_str()])["status"],
        "ok"
    );
    // The replica's disk is lost; the backup is all that is left of it.
    std::fs::remove_dir_all(data.join("gallery")).unwrap();
    store(&[
        "restore".as_ref(),
        "--from".as_ref(),
        backup.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    // The shard moves on while the replica is away.
    for p in 30..50 {
        insert(&mut router, p).await.unwrap();
    }
    cluster.replica(0, 1).start();
    cluster.wait_serving(Duration::from_secs(60));
    let log = cluster.replica(0, 1).log_text();
    assert!(
        !log.contains("store copied from a peer"),
        "replica-0b copied a peer instead of resuming from its backup"
    );
    let resumed: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("replica store opened"))
        .filter_map(|l| log_field(l, "position")?.parse().ok())
        .collect();
    assert_eq!(
        resumed.last(),
        Some(&position),
        "replica-0b resumed at the backup's position"
    );
    assert_replicas_level(&cluster, "replica-0a", "replica-0b");
    // Only the restored replica answers for the shard now.
    cluster.replica(0, 0).kill();
    for p in [0, 29, 30, 49] {
        let r = identify(&mut router, probe(p)).await.unwrap();
        assert_eq!(first(&r), Some(id(p).as_str()), "person {p}");
    }
    assert_eq!(count(&mut router).await, 50);
}

/// Replicas `a` and `b` hold the same records and have applied the log to the same position.
fn assert_replicas_level(cluster: &Cluster, a: &str, b: &str) {
    let s = cluster.status();
    let (ha, hb) = (
        Cluster::heartbeat(&s, a).unwrap(),
        Cluster::heartbeat(&s, b).unwrap(),
    );
    assert_eq!(ha["records"], hb["records"]);
    assert_eq!(ha["applied"], hb["applied"]);
}

/// Waits until shard 0's log is trimmed past `left_at + 1`, where replica-0b left: its heartbeat
/// expires after the grace, then retention purges past it.
fn wait_trimmed_past(cluster: &Cluster, left_at: u64) {
    let t0 = Instant::now();
    loop {
        let s = cluster.status();
        let trimmed = s["shards"][0]["trimmed_below"].as_u64().unwrap_or(0);
        if trimmed > left_at + 1 {
            eprintln!(
                "shard 0 trimmed below {trimmed} (replica-0b left at {left_at}) after {:?}; stream {}",
                t0.elapsed(),
                s["stream"]
            );
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never trimmed: {s}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A cluster whose replicas are forgotten 3 s after their last heartbeat and whose log is
/// trimmed every second.
fn trimming(shards: u32) -> Options {
    Options {
        shards,
        routers: 1,
        replica_grace_s: 3,
        env: vec![
            ("ABIS__CLUSTER__RETENTION_INTERVAL_S".into(), "1".into()),
            ("ABIS__CLUSTER__RETENTION_MIN_AGE_S".into(), "1".into()),
            ("ABIS__CLUSTER__HEARTBEAT_MS".into(), "300".into()),
        ],
        ..Options::default()
    }
}

/// A light enrolment: the two fingers [`probe`] searches with, first captures.
fn light_enrolment(person: u64) -> InsertRequest {
    InsertRequest {
        reference_id: id(person),
        samples: [2u8, 7]
            .iter()
            .map(|&p| finger(p, template(person, p, 0)))
            .collect(),
        metadata: Default::default(),
    }
}

/// Enrols `people` (light enrolments) through `router`, 32 inserts at a time, the templates
/// made off the runtime.
async fn insert_many(router: &AbisClient<Channel>, people: std::ops::Range<u64>) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(people.start));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (mut client, next, end) = (router.clone(), Arc::clone(&next), people.end);
            tokio::spawn(async move {
                loop {
                    let p = next.fetch_add(1, Ordering::Relaxed);
                    if p >= end {
                        return;
                    }
                    let request = tokio::task::spawn_blocking(move || light_enrolment(p))
                        .await
                        .unwrap();
                    client.insert(request).await.expect("insert");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The value of `field` in a log line of the text format (`field=value`, colours removed).
fn log_field(line: &str, field: &str) -> Option<String> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('=').map(str::to_owned))
}

/// A replica that copies a peer's store gets the index files with it: it opens them and serves
/// without rebuilding its 1:N index (they were once left out of the copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrapped_replica_opens_its_peers_index_files() {
    const PEOPLE: u64 = 20_000;
    let _serial = SERIAL.lock().await;
    let Some(nats) = prerequisites() else {
        return;
    };
    let mut cluster = Cluster::start(&nats, trimming(1));
    let mut router = connect(&cluster.routers[0]).await;
    let t0 = Instant::now();
    insert_many(&router, 0..PEOPLE).await;
    eprintln!("{PEOPLE} people inserted in {:?}", t0.elapsed());
    cluster.wait_serving(Duration::from_secs(120));
    cluster.replica(0, 1).kill();
    let left_at = Cluster::heartbeat(&cluster.status(), "replica-0b")
        .and_then(|h| h["applied"].as_u64())
        .unwrap_or(0);
    insert_many(&router, PEOPLE..PEOPLE + 20).await;
    wait_trimmed_past(&cluster, left_at);

    cluster.replica(0, 1).start();
    cluster.wait_serving(Duration::from_secs(120));
    let log = cluster.replica(0, 1).log_text();
    let copied = log
        .split_once("store copied from a peer")
        .map(|(_, after)| after)
        .unwrap_or_else(|| {
            panic!(
                "replica-0b did not bootstrap:\n{}",
                cluster::tail(&cluster.replica(0, 1).log)
            )
        });
    let open = copied
        .lines()
        .find(|l| l.contains("replica store open"))
        .expect("the copied store's open line");
    eprintln!("copied store open: {open}");
    assert_eq!(
        log_field(open, "indexes_to_rebuild").as_deref(),
        Some("0"),
        "{open}"
    );
    let records: u64 = log_field(open, "records")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    assert!(records >= PEOPLE, "{open}");
    assert!(!log.contains("to be rebuilt"), "an index file was rebuilt");
    // Only the copy answers for the shard now.
    cluster.replica(0, 0).kill();
    for p in [0, 7_777, PEOPLE - 1] {
        let found = identify(&mut router, probe(p)).await.unwrap();
        assert_eq!(first(&found), Some(id(p).as_str()));
    }
}

/// NATS with TLS and passwords; the log's record payloads sealed with the gallery key; a
/// replica without the key refuses to apply rather than skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cluster_seals_its_log() {
    let _serial = SERIAL.lock().await;
    let Some(nats) = prerequisites() else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path();
    let ca = rcgen::CertifiedIssuer::self_signed(
        {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p
        },
        rcgen::KeyPair::generate().unwrap(),
    )
    .unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&server_key, &*ca)
        .unwrap();
    let write = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.display().to_string()
    };
    let ca_pem = write("ca.pem", &ca.pem());
    let cert_pem = write("server.pem", &server_cert.pem());
    let key_pem = write("server.key", &server_key.serialize_pem());
    let password = write("nats.password", "correct horse battery\n");
    let wrong = write("wrong.password", "nope\n");
    let gallery_key = write("store.key", &format!("{}\n", "3c".repeat(32)));
    let options = Options {
        nats_nodes: 1,
        stream_replicas: 1,
        shards: 2,
        replicas_per_shard: 1,
        routers: 1,
        scheme: "tls",
        nats_extra: format!(
            "tls {{ cert_file: \"{cert_pem}\", key_file: \"{key_pem}\", timeout: 2 }}\n\
             authorization {{ users: [ {{ user: \"abis\", password: \"correct horse battery\" }} ] }}\n"
        ),
        env: vec![
            ("ABIS__CLUSTER__NATS_USER".into(), "abis".into()),
            ("ABIS__CLUSTER__NATS_PASSWORD_FILE".into(), password.clone()),
            ("ABIS__CLUSTER__NATS_CA_FILE".into(), ca_pem.clone()),
            ("ABIS__STORE__ENCRYPTION_KEY_FILE".into(), gallery_key.clone()),
        ],
        ..Options::default()
    };
    let cluster = Cluster::start(&nats, options);
    let mut router = connect(&cluster.routers[0]).await;
    for p in 0..6 {
        insert(&mut router, p).await.unwrap();
    }
    let r = identify(&mut router, probe(4)).await.unwrap();
    assert_eq!(first(&r), Some(id(4).as_str()));

    // What NATS stores: sealed entries, no id, no template bytes.
    let client = async_nats::ConnectOptions::with_user_and_password(
        "abis".into(),
        "correct horse battery".into(),
    )
    .add_root_certificates(ca_pem.clone().into())
    .require_tls(true)
    .connect(format!(
        "tls://127.0.0.1:{}",
        cluster.nats.nodes[0].client_port
    ))
    .await
    .expect("connect with the password and CA");
    let stream = async_nats::jetstream::new(client)
        .get_stream("ABIS")
        .await
        .unwrap();
    for seq in 1..=6u64 {
        let m = stream.get_raw_message(seq).await.unwrap();
        let entry =
            <abis_proto::cluster::v1::LogEntry as prost::Message>::decode(&m.payload[..]).unwrap();
        assert!(entry.sealed);
        for p in 0..6 {
            assert!(!m.payload.windows(12).any(|w| w == id(p).as_bytes()));
            let t = template(p, 1, 0);
            assert!(!m.payload.windows(24).any(|w| w == &t[16..40]));
        }
        assert!(!m.subject.contains("70000000000"));
    }
    // Without the CA, or with a wrong password, nothing connects.
    let out = cluster
        .abis()
        .env("ABIS__CLUSTER__NATS_PASSWORD_FILE", &wrong)
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("authorization"), "{err}");
    let out = cluster
        .abis()
        .env_remove("ABIS__CLUSTER__NATS_CA_FILE")
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "connected without the CA");

    // A replica without the gallery key stops at the first sealed entry of its shard.
    let shard = shard_of(&id(0), 2);
    let mut keyless = std::process::Command::new(env!("CARGO_BIN_EXE_abis"));
    keyless.current_dir(support::repo_root());
    for (k, v) in [
        ("ABIS__CLUSTER__NATS_URL", cluster_url(&cluster)),
        ("ABIS__CLUSTER__NATS_USER", "abis".into()),
        ("ABIS__CLUSTER__NATS_PASSWORD_FILE", password.clone()),
        ("ABIS__CLUSTER__NATS_CA_FILE", ca_pem.clone()),
        ("ABIS__CLUSTER__ROLE", "replica".into()),
        ("ABIS__CLUSTER__SHARD", shard.to_string()),
        ("ABIS__SERVER__NODE", "keyless".into()),
        ("ABIS__LOGGING__FILTER", "warn".into()),
    ] {
        keyless.env(k, v);
    }
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("keyless.log");
    let mut child = keyless
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path().join("d"))
        .stdout(abis_testkit::log_to(&log))
        .stderr(abis_testkit::log_to(&log))
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the keyless replica kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("no gallery key"), "{err}");
}

fn cluster_url(cluster: &Cluster) -> String {
    format!("tls://127.0.0.1:{}", cluster.nats.nodes[0].client_port)
}
