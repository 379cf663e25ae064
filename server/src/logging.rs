//! `tracing` setup: human-readable text or JSON lines on stderr, filtered by `logging.filter`.
//!
//! Why: operators ship JSON to their log pipeline; developers read text. Either way logs carry
//! no biometric data and no reference ids or other personal identifiers: those belong only in
//! the access-controlled audit log ([`crate::audit`]). Log RPC labels, codes, timings and
//! counts; never request contents.

use crate::config::{LogFormat, LoggingConfig};

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("logging.filter: {0}")]
    Filter(String),
}

/// Installs the global subscriber. A second call (tests, or a subscriber already set) is a
/// no-op.
pub fn init(config: &LoggingConfig) -> Result<(), LoggingError> {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&config.filter)
        .map_err(|e| LoggingError::Filter(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_an_error_and_init_is_idempotent() {
        let bad = LoggingConfig {
            format: LogFormat::Json,
            filter: "info,[[[".to_string(),
        };
        assert!(init(&bad).is_err());
        let good = LoggingConfig {
            format: LogFormat::Json,
            filter: "warn".to_string(),
        };
        init(&good).unwrap();
        init(&good).unwrap();
    }
}
