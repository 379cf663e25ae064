//! Headless Chromium for the examiner page's browser test: Debian's `chromium` and
//! `chromium-driver` (installed by `scripts/setup.sh`), a `chromedriver` started on a free
//! loopback port and killed when dropped (also when the test fails), and the few WebDriver
//! commands the test needs, as plain JSON over [`crate::http`].

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http;

/// The `chromium` and `chromedriver` binaries, or `None` (skipped, or a failure under
/// `ABIS_REQUIRE_DATA=1`).
#[track_caller]
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    // The browser itself before Debian's `/usr/bin/chromium` wrapper script, whose shell
    // redirections write to /dev/null (see `crate::log_to`).
    let find = |name: &str| {
        ["/usr/lib/chromium", "/usr/bin"]
            .iter()
            .map(|d| PathBuf::from(d).join(name))
            .find(|p| p.is_file())
    };
    let found = find("chromium").zip(find("chromedriver"));
    crate::require(
        found,
        "chromium and chromedriver",
        "run `make setup` (Debian packages chromium and chromium-driver)",
    )
}

/// A running chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    /// Chromium's profile and scratch directory (its TMPDIR too), removed after the driver.
    _scratch: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| http::request(&self.addr, "DELETE", &path, &[], b""));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width` x `height` pixels.
    pub fn start(chromium: &PathBuf, chromedriver: &PathBuf, width: u32, height: u32) -> Browser {
        let port = crate::nats::free_ports(1)[0];
        let scratch = tempfile::tempdir().expect("a scratch directory for Chromium");
        // Chromium and chromedriver leave profiles and shared-memory files in TMPDIR: ours.
        // Both write to a log in the scratch directory: without `--enable-chrome-logs` the
        // driver sends Chromium's output to /dev/null (see `crate::log_to` for why not there).
        let log = scratch.path().join("chromedriver.log");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--enable-chrome-logs")
            .env("TMPDIR", scratch.path())
            .stdin(Stdio::null())
            .stdout(crate::log_to(&log))
            .stderr(crate::log_to(&log))
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", scratch.path().join("profile").display())]
            }
        }}});
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _scratch: scratch,
        };
        let v = browser.call("POST", "/session", Some(caps));
        browser.session = v["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    /// One WebDriver command; panics with the driver's message on an error. Returns `value`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("Content-Type", "application/json")];
        let a = http::request(&self.addr, method, path, &headers, body.as_bytes());
        let v: Value = serde_json::from_slice(&a.body).expect("WebDriver JSON");
        assert!(
            a.status < 400,
            "WebDriver {method} {path}: {} {v}",
            a.status
        );
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        );
    }

    /// Runs `script` in the page (`return ...;` gives the result).
    pub fn script(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.call("POST", &self.session_path("/execute/sync"), Some(body))
    }

    /// The element id of the first match of a CSS selector.
    pub fn find(&self, css: &str) -> String {
        let body = json!({ "using": "css selector", "value": css });
        let v = self.call("POST", &self.session_path("/element"), Some(body));
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_string()
    }

    pub fn click(&self, element: &str) {
        let path = self.session_path(&format!("/element/{element}/click"));
        self.call("POST", &path, Some(json!({})));
    }

    pub fn type_into(&self, element: &str, text: &str) {
        let path = self.session_path(&format!("/element/{element}/value"));
        self.call("POST", &path, Some(json!({ "text": text })));
    }

    /// Presses one key in the page (keyboard shortcuts) through the Actions API.
    pub fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.call("POST", &self.session_path("/actions"), Some(actions));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.session_path("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", &self.session_path("/screenshot"), None);
        decode_base64(v.as_str().expect("base64 screenshot"))
    }

    /// Waits until `script` returns `true` (polls; panics after `limit`).
    pub fn wait_for(&self, script: &str, limit: Duration) {
        let started = Instant::now();
        while self.script(script) != Value::Bool(true) {
            assert!(started.elapsed() < limit, "never true: {script}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("screenshot base64")
}
