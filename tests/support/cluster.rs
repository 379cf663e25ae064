//! A whole cluster of real processes on 127.0.0.1 for the cluster tests: NATS servers
//! (`abis_testkit::nats`), `abis cluster init`, shard replicas and routers (`abis serve` with
//! `[cluster] role`), each on a fixed free port so that it can be killed and restarted, each
//! killed when the cluster is dropped (also when the test fails). Logs go to files in the
//! cluster's temp directory, printed when a wait fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abis_proto::v1::abis_client::AbisClient;
use abis_testkit::nats::{free_ports, NatsCluster};
use tonic::transport::Channel;

/// One `abis serve` process that can be stopped and started again on the same port and data.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub data: PathBuf,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    fn new(dir: &Path, name: &str, port: u16, env: Vec<(String, String)>) -> Node {
        Node {
            name: name.to_owned(),
            port,
            data: dir.join(name),
            log: dir.join(format!("{name}.log")),
            env,
            child: None,
        }
    }

    /// Starts the process and waits for its "listening on" line.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the node's log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_abis"));
        cmd.current_dir(crate::support::repo_root())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--data",
            ])
            .arg(&self.data)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start abis serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        if !line.starts_with("listening on") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not start ({line:?}); its log:\n{}",
                self.name,
                tail(&self.log)
            );
        }
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (SIGKILL after 30 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process exited by itself, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What to start.
pub struct Options {
    pub nats_nodes: usize,
    pub stream_replicas: usize,
    pub shards: u32,
    pub replicas_per_shard: usize,
    pub routers: usize,
    pub replica_grace_s: u64,
    /// Appended to every NATS server's configuration (TLS, authorization).
    pub nats_extra: String,
    /// `ABIS__...` variables of every `abis` process (and of `abis cluster` commands).
    pub env: Vec<(String, String)>,
    /// Scheme of the NATS URLs (`nats` or `tls`).
    pub scheme: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nats_nodes: 3,
            stream_replicas: 3,
            shards: 3,
            replicas_per_shard: 2,
            routers: 2,
            replica_grace_s: 600,
            nats_extra: String::new(),
            env: Vec::new(),
            scheme: "nats",
        }
    }
}

pub struct Cluster {
    pub nats: NatsCluster,
    pub shards: u32,
    pub replicas_per_shard: usize,
    /// Replica `r` of shard `s` is `replicas[s * replicas_per_shard + r]`.
    pub replicas: Vec<Node>,
    pub routers: Vec<Node>,
    env: Vec<(String, String)>,
    // Last: removed after every process is gone.
    pub dir: tempfile::TempDir,
}

fn letter(r: usize) -> char {
    (b'a' + r as u8) as char
}

