//! Who served a call: which replica answered for each shard, and the log position of a write.
//! The router returns it with every answer; the server's call scope merges it and the audit
//! entry prints it once (`router-1 [s0:replica-a s1:replica-c log:1234]`).

use std::collections::BTreeMap;
use std::fmt;

/// Which replica served which shard of a call (and the log position of a write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Shard → replica, in shard order.
    replicas: BTreeMap<u32, String>,
    log: Option<u64>,
}

impl Served {
    /// `node` answered for `shard` (a later answer for the same shard replaces it).
    pub fn replica(&mut self, shard: u32, node: &str) {
        self.replicas.insert(shard, node.to_owned());
    }

    /// The write was stored at `position` of the log.
    pub fn log(&mut self, position: u64) {
        self.log = Some(position);
    }

    /// Adds what `other` says, its entries replacing this one's for the same shard.
    pub fn merge(&mut self, other: Served) {
        self.replicas.extend(other.replicas);
        if other.log.is_some() {
            self.log = other.log;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty() && self.log.is_none()
    }
}

/// `s<shard>:<node>` per shard in shard order, then `log:<position>`, space-separated.
impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (shard, node) in &self.replicas {
            write!(f, "{sep}s{shard}:{node}")?;
            sep = " ";
        }
        if let Some(p) = self.log {
            write!(f, "{sep}log:{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_names_shards_in_order_then_the_log_position() {
        let mut s = Served::default();
        assert!(s.is_empty());
        s.replica(10, "replica-c");
        s.replica(2, "replica-a");
        assert_eq!(s.to_string(), "s2:replica-a s10:replica-c");
        let mut later = Served::default();
        later.replica(2, "replica-b");
        later.log(42);
        s.merge(later);
        assert_eq!(s.to_string(), "s2:replica-b s10:replica-c log:42");
        s.merge(Served::default());
        assert_eq!(s.to_string(), "s2:replica-b s10:replica-c log:42");
    }
}
