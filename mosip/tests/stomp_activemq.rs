//! The STOMP client against a real ActiveMQ (Debian's package, started by the test): message
//! types kept, acknowledgement after processing, redelivery when a consumer dies without
//! acknowledging, NACK to the dead-letter queue, persistence across a broker restart.

use std::time::Duration;

use abis_mosip::stomp::{Client, Config, Message, MessageKind, Messages};
use abis_testkit::activemq::ActiveMq;

async fn connect(broker: &ActiveMq) -> (Client, Messages) {
    let mut config = Config::new(broker.stomp_addr());
    config.heartbeat = Duration::from_millis(500);
    config.receipt_timeout = Duration::from_secs(10);
    Client::connect(&config).await.expect("connect to ActiveMQ")
}

async fn next(messages: &mut Messages) -> Message {
    tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("a message within 10 s")
        .expect("the connection is open")
}

async fn nothing_within(messages: &mut Messages, wait: Duration) -> bool {
    tokio::time::timeout(wait, messages.next()).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_client_against_a_real_activemq() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = ActiveMq::start(dir.path()) else {
        return;
    };

    // Text and bytes keep their type; both arrive once and are acknowledged.
    let (producer, _) = connect(&broker).await;
    producer
        .send("q.types", b"{\"a\":1}", MessageKind::Text)
        .await
        .unwrap();
    producer
        .send("q.types", b"{\"b\":\0}", MessageKind::Bytes)
        .await
        .unwrap();
    let (consumer, mut messages) = connect(&broker).await;
    consumer.subscribe("q.types", "s1", 4).await.unwrap();
    let m1 = next(&mut messages).await;
    let m2 = next(&mut messages).await;
    assert_eq!(
        (m1.kind, m1.body.as_slice()),
        (MessageKind::Text, &b"{\"a\":1}"[..])
    );
    assert_eq!(
        (m2.kind, m2.body.as_slice()),
        (MessageKind::Bytes, &b"{\"b\":\0}"[..])
    );
    assert!(!m1.redelivered);
    consumer.ack(&m1).await.unwrap();
    consumer.ack(&m2).await.unwrap();
    consumer.disconnect().await.unwrap();

    // A consumer that dies before acknowledging: the broker redelivers to the next one.
    producer
        .send("q.crash", b"job-1", MessageKind::Text)
        .await
        .unwrap();
    let (dying, mut dying_messages) = connect(&broker).await;
    dying.subscribe("q.crash", "s2", 1).await.unwrap();
    assert_eq!(next(&mut dying_messages).await.body, b"job-1");
    dying.abort().await;
    let (survivor, mut messages) = connect(&broker).await;
    survivor.subscribe("q.crash", "s3", 1).await.unwrap();
    let again = next(&mut messages).await;
    assert_eq!(again.body, b"job-1");
    assert!(again.redelivered, "the broker marks the second delivery");
    survivor.ack(&again).await.unwrap();
    survivor.disconnect().await.unwrap();
    let (check, mut messages) = connect(&broker).await;
    check.subscribe("q.crash", "s4", 1).await.unwrap();
    assert!(
        nothing_within(&mut messages, Duration::from_secs(1)).await,
        "acked means gone"
    );
    check.disconnect().await.unwrap();

    // NACK moves a message to its dead-letter queue.
    producer
        .send("q.poison", b"poison", MessageKind::Text)
        .await
        .unwrap();
    let (c, mut messages) = connect(&broker).await;
    c.subscribe("q.poison", "s5", 1).await.unwrap();
    let poison = next(&mut messages).await;
    c.nack(&poison).await.unwrap();
    c.subscribe("DLQ.q.poison", "s6", 1).await.unwrap();
    let dead = next(&mut messages).await;
    assert_eq!(dead.body, b"poison");
    assert_eq!(dead.destination, "/queue/DLQ.q.poison");
    c.ack(&dead).await.unwrap();
    c.disconnect().await.unwrap();

    // A persistent message survives a broker restart; the old connection reports closed.
    producer
        .send("q.durable", b"kept", MessageKind::Bytes)
        .await
        .unwrap();
    broker.restart();
    assert!(producer
        .send("q.durable", b"x", MessageKind::Text)
        .await
        .is_err());
    assert!(producer.is_closed());
    let (c, mut messages) = connect(&broker).await;
    c.subscribe("q.durable", "s7", 1).await.unwrap();
    let kept = next(&mut messages).await;
    assert_eq!(
        (kept.kind, kept.body.as_slice()),
        (MessageKind::Bytes, &b"kept"[..])
    );
    c.ack(&kept).await.unwrap();
    c.disconnect().await.unwrap();
}
