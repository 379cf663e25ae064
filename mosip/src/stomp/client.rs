//! One STOMP connection: a writer shared by the callers and a heart-beat task, and a reader task
//! that hands MESSAGE frames to [`Messages`] and RECEIPT frames to whoever waits for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::frame::{decode, Frame, FrameError};

/// How to reach and talk to the broker.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` of the broker's STOMP connector.
    pub addr: String,
    /// The virtual host sent in CONNECT (ActiveMQ ignores it; STOMP 1.2 requires it).
    pub host: String,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// Heart-beat period asked for both ways (zero: none).
    pub heartbeat: Duration,
    /// How long a frame waits for its RECEIPT (and the CONNECT for CONNECTED).
    pub receipt_timeout: Duration,
    /// Largest frame accepted from the broker.
    pub max_frame: usize,
}

impl Config {
    pub fn new(addr: impl Into<String>) -> Config {
        Config {
            addr: addr.into(),
            host: "localhost".into(),
            login: None,
            passcode: None,
            heartbeat: Duration::from_secs(10),
            receipt_timeout: Duration::from_secs(30),
            max_frame: 16 << 20,
        }
    }
}

/// What went wrong with the connection.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("STOMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the broker answered ERROR: {0}")]
    Broker(String),
    #[error("the STOMP connection is closed")]
    Closed,
    #[error("no {0} from the broker in time")]
    Timeout(&'static str),
    #[error("unexpected {0} frame")]
    Unexpected(String),
}

/// A message's JMS type as ActiveMQ keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Bytes,
}

/// One delivered message, to acknowledge with [`Client::ack`].
#[derive(Debug, Clone)]
pub struct Message {
    pub destination: String,
    pub message_id: String,
    /// The `ack` header STOMP 1.2 asks ACK/NACK to quote.
    pub ack_id: String,
    pub kind: MessageKind,
    pub redelivered: bool,
    pub body: Vec<u8>,
}

impl Message {
    fn from_frame(frame: Frame) -> Message {
        let get = |n: &str| frame.get(n).unwrap_or_default().to_string();
        let message_id = get("message-id");
        let ack_id = frame
            .get("ack")
            .map(str::to_string)
            .unwrap_or_else(|| message_id.clone());
        Message {
            destination: get("destination"),
            kind: if frame.get("content-length").is_some() {
                MessageKind::Bytes
            } else {
                MessageKind::Text
            },
            redelivered: frame.get("redelivered") == Some("true"),
            ack_id,
            message_id,
            body: frame.body,
        }
    }
}

/// The messages of every subscription of a connection; `None` once it is closed.
pub struct Messages {
    rx: mpsc::Receiver<Message>,
}

impl Messages {
    pub async fn next(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

type Waiters = StdMutex<HashMap<String, oneshot::Sender<Result<(), String>>>>;

struct Inner {
    writer: Mutex<OwnedWriteHalf>,
    receipts: Waiters,
    next_receipt: AtomicU64,
    closed: AtomicBool,
    receipt_timeout: Duration,
}

/// The sending side of a connection; clones share it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Heart-beat periods agreed in CONNECT/CONNECTED: (we send every, we expect within).
fn negotiate(ours: Duration, theirs: Option<&str>) -> (Option<Duration>, Option<Duration>) {
    let (sx, sy) = theirs
        .and_then(|v| v.split_once(','))
        .map(|(a, b)| {
            (
                a.trim().parse().unwrap_or(0u64),
                b.trim().parse().unwrap_or(0u64),
            )
        })
        .unwrap_or((0, 0));
    let ms = ours.as_millis() as u64;
    let pick = |a: u64, b: u64| (a > 0 && b > 0).then(|| Duration::from_millis(a.max(b)));
    (pick(ms, sy), pick(ms, sx))
}

impl Client {
    /// Connects, waits for CONNECTED and starts the reader and heart-beat tasks.
    pub async fn connect(config: &Config) -> Result<(Client, Messages), ClientError> {
        let stream = tokio::time::timeout(config.receipt_timeout, TcpStream::connect(&config.addr))
            .await
            .map_err(|_| ClientError::Timeout("TCP connection"))??;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let hb = config.heartbeat.as_millis();
        let mut connect = Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("host", config.host.clone())
            .header("heart-beat", format!("{hb},{hb}"));
        if let (Some(l), Some(p)) = (&config.login, &config.passcode) {
            connect = connect
                .header("login", l.clone())
                .header("passcode", p.clone());
        }
        writer.write_all(&connect.encode()).await?;
        let mut buf = Vec::new();
        let connected = tokio::time::timeout(
            config.receipt_timeout,
            read_frame(&mut reader, &mut buf, config.max_frame, None),
        )
        .await
        .map_err(|_| ClientError::Timeout("CONNECTED"))??;
        match connected.command.as_str() {
            "CONNECTED" => {}
            "ERROR" => return Err(ClientError::Broker(error_text(&connected))),
            other => return Err(ClientError::Unexpected(other.to_string())),
        }
        let (send_every, expect_within) = negotiate(config.heartbeat, connected.get("heart-beat"));
        let client = Client {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                receipts: StdMutex::new(HashMap::new()),
                next_receipt: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                receipt_timeout: config.receipt_timeout,
            }),
        };
        let (tx, rx) = mpsc::channel(64);
        // The broker may be late by a period; two more and the connection is dead.
        let read_limit = expect_within.map(|d| d * 3);
        tokio::spawn(
            client
                .clone()
                .read_loop(reader, buf, tx, read_limit, config.max_frame),
        );
        if let Some(every) = send_every {
            // Twice as often as agreed: a beat delayed by a busy machine still arrives in time.
            tokio::spawn(client.clone().heartbeat_loop(every / 2));
        }
        Ok((client, Messages { rx }))
    }

