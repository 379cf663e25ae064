//! Soak under faults: abis as MOSIP's ABIS keeps answering a bounded stream of requests across
//! 10 SIGKILLs of `abis serve` and 2 ActiveMQ restarts. Real processes: the broker (Debian's
//! package), `abis serve` with `[mosip]` on one data directory, and this test playing MOSIP's
//! registration processor with a small HTTP datashare.
//!
//! The biometrics are ISO/IEC 19794-2 minutiae BDBs (CBEFF format type 2) of synthetic
//! fingers, so the run is bound by delivery, not by image extraction: each person's fingers
//! match themselves and no one else, which makes every Identify's answer known in advance.
//!
//! The stream comes in rounds: Inserts (new referenceIds, several per person, no dedup) and
//! Deletes (of records live before the round), then a ReferenceCount and Identifies (by URL
//! and by referenceId). Both wait in abis for every write received before them and nothing
//! is sent after them in a round, so the expected answer of every request follows from the
//! order of sending alone. During each round, once its first answer is in, one fault: abis
//! SIGKILLed and restarted on its data, or the broker killed and restarted on its store.
//! Then: every request answered as the sequence implies, none lost, any request answered
//! twice answered identically, and the final gallery (count, every person's candidates) is
//! the one the sequence implies. No assertion depends on timing.
//!
//! Skipped, counted, without the broker or the models (a failure under ABIS_REQUIRE_DATA=1).

#[path = "support/mosip.rs"]
mod mosip_support;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use abis_mosip::cbeff::{self, Modality as CbeffModality};
use abis_mosip::message::{Answer, Operation, Outcome, Request};
use abis_mosip::position::mosip_subtype;
use abis_mosip::stomp::MessageKind;
use abis_testkit::activemq::ActiveMq;
use mosip_support::{bir, datashare, mosip_env, start_abis, Mosip};

/// Distinct synthetic persons (two fingers each).
const PERSONS: u64 = 24;
/// One fault per round: 10 SIGKILLs of abis and 2 broker restarts.
const ROUNDS: usize = 12;
const BROKER_RESTART_ROUNDS: [usize; 2] = [4, 9];
const INSERTS_PER_ROUND: usize = 14;
const DELETES_PER_ROUND: usize = 4;
const IDENTIFIES_BY_URL: usize = 8;
const IDENTIFIES_BY_ID: usize = 3;
/// Above the most records any person can hold, so no candidate list is cut short.
const MAX_RESULTS: u32 = 100;
/// How long a request may wait for its answer, faults and restarts included.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// What a request must be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Done,
    Count(u64),
    Candidates(BTreeSet<String>),
}

/// The gallery the acknowledged sequence implies: live referenceIds and their persons.
#[derive(Default)]
struct Model {
    live: BTreeMap<String, u64>,
    next_ref: u64,
}

impl Model {
    fn refs_of(&self, person: u64) -> BTreeSet<String> {
        let refs = self.live.iter().filter(|(_, &p)| p == person);
        refs.map(|(r, _)| r.clone()).collect()
    }
}

/// SplitMix64, seeded: the stream is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// A person's CBEFF: minutiae BDBs of two fingers at their MOSIP subtypes.
fn person_cbeff(person: u64) -> Vec<u8> {
    let birs: Vec<_> = [2u8, 7]
        .into_iter()
        .map(|position| {
            let template = abis_client::synthetic_iso_template(
                person * 16 + u64::from(position),
                position,
                40,
            );
            let subtype = mosip_subtype(position).unwrap();
            bir(CbeffModality::Finger, 2, subtype, template)
        })
        .collect();
    cbeff::to_xml(&birs).into_bytes()
}

fn documents() -> HashMap<String, (u16, Vec<u8>)> {
    (0..PERSONS)
        .map(|p| (format!("/p{p}"), (200, person_cbeff(p))))
        .collect()
}

/// Builds one round's requests with their expected answers, advancing the model.
struct Round<'a> {
    mosip: &'a mut Mosip,
    model: &'a mut Model,
    share: &'a str,
    requests: Vec<(Request, Expect)>,
}

impl Round<'_> {
    fn insert(&mut self, person: u64) {
        let reference = format!("soak-{}", self.model.next_ref);
        self.model.next_ref += 1;
        let mut r = self.mosip.request(Operation::Insert);
        r.reference_id = Some(reference.clone());
        r.reference_url = Some(format!("{}/p{person}", self.share));
        self.model.live.insert(reference, person);
        self.requests.push((r, Expect::Done));
    }

    fn delete(&mut self, reference: String) {
        let mut r = self.mosip.request(Operation::Delete);
        r.reference_id = Some(reference.clone());
        self.model.live.remove(&reference);
        self.requests.push((r, Expect::Done));
    }

    fn count(&mut self) {
        let r = self.mosip.request(Operation::ReferenceCount);
        let n = self.model.live.len() as u64;
        self.requests.push((r, Expect::Count(n)));
    }

    fn identify_person(&mut self, person: u64) {
        let mut r = self.mosip.request(Operation::Identify);
        r.reference_url = Some(format!("{}/p{person}", self.share));
        r.flags.max_results = Some(MAX_RESULTS);
        let expected = self.model.refs_of(person);
        self.requests.push((r, Expect::Candidates(expected)));
    }

    fn identify_reference(&mut self, reference: &str) {
        let mut r = self.mosip.request(Operation::Identify);
        r.reference_id = Some(reference.to_string());
        r.flags.max_results = Some(MAX_RESULTS);
        let mut expected = self.model.refs_of(self.model.live[reference]);
        expected.remove(reference);
        self.requests.push((r, Expect::Candidates(expected)));
    }
}

