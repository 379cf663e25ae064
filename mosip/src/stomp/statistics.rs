//! The depth of a queue, asked of ActiveMQ's statistics broker plugin over STOMP: a message to
//! `ActiveMQ.Statistics.Destination.<queue>` with a `reply-to` is answered by the broker with a
//! map of the queue's counters, which STOMP delivers as `jms-map-xml`.
//!
//! Why this and not the broker's REST API (Jolokia) or JMX: MOSIP already gives its ABIS the
//! broker's message port and credentials, not its web console or JMX port; the plugin is one line
//! of `activemq.xml` (`<plugins><statisticsBrokerPlugin/></plugins>`) and answers on the
//! connection abis already speaks. Its map conversion needs XStream on the broker's classpath
//! (Debian's `activemq` package leaves it out; `libxstream-java`'s jar in the broker's `lib/`
//! puts it back). A broker without the plugin never answers: [`queue_statistics`] gives up
//! after its timeout, and its request, sent non-persistent with an expiry, does not stay behind.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::client::{Client, ClientError, Config, Messages};
use super::frame::Frame;

/// Where the plugin listens for questions about one queue.
const PREFIX: &str = "ActiveMQ.Statistics.Destination.";
/// How long an unanswered question stays in a broker without the plugin.
const QUESTION_TTL: Duration = Duration::from_secs(60);
/// The counters of the plugin's answer are a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// A queue's counters as the broker keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatistics {
    /// Messages stored and not yet acknowledged: waiting, and delivered to consumers that have
    /// not acknowledged them yet.
    pub size: u64,
    /// Delivered to consumers and not yet acknowledged.
    pub inflight: u64,
    pub consumers: u64,
}

/// Why the statistics are not known.
#[derive(Debug, Error)]
pub enum StatisticsError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no answer from the broker's statistics plugin within {0:?} (is statisticsBrokerPlugin enabled?)")]
    Timeout(Duration),
    #[error("the statistics answer is not a jms-map-xml map: {0}")]
    Map(String),
    #[error("the statistics answer has no {0:?} counter")]
    Missing(&'static str),
}

/// Asks the broker about `queue` on a connection of its own, waiting at most `timeout` for the
/// answer; the connection is closed whatever the outcome.
pub async fn queue_statistics(
    config: &Config,
    queue: &str,
    timeout: Duration,
) -> Result<QueueStatistics, StatisticsError> {
    let (client, mut messages) = Client::connect(config).await?;
    let asked = tokio::time::timeout(timeout, ask(&client, &mut messages, queue)).await;
    client.abort().await;
    asked.map_err(|_| StatisticsError::Timeout(timeout))?
}

async fn ask(
    client: &Client,
    messages: &mut Messages,
    queue: &str,
) -> Result<QueueStatistics, StatisticsError> {
    let reply_to = "/temp-queue/abis-statistics";
    let subscribe = Frame::new("SUBSCRIBE")
        .header("destination", reply_to)
        .header("id", "statistics")
        .header("ack", "auto")
        .header("transformation", "jms-map-xml");
    client.request(subscribe).await?;
    let expires = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(QUESTION_TTL);
    let question = Frame::new("SEND")
        .header("destination", format!("/queue/{PREFIX}{queue}"))
        .header("reply-to", reply_to)
        .header("persistent", "false")
        .header("expires", expires.as_millis().to_string());
    client.request(question).await?;
    let wanted = format!("queue://{queue}");
    loop {
        let message = messages.next().await.ok_or(ClientError::Closed)?;
        // A topic of the same name gets its own answer: keep the queue's.
        let map = parse_map(&message.body)?;
        if map.name.as_deref() == Some(wanted.as_str()) {
            return map.statistics();
        }
    }
}

/// The entries of a `jms-map-xml` map that matter here.
#[derive(Debug, Default)]
struct Map {
    name: Option<String>,
    size: Option<u64>,
    inflight: Option<u64>,
    consumers: Option<u64>,
}

impl Map {
    fn statistics(&self) -> Result<QueueStatistics, StatisticsError> {
        Ok(QueueStatistics {
            size: self.size.ok_or(StatisticsError::Missing("size"))?,
            inflight: self
                .inflight
                .ok_or(StatisticsError::Missing("inflightCount"))?,
            consumers: self
                .consumers
                .ok_or(StatisticsError::Missing("consumerCount"))?,
        })
    }
}

/// Reads XStream's map XML: `<map><entry><string>size</string><long>3</long></entry>...</map>`.
fn parse_map(body: &[u8]) -> Result<Map, StatisticsError> {
    if body.len() > MAX_ANSWER {
        return Err(StatisticsError::Map(format!("{} bytes", body.len())));
    }
    let text = std::str::from_utf8(body).map_err(|e| StatisticsError::Map(e.to_string()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| StatisticsError::Map(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "map" {
        return Err(StatisticsError::Map(format!(
            "root <{}>",
            root.tag_name().name()
        )));
    }
    let mut map = Map::default();
    for entry in root.children().filter(|n| n.has_tag_name("entry")) {
        let mut values = entry.children().filter(roxmltree::Node::is_element);
        let (Some(key), Some(value)) = (values.next(), values.next()) else {
            continue;
        };
        let value = value.text().unwrap_or_default().trim();
        let count = || value.parse::<u64>().ok();
        match key.text().unwrap_or_default() {
            "destinationName" => map.name = Some(value.to_string()),
            "size" => map.size = count(),
            "inflightCount" => map.inflight = count(),
            "consumerCount" => map.consumers = count(),
            _ => {}
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ANSWER: &str = "<map>\n  <entry>\n    <string>dequeueCount</string>\n    <long>0</long>\n  </entry>\n  <entry>\n    <string>size</string>\n    <long>1001</long>\n  </entry>\n  <entry>\n    <string>destinationName</string>\n    <string>queue://mosip-to-abis1</string>\n  </entry>\n  <entry>\n    <string>inflightCount</string>\n    <long>1</long>\n  </entry>\n  <entry>\n    <string>consumerCount</string>\n    <long>1</long>\n  </entry>\n  <entry>\n    <string>averageEnqueueTime</string>\n    <double>0.0</double>\n  </entry>\n</map>";

    #[test]
    fn reads_the_plugins_map() {
        let map = parse_map(ANSWER.as_bytes()).unwrap();
        assert_eq!(map.name.as_deref(), Some("queue://mosip-to-abis1"));
        assert_eq!(
            map.statistics().unwrap(),
            QueueStatistics {
                size: 1001,
                inflight: 1,
                consumers: 1
            }
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let no_size = ANSWER.replace("<string>size</string>", "<string>other</string>");
        let err = parse_map(no_size.as_bytes()).unwrap().statistics();
        assert!(matches!(err, Err(StatisticsError::Missing("size"))));
        assert!(matches!(
            parse_map(b"<list/>"),
            Err(StatisticsError::Map(_))
        ));
        assert!(matches!(
            parse_map(b"\xff\xfe"),
            Err(StatisticsError::Map(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_answer(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_map(&body).map(|m| m.statistics());
        }

        #[test]
        fn never_panics_on_mangled_maps(cut in 0..ANSWER.len(), junk in "[<>a-z/0-9 ]{0,20}") {
            let mut text = ANSWER.as_bytes()[..cut].to_vec();
            text.extend_from_slice(junk.as_bytes());
            text.extend_from_slice(&ANSWER.as_bytes()[cut..]);
            let _ = parse_map(&text).map(|m| m.statistics());
        }
    }
}