    async fn read_loop(
        self,
        mut reader: OwnedReadHalf,
        mut buf: Vec<u8>,
        tx: mpsc::Sender<Message>,
        limit: Option<Duration>,
        max_frame: usize,
    ) {
        let why = loop {
            let mut frame = match read_frame(&mut reader, &mut buf, max_frame, limit).await {
                Ok(f) => f,
                Err(e) => break e.to_string(),
            };
            let command = std::mem::take(&mut frame.command);
            if command == "MESSAGE" {
                if tx.send(Message::from_frame(frame)).await.is_err() {
                    break "messages dropped".to_string();
                }
                continue;
            }
            match command.as_str() {
                "RECEIPT" => self.resolve(frame.get("receipt-id").unwrap_or_default(), Ok(())),
                "ERROR" => break error_text(&frame),
                _ => {}
            }
        };
        self.close_with(&why);
        // Close the socket too: until the broker sees it closed it keeps the messages it
        // delivered here, and would hand them to the next session only after newer ones.
        let _ = self.inner.writer.lock().await.shutdown().await;
    }

    async fn heartbeat_loop(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if self.inner.closed.load(Ordering::Acquire) {
                return;
            }
            if self
                .inner
                .writer
                .lock()
                .await
                .write_all(b"\n")
                .await
                .is_err()
            {
                self.close_with("heart-beat write failed");
                return;
            }
        }
    }

    fn resolve(&self, id: &str, outcome: Result<(), String>) {
        let waiter = self
            .inner
            .receipts
            .lock()
            .map(|mut w| w.remove(id))
            .ok()
            .flatten();
        if let Some(w) = waiter {
            let _ = w.send(outcome);
        }
    }

    /// Marks the connection closed and fails every frame still waiting for a receipt.
    fn close_with(&self, why: &str) {
        self.inner.closed.store(true, Ordering::Release);
        let waiters: Vec<_> = match self.inner.receipts.lock() {
            Ok(mut w) => w.drain().map(|(_, s)| s).collect(),
            Err(_) => Vec::new(),
        };
        for w in waiters {
            let _ = w.send(Err(why.to_string()));
        }
    }

    /// Whether the connection has ended (the caller reconnects).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Writes `frame` with a `receipt` header and waits for the broker's RECEIPT.
    pub(crate) async fn request(&self, frame: Frame) -> Result<(), ClientError> {
        let id = self
            .inner
            .next_receipt
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let (tx, rx) = oneshot::channel();
        self.inner
            .receipts
            .lock()
            .map_err(|_| ClientError::Closed)?
            .insert(id.clone(), tx);
        if self.is_closed() {
            self.resolve(&id, Err("closed".into()));
            return Err(ClientError::Closed);
        }
        let bytes = frame.header("receipt", id.clone()).encode();
        if let Err(e) = self.inner.writer.lock().await.write_all(&bytes).await {
            self.close_with("write failed");
            return Err(e.into());
        }
        match tokio::time::timeout(self.inner.receipt_timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(why))) => Err(ClientError::Broker(why)),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                self.resolve(&id, Err("timeout".into()));
                Err(ClientError::Timeout("RECEIPT"))
            }
        }
    }

    /// Subscribes to a queue with `client-individual` acks and at most `prefetch` messages
    /// delivered and not yet acknowledged.
    pub async fn subscribe(&self, queue: &str, id: &str, prefetch: u32) -> Result<(), ClientError> {
        let frame = Frame::new("SUBSCRIBE")
            .header("destination", format!("/queue/{queue}"))
            .header("id", id)
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", prefetch.max(1).to_string());
        self.request(frame).await
    }

    /// Sends a persistent message and returns once the broker has stored it.
    pub async fn send(
        &self,
        queue: &str,
        body: &[u8],
        kind: MessageKind,
    ) -> Result<(), ClientError> {
        let mut frame = Frame::new("SEND")
            .header("destination", format!("/queue/{queue}"))
            .header("persistent", "true");
        if kind == MessageKind::Bytes {
            frame = frame.header("content-length", body.len().to_string());
        }
        self.request(frame.body(body.to_vec())).await
    }

    /// Acknowledges one message; returns once the broker has recorded it.
    pub async fn ack(&self, message: &Message) -> Result<(), ClientError> {
        self.request(Frame::new("ACK").header("id", message.ack_id.clone()))
            .await
    }

    /// Gives a message back for redelivery (or the broker's dead-letter queue).
    pub async fn nack(&self, message: &Message) -> Result<(), ClientError> {
        self.request(Frame::new("NACK").header("id", message.ack_id.clone()))
            .await
    }

    /// Drops the connection without DISCONNECT, as a crashed process would: the broker
    /// redelivers what was not acknowledged.
    pub async fn abort(&self) {
        self.close_with("aborted");
        let _ = self.inner.writer.lock().await.shutdown().await;
    }

    /// Ends the session cleanly: unacknowledged messages go back to the queue.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        let out = self.request(Frame::new("DISCONNECT")).await;
        self.close_with("disconnected");
        let _ = self.inner.writer.lock().await.shutdown().await;
        out
    }
}

