//! A small STOMP 1.2 client over tokio, enough for ActiveMQ as MOSIP uses it: persistent sends
//! confirmed by receipts, subscriptions with `client-individual` acknowledgement and a prefetch
//! limit, heart-beats both ways, and the message type (ActiveMQ turns a frame with
//! `content-length` into a JMS BytesMessage and one without into a TextMessage; MOSIP reads
//! answers of the type it sent).
//!
//! Why not a crate: the STOMP crates on crates.io (async-stomp 0.7, tokio-stomp 0.4,
//! tokio-stomp-2 0.3, stomp-rs 0.0.8) are thin frame codecs from single maintainers; none
//! correlates receipts with the frames that asked for them, keeps heart-beats, or lets the
//! caller choose per frame whether `content-length` is written — the three things the adapter's
//! delivery guarantee rests on. STOMP frames are simple ([`frame`]), so the client is written
//! here and tested against a real ActiveMQ. [`statistics`] asks the broker how deep a queue is.

pub mod client;
pub mod frame;
pub mod statistics;

pub use client::{Client, ClientError, Config, Message, MessageKind, Messages};
pub use frame::{Frame, FrameError};
pub use statistics::{queue_statistics, QueueStatistics, StatisticsError};