/// One round: writes, then a count and the identifies, which see every write before them.
fn round(
    mosip: &mut Mosip,
    model: &mut Model,
    share: &str,
    rng: &mut Rng,
) -> Vec<(Request, Expect)> {
    let before: Vec<String> = model.live.keys().cloned().collect();
    let mut round = Round {
        mosip,
        model,
        share,
        requests: Vec::new(),
    };
    for i in 0..INSERTS_PER_ROUND + DELETES_PER_ROUND {
        let doomed = before.len() > DELETES_PER_ROUND && i % 4 == 3;
        if doomed {
            // Only records live before the round: a Delete does not wait for earlier Inserts.
            let reference = &before[rng.below(before.len() as u64) as usize];
            if round.model.live.contains_key(reference) {
                round.delete(reference.clone());
                continue;
            }
        }
        round.insert(rng.below(PERSONS));
    }
    round.count();
    for _ in 0..IDENTIFIES_BY_URL {
        round.identify_person(rng.below(PERSONS));
    }
    let live: Vec<String> = round.model.live.keys().cloned().collect();
    for _ in 0..IDENTIFIES_BY_ID {
        round.identify_reference(&live[rng.below(live.len() as u64) as usize]);
    }
    round.requests
}

fn check(request: &Request, expect: &Expect, outcome: &Outcome) {
    let got = match outcome {
        Outcome::Success(Answer::Done) => Expect::Done,
        Outcome::Success(Answer::Count(n)) => Expect::Count(*n),
        Outcome::Success(Answer::Candidates(c)) => {
            Expect::Candidates(c.iter().map(|c| c.reference_id.clone()).collect())
        }
        other => panic!("{} answered {other:?}", request.request_id),
    };
    assert_eq!(
        &got, expect,
        "{} ({:?})",
        request.request_id, request.operation
    );
}

async fn await_answers(mosip: &Mosip, requests: &[(Request, Expect)]) {
    for (request, expect) in requests {
        let answer = mosip.answer(&request.request_id, ANSWER_WITHIN).await;
        check(request, expect, &answer.outcome);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosip_answers_everything_across_sigkills_and_broker_restarts() {
    if !support::models_ready() {
        return;
    }
    let broker_dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = ActiveMq::start(broker_dir.path()) else {
        return;
    };
    let share = datashare(documents());
    let env = mosip_env(&broker, 3);
    let mut server = start_abis(tempfile::tempdir().unwrap(), &env);
    let mut mosip = Mosip::connect(&broker).await;
    let (mut model, mut rng) = (Model::default(), Rng(24));
    let mut sent = BTreeSet::new();
    let (mut kills, mut restarts) = (0, 0);

    for r in 0..ROUNDS {
        let requests = round(&mut mosip, &mut model, &share, &mut rng);
        for (i, (request, _)) in requests.iter().enumerate() {
            let kind = if i % 5 == 4 {
                MessageKind::Bytes
            } else {
                MessageKind::Text
            };
            mosip.send(request, kind).await;
            sent.insert(request.request_id.clone());
        }
        // The fault comes with the round under way.
        mosip.answer(&requests[0].0.request_id, ANSWER_WITHIN).await;
        let unanswered = requests
            .iter()
            .filter(|(r, _)| !mosip.answered(&r.request_id))
            .count();
        eprintln!(
            "soak: round {r}: fault with {unanswered} of {} unanswered",
            requests.len()
        );
        if BROKER_RESTART_ROUNDS.contains(&r) {
            broker.restart();
            mosip.reconnect(&broker).await;
            restarts += 1;
        } else {
            server = start_abis(server.kill_keep_data(), &env);
            kills += 1;
        }
        await_answers(&mosip, &requests).await;
    }
    assert_eq!((kills, restarts), (10, 2));

    // The final gallery is the one the sequence implies.
    let mut last = Round {
        mosip: &mut mosip,
        model: &mut model,
        share: &share,
        requests: Vec::new(),
    };
    last.count();
    for person in 0..PERSONS {
        last.identify_person(person);
    }
    let requests = last.requests;
    for (request, _) in &requests {
        mosip.send(request, MessageKind::Text).await;
        sent.insert(request.request_id.clone());
    }
    await_answers(&mosip, &requests).await;

    // None lost, none invented, repeats identical.
    let answered: BTreeSet<String> = mosip.answers.lock().unwrap().keys().cloned().collect();
    assert_eq!(answered, sent, "every request answered, and only those");
    mosip.assert_repeats_identical();
    let repeats: usize = mosip
        .answers
        .lock()
        .unwrap()
        .values()
        .map(|a| a.len() - 1)
        .sum();
    eprintln!(
        "soak: {} requests, {} answers delivered more than once (identical), {} records live",
        sent.len(),
        repeats,
        model.live.len()
    );
    drop(server);
}