impl Cluster {
    /// Starts NATS, creates the cluster, starts the replicas (waiting until they serve) and the
    /// routers.
    pub fn start(nats_server: &Path, options: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let nats = NatsCluster::start(
            nats_server,
            &dir.path().join("nats"),
            options.nats_nodes,
            &options.nats_extra,
        );
        let url = nats
            .urls()
            .iter()
            .map(|u| u.replacen("nats://", &format!("{}://", options.scheme), 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut env = vec![
            ("ABIS__CLUSTER__NATS_URL".to_owned(), url),
            (
                "ABIS__LOGGING__FILTER".to_owned(),
                "warn,abis_cluster=info".to_owned(),
            ),
        ];
        env.extend(options.env.iter().cloned());
        let mut cluster = Cluster {
            nats,
            shards: options.shards,
            replicas_per_shard: options.replicas_per_shard,
            replicas: Vec::new(),
            routers: Vec::new(),
            env,
            dir,
        };
        cluster.init(
            options.shards,
            options.stream_replicas,
            options.replica_grace_s,
        );
        let n_replicas = options.shards as usize * options.replicas_per_shard;
        let ports = free_ports(n_replicas + options.routers);
        for s in 0..options.shards as usize {
            for r in 0..options.replicas_per_shard {
                let name = format!("replica-{s}{}", letter(r));
                let mut env = cluster.env.clone();
                env.push(("ABIS__CLUSTER__ROLE".into(), "replica".into()));
                env.push(("ABIS__CLUSTER__SHARD".into(), s.to_string()));
                env.push(("ABIS__SERVER__NODE".into(), name.clone()));
                let port = ports[s * options.replicas_per_shard + r];
                cluster
                    .replicas
                    .push(Node::new(cluster.dir.path(), &name, port, env));
            }
        }
        for r in 0..options.routers {
            let name = format!("router-{}", letter(r));
            let mut env = cluster.env.clone();
            env.push(("ABIS__CLUSTER__ROLE".into(), "router".into()));
            env.push(("ABIS__SERVER__NODE".into(), name.clone()));
            cluster.routers.push(Node::new(
                cluster.dir.path(),
                &name,
                ports[n_replicas + r],
                env,
            ));
        }
        for n in &mut cluster.replicas {
            n.start();
        }
        cluster.wait_serving(Duration::from_secs(60));
        for n in &mut cluster.routers {
            n.start();
        }
        cluster
    }

    /// An `abis` command with the cluster's environment.
    pub fn abis(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_abis"));
        c.current_dir(crate::support::repo_root());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `abis cluster init`, retried while JetStream elects its first leaders.
    fn init(&self, shards: u32, stream_replicas: usize, grace: u64) {
        let t0 = Instant::now();
        loop {
            let out = self
                .abis()
                .args(["cluster", "init", "--shards", &shards.to_string()])
                .args(["--replicas", &stream_replicas.to_string()])
                .args(["--replica-grace-s", &grace.to_string()])
                .output()
                .expect("run abis cluster init");
            if out.status.success() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "abis cluster init: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `abis cluster status` (retried through a NATS hiccup).
    pub fn status(&self) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let out = self
                .abis()
                .args(["cluster", "status"])
                .output()
                .expect("run abis cluster status");
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).expect("status JSON");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "abis cluster status: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The heartbeat of replica `name`, if the bucket holds one.
    pub fn heartbeat(status: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
        status["shards"].as_array()?.iter().find_map(|s| {
            s["replicas"]
                .as_array()?
                .iter()
                .find(|r| r["node"] == name)
                .map(|r| {
                    let mut r = r.clone();
                    r["shard_last"] = s["last_sequence"].clone();
                    r["trimmed_below"] = s["trimmed_below"].clone();
                    r
                })
        })
    }

    /// Waits until every running replica reports `serving` with nothing left to apply.
    pub fn wait_serving(&mut self, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            for n in self.replicas.iter_mut().chain(&mut self.routers) {
                if let Some(status) = n.exited() {
                    panic!("{} exited ({status}):\n{}", n.name, tail(&n.log));
                }
            }
            let status = self.status();
            let waiting = self.replicas.iter().filter(|n| n.is_running()).find(|n| {
                Self::heartbeat(&status, &n.name).is_none_or(|h| {
                    h["state"] != "serving" || h["lag_sequence"].as_u64() != Some(0)
                })
            });
            match waiting {
                None => return,
                Some(n) if t0.elapsed() > timeout => panic!(
                    "{} not serving after {timeout:?}: {}\n{}",
                    n.name,
                    Self::heartbeat(&status, &n.name).unwrap_or_default(),
                    tail(&n.log)
                ),
                Some(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Replica `r` of shard `s`.
    pub fn replica(&mut self, s: u32, r: usize) -> &mut Node {
        let i = s as usize * self.replicas_per_shard + r;
        &mut self.replicas[i]
    }
}

impl Drop for Cluster {
    /// When the test failed, the end of every node's log explains more than the assertion.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in self.replicas.iter().chain(&self.routers) {
                eprintln!("---- {} ----\n{}", n.name, tail(&n.log));
            }
        }
    }
}

/// A client of `node` (retried while it starts), accepting large responses.
pub async fn connect(node: &Node) -> AbisClient<Channel> {
    connect_to(node.addr()).await
}

/// A client of the server at `addr` (retried while it starts).
pub async fn connect_to(addr: String) -> AbisClient<Channel> {
    let t0 = Instant::now();
    loop {
        match AbisClient::connect(addr.clone()).await {
            Ok(c) => return c.max_decoding_message_size(64 << 20),
            Err(e) if t0.elapsed() > Duration::from_secs(20) => panic!("connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
