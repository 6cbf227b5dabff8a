//! Presence across the cluster: each node reports its session count in the
//! nodes hash (`<prefix>:nodes`, field the node's name, value `<unix ms>
//! <sessions>`) and its ids in a HyperLogLog of its own
//! (`<prefix>:ids:<node>`); `/health` reads the live nodes' reports. A
//! report that could not be written marks the node down (`health.rs`) and
//! leaves the cluster's counts unknown rather than short of this node.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::RedisBroker;
use crate::broker::{BrokerEvents, ClusterCounts};

/// How often a node reports itself, and how long a report counts.
const PRESENCE_INTERVAL: Duration = Duration::from_secs(2);
pub(super) const PRESENCE_TTL: Duration = Duration::from_secs(6);

impl RedisBroker {
    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Reports this node every [`PRESENCE_INTERVAL`]: its session count in
    /// the nodes hash, and its ids in a HyperLogLog of its own, rewritten
    /// when they changed and expiring with the node. Each outcome goes to
    /// the node's health.
    pub(super) fn report_presence(&self, events: Arc<dyn BrokerEvents>) {
        let mut con = self.commands.clone();
        let health = self.health.clone();
        let nodes_key = self.nodes_key();
        let ids_key = format!("{}:ids:{}", self.prefix, self.node);
        let node = self.node.clone();
        tokio::task::spawn_local(async move {
            let mut known = None;
            loop {
                if let Some(report) = events.presence(known).await {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    pipe.hset(
                        &nodes_key,
                        &node,
                        format!("{} {}", unix_millis(), report.sessions),
                    );
                    // Gone with the last node (`cluster` drops stale fields).
                    pipe.pexpire(&nodes_key, PRESENCE_TTL.as_millis() as i64);
                    if let Some(ids) = &report.ids {
                        pipe.del(&ids_key);
                        // PFADD with no element still creates the key.
                        pipe.cmd("PFADD").arg(&ids_key);
                        for chunk in ids.chunks(1000) {
                            let names: Vec<&str> = chunk.iter().map(|id| id.as_str()).collect();
                            pipe.cmd("PFADD").arg(&ids_key).arg(names);
                        }
                    }
                    pipe.pexpire(&ids_key, PRESENCE_TTL.as_millis() as i64);
                    let replies: Result<Vec<redis::Value>, _> = pipe.query_async(&mut con).await;
                    health.set_presence_written(replies.is_ok());
                    match &replies {
                        Ok(_) => {
                            health.write_succeeded();
                        }
                        Err(e) => {
                            health.write_failed("a presence report failed", &e.to_string());
                        }
                    }
                    // The ids are rewritten on the next report if this one
                    // failed or found them gone (Redis restarted empty).
                    known = match replies.as_deref() {
                        Ok([.., redis::Value::Int(1)]) => Some(report.generation),
                        _ => None,
                    };
                }
                tokio::time::sleep(PRESENCE_INTERVAL).await;
            }
        });
    }

    /// The nodes that reported in the last [`PRESENCE_TTL`], their sessions
    /// in all, and the union of their ids; `None` when Redis cannot be
    /// read, or this node's last report could not be written (the counts
    /// would leave it out: a cluster of one would read `nodes: 0`).
    /// Forgets the reports of nodes gone longer.
    pub(super) fn cluster_counts(&self) -> BoxFuture<'static, Option<ClusterCounts>> {
        if !self.health.presence_written() {
            return Box::pin(std::future::ready(None));
        }
        let mut con = self.commands.clone();
        let nodes_key = self.nodes_key();
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let nodes: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&nodes_key)
                .query_async(&mut con)
                .await
                .ok()?;
            let now = unix_millis();
            let mut live = Vec::new();
            let mut sessions = 0;
            for (node, report) in nodes {
                let mut parts = report.split(' ');
                let at: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                if now.saturating_sub(at) > PRESENCE_TTL.as_millis() as u64 {
                    // Gone: forget it (another reader may race us; harmless).
                    let _: Result<(), _> = redis::cmd("HDEL")
                        .arg(&nodes_key)
                        .arg(&node)
                        .query_async(&mut con)
                        .await;
                    continue;
                }
                sessions += parts
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                live.push(format!("{prefix}:ids:{node}"));
            }
            let ids: usize = if live.is_empty() {
                0
            } else {
                redis::cmd("PFCOUNT")
                    .arg(&live)
                    .query_async(&mut con)
                    .await
                    .ok()?
            };
            Some(ClusterCounts {
                nodes: live.len(),
                sessions,
                ids,
            })
        })
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
