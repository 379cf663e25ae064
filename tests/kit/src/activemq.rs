//! A real ActiveMQ broker (Debian's `activemq` package, 5.17) for the MOSIP adapter's tests: run
//! from the package's jar with a configuration and KahaDB store in a directory the test owns,
//! only a STOMP connector on a free 127.0.0.1 port (no OpenWire, no web console, no JMX), a
//! dead-letter queue `DLQ.<queue>` per queue, and the statistics broker plugin (queue depths on
//! request), with XStream (Debian's `libxstream-java`) on its classpath for the plugin's map
//! answers, which Debian's broker package leaves out. SIGKILLed when dropped, also when the test
//! fails; [`ActiveMq::restart`] kills and starts it again on the same port and store.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats::free_ports;
use crate::require;

/// Where Debian installs the broker.
const HOME: &str = "/usr/share/activemq";
/// Where Debian's `libxstream-java` installs its jar.
const XSTREAM: &str = "/usr/share/java/xstream.jar";

/// The broker's jar and a Java runtime, or a skip (see the crate's rule).
#[track_caller]
pub fn activemq_installed() -> Option<(PathBuf, PathBuf)> {
    let home = std::env::var_os("ABIS_ACTIVEMQ_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(HOME));
    let jar = home.join("bin/activemq.jar");
    let java = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("java"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    let found = (jar.is_file())
        .then_some(())
        .and(java)
        .map(|java| (home, java));
    require(
        found,
        "the ActiveMQ broker (bin/activemq.jar and java)",
        "run `make setup` (Debian package activemq) or set ABIS_ACTIVEMQ_HOME",
    )
}

/// One running broker.
pub struct ActiveMq {
    home: PathBuf,
    java: PathBuf,
    dir: PathBuf,
    pub stomp_port: u16,
    child: Option<Child>,
    /// Whether the statistics plugin can answer (XStream found).
    statistics: bool,
}

impl ActiveMq {
    /// Starts a broker with its files under `dir`; `None` (skipped) when the package is
    /// missing; panics when it does not accept connections within 60 s.
    #[track_caller]
    pub fn start(dir: &Path) -> Option<ActiveMq> {
        let (home, java) = activemq_installed()?;
        std::fs::create_dir_all(dir).expect("create the broker directory");
        let mut broker = ActiveMq {
            home,
            java,
            dir: dir.to_path_buf(),
            stomp_port: free_ports(1)[0],
            child: None,
            statistics: false,
        };
        std::fs::write(dir.join("activemq.xml"), broker.config()).expect("write activemq.xml");
        // The broker adds `<base>/lib` to its classpath.
        if Path::new(XSTREAM).is_file() {
            std::fs::create_dir_all(dir.join("lib")).expect("create the broker's lib");
            std::os::unix::fs::symlink(XSTREAM, dir.join("lib/xstream.jar"))
                .expect("link XStream into the broker's lib");
            broker.statistics = true;
        }
        broker.launch();
        Some(broker)
    }

    /// Whether the statistics plugin answers (a skip, see the crate's rule, when it cannot).
    #[track_caller]
    pub fn statistics_ready(&self) -> bool {
        let found = self.statistics.then_some(());
        require(
            found,
            "XStream for ActiveMQ's statistics plugin (/usr/share/java/xstream.jar)",
            "run `make setup` (Debian package libxstream-java)",
        )
        .is_some()
    }

    /// `host:port` of the STOMP connector.
    pub fn stomp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.stomp_port)
    }

    fn config(&self) -> String {
        let data = self.dir.join("data");
        format!(
            r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="abis-test"
          dataDirectory="{data}" persistent="true" schedulerSupport="false">
    <plugins><statisticsBrokerPlugin/></plugins>
    <destinationPolicy><policyMap><policyEntries>
      <policyEntry queue=">"><deadLetterStrategy>
        <individualDeadLetterStrategy queuePrefix="DLQ." useQueueForQueueMessages="true"/>
      </deadLetterStrategy></policyEntry>
    </policyEntries></policyMap></destinationPolicy>
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}?transport.tcpNoDelay=true"/>
    </transportConnectors>
  </broker>
</beans>
"#,
            data = data.display(),
            port = self.stomp_port
        )
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let log = std::fs::File::create(self.dir.join("broker.log")).expect("create broker.log");
        let d = |name: &str, value: &Path| format!("-D{name}={}", value.display());
        let child = Command::new(&self.java)
            .args(["-Xms64m", "-Xmx256m"])
            .arg(d("activemq.home", &self.home))
            .arg(d("activemq.base", &self.dir))
            .arg(d("activemq.conf", &self.dir))
            .arg(d("activemq.data", &self.dir.join("data")))
            .arg("-jar")
            .arg(self.home.join("bin/activemq.jar"))
            .arg("start")
            .arg(format!(
                "xbean:file:{}",
                self.dir.join("activemq.xml").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start ActiveMQ: {e}"));
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60));
    }

    fn wait_ready(&self, timeout: Duration) {
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.stomp_port)).is_err() {
            assert!(
                t0.elapsed() < timeout,
                "ActiveMQ did not open its STOMP port in {timeout:?}; see {}",
                self.dir.join("broker.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILLs the broker (its store keeps what it had acknowledged).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for ActiveMq {
    fn drop(&mut self) {
        self.kill();
    }
}
