//! abis as MOSIP's ABIS: the message-queue adapter (`[mosip] enabled = true`).
//!
//! MOSIP talks to its ABIS only through ActiveMQ: JSON requests on one queue (default
//! `mosip-to-abis1`), answers on another (`abis1-to-mosip`), biometrics fetched from the
//! datashare URL the request names, as CBEFF XML. The adapter consumes the request queue over
//! STOMP (`abis_mosip::stomp`), fetches and unpacks the CBEFF ([`datashare`], [`samples`]) and
//! calls the same `abis.v1` service the gRPC clients call, in this process: one set of
//! extraction engines and one backend (this node's gallery or the cluster router), the same
//! validation, audit, pending-job count and failure reasons (`abis_proto::FailureReason`, read
//! back from the statuses), so MOSIP and gRPC callers can never see different semantics. It is
//! not a separate role because a separate process would need its own engines (hundreds of MB of
//! models) or a gRPC hop per request for nothing.
//!
//! Delivery ([`adapter`]): a request is acknowledged to the broker only after its answer is
//! recorded in a durable ledger ([`ledger`]) and sent; a redelivered request with a known
//! `requestId` gets the recorded answer and changes nothing. An Identify (and a ReferenceCount)
//! waits for every Insert and Delete received before it. Malformed requests (not JSON, no `requestId`, unknown `id`)
//! are answered with failure 4 and NACKed, which ActiveMQ moves to the dead-letter queue.
//! On SIGTERM ([`Adapter::drain`]) it takes no new message, finishes and acknowledges the
//! requests in hand, and disconnects; the broker keeps the rest.
//! PendingJobs counts the request queue's backlog as the broker's statistics plugin reports it
//! (`broker_statistics`), or, without it, the requests received here and not yet answered.

pub mod adapter;
pub mod datashare;
pub mod ledger;
pub mod samples;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use adapter::{spawn, Adapter};
use datashare::DatashareConfig;

/// `[mosip]`: the MOSIP ABIS queue adapter (documented in `server/config/default.toml`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MosipConfig {
    pub enabled: bool,
    /// The broker's STOMP connector: `stomp://HOST:PORT` (or `tcp://`, or `HOST:PORT`).
    pub broker_url: String,
    pub login: Option<String>,
    /// File holding the broker password (with `login`).
    pub passcode_file: Option<PathBuf>,
    pub request_queue: String,
    pub response_queue: String,
    /// Requests processed at once (also the broker's prefetch).
    pub workers: usize,
    pub heartbeat_ms: u64,
    /// Pause before reconnecting to a broker that went away.
    pub reconnect_ms: u64,
    /// Largest CBEFF document and BIR count accepted.
    pub max_cbeff_birs: usize,
    /// PendingJobs asks the broker's statistics plugin how deep the request queue is.
    pub broker_statistics: bool,
    pub statistics_timeout_ms: u64,
    pub datashare: DatashareConfig,
}

impl MosipConfig {
    /// `HOST:PORT` of the broker URL.
    pub fn broker_addr(&self) -> Result<String, String> {
        let url = self.broker_url.trim();
        let rest = ["stomp://", "tcp://", "stomp+tcp://"]
            .iter()
            .find_map(|p| url.strip_prefix(p))
            .unwrap_or(url);
        let addr = rest.split(['/', '?']).next().unwrap_or_default();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(addr.to_string())
            }
            _ => Err(format!("{url:?} is not stomp://HOST:PORT")),
        }
    }

    /// Checks what `abis serve` would otherwise find out at the first message.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        self.broker_addr()?;
        if !(1..=256).contains(&self.workers) {
            return Err("workers must be between 1 and 256".into());
        }
        if self.request_queue.trim().is_empty() || self.response_queue.trim().is_empty() {
            return Err("request_queue and response_queue must be named".into());
        }
        if self.login.is_some() != self.passcode_file.is_some() {
            return Err("login and passcode_file go together".into());
        }
        if self.datashare.max_bytes < 1024 || self.datashare.timeout_ms == 0 {
            return Err("datashare.max_bytes must be at least 1024, timeout_ms above 0".into());
        }
        Ok(())
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    fn statistics_timeout(&self) -> Duration {
        Duration::from_millis(self.statistics_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let mut c: MosipConfig = toml::from_str::<toml::Table>(crate::config::DEFAULT_TOML)
            .unwrap()["mosip"]
            .clone()
            .try_into()
            .unwrap();
        assert!(!c.enabled, "off by default");
        c.enabled = true;
        assert_eq!(c.broker_addr().unwrap(), "127.0.0.1:61613");
        c.validate().unwrap();
        c.broker_url = "tcp://activemq.mosip:61613?x=y".into();
        assert_eq!(c.broker_addr().unwrap(), "activemq.mosip:61613");
        c.broker_url = "stomp://nohost".into();
        assert!(c.validate().is_err());
    }
}
