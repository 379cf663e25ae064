//! Shared helpers of the end-to-end tests: paths, and a real `abis serve` process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{identify_request, IdentifyRequest, IdentifyResponse, Sample, SampleList};
use tonic::transport::Channel;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn abis() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_abis"));
    c.current_dir(repo_root())
        .env("ABIS__LOGGING__FILTER", "warn");
    c
}

/// True when `make setup` has put the runtime and models in place; otherwise the test is
/// skipped, counted (or fails under `ABIS_REQUIRE_DATA=1`): see `abis_testkit`.
#[track_caller]
pub fn models_ready() -> bool {
    abis_testkit::models_ready()
}

pub fn afis_sample(name: &str) -> PathBuf {
    repo_root().join("models/cache/afis").join(name)
}

/// A running `abis serve` on an ephemeral loopback port, killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
    _data: tempfile::TempDir,
}

impl Server {
    /// The data directory the server runs on.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }
}

/// True when the face models were converted by setup (skipped or failed like [`models_ready`]).
#[track_caller]
pub fn face_models_ready() -> bool {
    abis_testkit::face_models_ready()
}

/// `../shared/data` (or ABIS_SHARED_DATA), or `None` (skipped or failed like [`models_ready`]).
#[track_caller]
pub fn shared_data() -> Option<PathBuf> {
    abis_testkit::shared_data()
}

impl Server {
    pub fn start() -> Server {
        Self::start_in(tempfile::tempdir().expect("temp dir"))
    }

    /// Starts a server on an existing data directory (to test restarts).
    pub fn start_in(data: tempfile::TempDir) -> Server {
        Self::start_with(data, &[])
    }

    /// Starts a server with extra environment (configuration overrides `ABIS__SECTION__KEY`).
    pub fn start_with(data: tempfile::TempDir, env: &[(&str, &std::ffi::OsStr)]) -> Server {
        Self::start_reading(data, env).0
    }

    /// Starts a server whose `[adjudication] listen` is set in `env`; returns it with the
    /// page's base URL (the second line the server prints). The server's stdout stays open.
    pub fn start_with_page(
        data: tempfile::TempDir,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> (Server, String, BufReader<std::process::ChildStdout>) {
        let (server, mut stdout) = Self::start_reading(data, env);
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the page line");
        let url = line
            .trim()
            .strip_prefix("adjudication page on ")
            .unwrap_or_else(|| panic!("unexpected second line from abis serve: {line:?}"))
            .to_owned();
        (server, url, stdout)
    }

    fn start_reading(
        data: tempfile::TempDir,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> (Server, BufReader<std::process::ChildStdout>) {
        let mut command = abis();
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start abis serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from abis serve: {line:?}"))
            .to_owned();
        let server = Server {
            child,
            addr: format!("http://{addr}"),
            _data: data,
        };
        (server, stdout)
    }

    /// Process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits: the server must shut down by itself.
    pub fn stop(self) -> std::process::ExitStatus {
        self.stop_keep_data().0
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and hands back its data
    /// directory.
    pub fn kill_keep_data(mut self) -> tempfile::TempDir {
        self.child.kill().expect("SIGKILL the server"); // Child::kill is SIGKILL on Unix
        let _ = self.child.wait();
        std::mem::replace(&mut self._data, tempfile::tempdir().expect("temp dir"))
    }

    /// Stops the server and hands back its data directory.
    pub fn stop_keep_data(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait for server");
        let data = std::mem::replace(&mut self._data, tempfile::tempdir().expect("temp dir"));
        (status, data)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server's health says SERVING for `service` ("" for the whole server);
/// panics if it says anything but NOT_SERVING meanwhile, or after `limit`. Returns the wait.
pub async fn wait_serving(
    server: &Server,
    service: &str,
    limit: std::time::Duration,
) -> std::time::Duration {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let started = std::time::Instant::now();
    let channel = tonic::transport::Endpoint::from_shared(server.addr.clone())
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        if status == ServingStatus::Serving as i32 {
            return started.elapsed();
        }
        assert_eq!(
            status,
            ServingStatus::NotServing as i32,
            "service {service:?}"
        );
        assert!(started.elapsed() < limit, "never became SERVING");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A client of `server` that accepts large responses (templates in `Get`).
pub async fn connect(server: &Server) -> AbisClient<Channel> {
    AbisClient::connect(server.addr.clone())
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20)
}

/// Identifies `samples` against the whole gallery (5 results, FPIR 1e-3); panics on error.
pub async fn identify_samples(
    client: &mut AbisClient<Channel>,
    samples: Vec<Sample>,
) -> IdentifyResponse {
    client
        .identify(IdentifyRequest {
            probe: Some(identify_request::Probe::Samples(SampleList { samples })),
            gallery_reference_ids: vec![],
            max_results: 5,
            target_fpir: 30,
            open_case: false,
        })
        .await
        .expect("identify")
        .into_inner()
}

/// Runs `abis` with `args`, asserting success; returns stdout parsed as JSON.
pub fn abis_json<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> serde_json::Value {
    let out = abis().args(args).output().expect("run abis");
    assert!(
        out.status.success(),
        "abis {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Adds a key with `roles` to `keys_file` with `abis keys add`; returns the key.
pub fn new_key(keys_file: &std::path::Path, name: &str, roles: &str) -> String {
    let out = abis()
        .args(["keys", "add", name, "--roles", roles, "--file"])
        .arg(keys_file)
        .output()
        .expect("abis keys add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    json["key"].as_str().expect("key").to_owned()
}