fn error_text(frame: &Frame) -> String {
    let message = frame.get("message").unwrap_or("no message");
    let body: String = String::from_utf8_lossy(&frame.body)
        .chars()
        .take(200)
        .collect();
    format!("{message} {}", body.trim())
}

/// Reads until `buf` holds a whole frame. `silence`: the longest wait for any byte — a
/// heart-beat EOL counts, so a quiet but live connection is never taken for a dead one.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    max_frame: usize,
    silence: Option<Duration>,
) -> Result<Frame, ClientError> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(frame) = decode(buf, max_frame)? {
            return Ok(frame);
        }
        let read = reader.read(&mut chunk);
        let n = match silence {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| ClientError::Timeout("heart-beat"))??,
            None => read.await?,
        };
        if n == 0 {
            return Err(ClientError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker that accepts one connection, agrees heart-beats of `beat_ms` and then sends
    /// nothing but heart-beat EOLs every `beat_ms / 5` until `for_ms` have passed.
    async fn quiet_broker(beat_ms: u64, for_ms: u64) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let connected = format!("CONNECTED\nversion:1.2\nheart-beat:{beat_ms},{beat_ms}\n\n\0");
            socket.write_all(connected.as_bytes()).await.unwrap();
            let t0 = std::time::Instant::now();
            while t0.elapsed() < Duration::from_millis(for_ms) {
                tokio::time::sleep(Duration::from_millis(beat_ms / 5)).await;
                if socket.write_all(b"\n").await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_quiet_connection_with_heartbeats_stays_open() {
        // Heart-beats agreed at 500 ms: silence is fatal after 1.5 s. The broker sends only
        // EOLs for 4 s: the connection must still be open at 3 s.
        let addr = quiet_broker(500, 4000).await;
        let mut config = Config::new(addr);
        config.heartbeat = Duration::from_millis(500);
        let (client, _messages) = Client::connect(&config).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !client.is_closed(),
            "heart-beat EOLs count as signs of life"
        );
    }

    #[test]
    fn heartbeats_are_negotiated_as_the_spec_says() {
        let s = Duration::from_secs(1);
        assert_eq!(
            negotiate(s, Some("2000,500")),
            (
                Some(Duration::from_millis(1000)),
                Some(Duration::from_millis(2000))
            )
        );
        assert_eq!(negotiate(s, Some("0,0")), (None, None));
        assert_eq!(negotiate(Duration::ZERO, Some("1000,1000")), (None, None));
        assert_eq!(negotiate(s, None), (None, None));
    }
}
