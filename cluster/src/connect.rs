//! Connecting to the NATS servers: several URLs (the client fails over between them), user and
//! password or a token read from files, TLS with the operator's CA.
//!
//! Credentials never sit in the configuration itself (it is logged and shown): the
//! configuration names files, which must not be readable by group or others. async-nats 0.52
//! ignores credentials written into a URL, so a URL with `user:pass@` is refused rather than
//! silently connecting without them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{Client, ConnectOptions};

use crate::error::ClusterError;

/// Where the NATS servers are and how to authenticate.
#[derive(Debug, Clone, Default)]
pub struct NatsConfig {
    /// `nats://host:port` or `tls://host:port`, one or more.
    pub urls: Vec<String>,
    /// User name for user/password authentication (with `password_file`).
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A file holding the server's authorization token (instead of user/password).
    pub token_file: Option<PathBuf>,
    /// PEM CA that signed the servers' certificates: TLS is then required.
    pub ca_file: Option<PathBuf>,
    /// This connection's name (the node), shown by the servers' monitoring.
    pub name: String,
}

impl NatsConfig {
    /// `urls` split at commas.
    pub fn parse_urls(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks the settings without connecting: URLs, credential combinations, files.
    pub fn check(&self) -> Result<(), ClusterError> {
        if self.urls.is_empty() {
            return Err(ClusterError::Config(
                "cluster.nats_url: at least one NATS server URL is required".into(),
            ));
        }
        for u in &self.urls {
            let rest = u
                .strip_prefix("nats://")
                .or_else(|| u.strip_prefix("tls://"))
                .ok_or_else(|| {
                    ClusterError::Config(format!(
                        "cluster.nats_url: {u:?} must start with nats:// or tls://"
                    ))
                })?;
            if rest.contains('@') {
                return Err(ClusterError::Config(
                    "cluster.nats_url: credentials in a URL are not used by the client; set \
                     cluster.nats_user + cluster.nats_password_file or cluster.nats_token_file"
                        .into(),
                ));
            }
        }
        match (&self.user, &self.password_file, &self.token_file) {
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(ClusterError::Config(
                    "cluster.nats_user and cluster.nats_password_file go together".into(),
                ))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(ClusterError::Config(
                    "cluster: give user/password or a token, not both".into(),
                ))
            }
            _ => {}
        }
        for (what, file) in [
            ("password file", &self.password_file),
            ("token file", &self.token_file),
        ] {
            if let Some(path) = file {
                read_secret(what, path)?;
            }
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(ClusterError::Config(format!(
                    "cluster.nats_ca_file: file {} not found",
                    ca.display()
                )));
            }
        }
        Ok(())
    }

    /// Connects (to any of the servers; the client reconnects and fails over by itself).
    pub async fn connect(&self) -> Result<Client, ClusterError> {
        self.check()?;
        let mut options = match (&self.user, &self.password_file, &self.token_file) {
            (Some(user), Some(pw), _) => ConnectOptions::with_user_and_password(
                user.clone(),
                read_secret("password file", pw)?,
            ),
            (_, _, Some(token)) => ConnectOptions::with_token(read_secret("token file", token)?),
            _ => ConnectOptions::new(),
        };
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let options = options
            .name(&self.name)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(5)))
            .max_reconnects(None)
            .event_callback(|event| async move {
                // Connection events carry no personal data; they help explain a fault. Errors
                // repeat at every reconnection attempt: those stay at debug.
                match event {
                    async_nats::Event::Connected | async_nats::Event::Disconnected => {
                        tracing::info!(%event, "NATS connection")
                    }
                    _ => tracing::debug!(%event, "NATS connection"),
                }
            });
        let addrs: Vec<async_nats::ServerAddr> = self
            .urls
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| ClusterError::Config(format!("cluster.nats_url: {e}")))?;
        options
            .connect(addrs)
            .await
            .map_err(|source| ClusterError::Connect {
                urls: self.urls.join(","),
                source,
            })
    }
}

/// Reads a secret file (password, token): refused when group or others may read it; a trailing
/// newline is not part of the secret.
pub fn read_secret(what: &'static str, path: &Path) -> Result<String, ClusterError> {
    let err = |detail: String| ClusterError::Secret {
        what,
        path: path.to_path_buf(),
        detail,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| err(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "is readable by group or others (mode {:o}); run chmod 600 on it",
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        return Err(err("is empty".into()));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_before_connecting() {
        let ok = NatsConfig {
            urls: NatsConfig::parse_urls("nats://127.0.0.1:4222, tls://10.0.0.2:4222,"),
            ..Default::default()
        };
        assert_eq!(ok.urls.len(), 2);
        ok.check().unwrap();
        for bad in ["", "127.0.0.1:4222", "nats://u:p@127.0.0.1:4222"] {
            let c = NatsConfig {
                urls: NatsConfig::parse_urls(bad),
                ..Default::default()
            };
            assert!(c.check().is_err(), "{bad:?}");
        }
        let c = NatsConfig {
            user: Some("abis".into()),
            ..ok.clone()
        };
        assert!(c.check().is_err());
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret("password file", &f).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret("password file", &f).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_secret("password file", &f).is_err());
    }
}
