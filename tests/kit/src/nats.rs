//! Real `nats-server` processes for the cluster tests: a JetStream cluster of N nodes on
//! 127.0.0.1 with free ports and its files in a directory the test owns, SIGKILLed when dropped
//! (also when the test fails), and single nodes can be killed and restarted to inject faults.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server of a [`NatsCluster`].
pub struct NatsNode {
    pub name: String,
    pub client_port: u16,
    pub route_port: u16,
    pub http_port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of `nats-server` processes (or one stand-alone server).
pub struct NatsCluster {
    binary: PathBuf,
    dir: PathBuf,
    pub nodes: Vec<NatsNode>,
}

/// `n` distinct free TCP ports on 127.0.0.1 (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

impl NatsCluster {
    /// Writes the configuration of `nodes` servers under `dir` (with `extra` appended to each:
    /// `authorization { ... }`, `tls { ... }`), starts them and waits until JetStream is ready
    /// on all of them (panics after 30 s, naming the node and what it reported).
    pub fn start(binary: &Path, dir: &Path, nodes: usize, extra: &str) -> NatsCluster {
        assert!(nodes >= 1, "at least one server");
        std::fs::create_dir_all(dir).expect("create the NATS directory");
        let ports = free_ports(3 * nodes);
        let mut list = Vec::new();
        for i in 0..nodes {
            list.push(NatsNode {
                name: format!("n{}", i + 1),
                client_port: ports[3 * i],
                route_port: ports[3 * i + 1],
                http_port: ports[3 * i + 2],
                conf: dir.join(format!("n{}.conf", i + 1)),
                child: None,
            });
        }
        let routes: Vec<String> = list
            .iter()
            .map(|n| format!("\"nats-route://127.0.0.1:{}\"", n.route_port))
            .collect();
        for node in &list {
            let store = dir.join(&node.name);
            std::fs::create_dir_all(&store).expect("create a JetStream directory");
            let cluster = if nodes > 1 {
                format!(
                    "cluster {{\n  name: \"abis-test\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                    node.route_port,
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let conf = format!(
                "server_name: \"{name}\"\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{http}\"\n\
                 log_file: \"{log}\"\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 64MB\n  max_file_store: 4GB\n}}\n\
                 {cluster}{extra}\n",
                name = node.name,
                client = node.client_port,
                http = node.http_port,
                log = dir.join(format!("{}.log", node.name)).display(),
                store = store.display(),
            );
            std::fs::write(&node.conf, conf).expect("write the NATS configuration");
        }
        let mut cluster = NatsCluster {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            nodes: list,
        };
        for i in 0..nodes {
            cluster.start_node(i);
        }
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    /// Starts (or restarts) server `i`; does not wait for it.
    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} is already running", node.name);
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(crate::log_to(&node.conf.with_extension("out")))
            .stderr(crate::log_to(&node.conf.with_extension("out")))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        node.child = Some(child);
    }

    /// SIGKILLs server `i` and reaps it.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether server `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// `nats://127.0.0.1:PORT` of every server, comma-separated (what `[cluster] nats_url`
    /// takes).
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// The directory holding configurations, logs and JetStream files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until every running server answers `/healthz?js-server-only=true` with ok and (in a
    /// cluster) knows the JetStream meta leader; panics after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            let mut waiting = None;
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                let health =
                    http_get(n.http_port, "/healthz?js-server-only=true").unwrap_or_default();
                let leader = if self.nodes.len() > 1 {
                    http_get(n.http_port, "/jsz")
                        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["meta_cluster"]["leader"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                } else {
                    "standalone".to_owned()
                };
                if !health.contains("ok") || leader.is_empty() {
                    waiting = Some(format!(
                        "{}: healthz {:?}, meta leader {leader:?}",
                        n.name,
                        health.trim()
                    ));
                    break;
                }
            }
            match waiting {
                None => return,
                Some(w) if t0.elapsed() > timeout => {
                    panic!("NATS not ready after {timeout:?}: {w}")
                }
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

/// The body of a plain HTTP/1.0 GET on the monitoring port, if it answers within 2 s.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}
