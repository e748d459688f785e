//! Redis storage: snapshots, the operation log and an instance lease in a Redis server, so the
//! data can live outside the container and several emulators can share one Redis (each under
//! its own key prefix).
//!
//! # Keys (all under the configured prefix `P`, default `localzure:`)
//! ```text
//! P format                 string  the key layout's format version (schema::REDIS_KEYS;
//!                                  absent: version 1, written before it was explicit)
//! P lease                  string  the holder ("pid <n> host <h> id <uuid>"), PX LEASE_TTL_MS
//! P wal                    stream  the operation log: entry id "<lsn>-0", field "p" = record
//! P wal:last               string  the highest LSN ever written to the stream
//! P snap:meta              hash    lsn, taken_at of the last snapshot (absent = no snapshot)
//! P snap:state             string  the broker-wide state (opaque JSON)
//! P snap:entities          hash    entity key string -> {"key":EntityKey,"data":<record>}
//! P snap:msgs:<entity key> hash    "a<seq>" (active) / "d<seq>" (dead-letter) -> <record>
//! ```
//! Entity key strings are [`entity_key_string`] (lowercased, percent-encoded), so they hold no
//! glob characters and one topic's subscriptions share a prefix.
//!
//! # Guarantees
//! - **Snapshot delta**: one `MULTI`/`EXEC` under `WATCH P lease`; only changed fields and keys
//!   are written. A `full` delta first deletes every `P snap:*` key (found with `SCAN`, never
//!   `FLUSHDB`: other prefixes share the database). If another instance took the lease
//!   meanwhile, `EXEC` aborts and nothing is written.
//! - **Operation log**: [`RedisOpLog`] buffers appends; one flusher thread (running its own
//!   current-thread tokio runtime with an async multiplexed connection) sends every buffered
//!   record in one Lua script call per batch (group commit: one round trip answers every
//!   request waiting on that batch). The script checks the lease first, skips LSNs at or below
//!   `P wal:last` (so a batch retried after a lost reply is not added twice) and trims the
//!   stream through the last snapshot's LSN. While Redis is unreachable the batch stays
//!   buffered, waiters fail (503 on the wire, `/health` unhealthy) and the flusher reconnects
//!   and retries every [`crate::storage::durable::RETRY_INTERVAL`].
//! - **Durability** is Redis's: a record is "durable" once Redis acknowledged it. To survive a
//!   crash of Redis itself, run it with `appendonly yes` and `appendfsync always`.
//! - **Lease**: `SET P lease <id> NX PX` at start, renewed every `LEASE_TTL_MS / 5`, deleted on
//!   clean shutdown. A live holder makes a second instance refuse to start
//!   ([`StorageError::InUse`]). A holder on the same host whose process no longer exists (or
//!   has our own PID: the previous life of this container) is stale and taken over at once;
//!   otherwise a crashed holder's lease expires after `LEASE_TTL_MS`.

use super::journal::{Records, Replay};
use super::keys::{entity_key_string, subscriptions_prefix};
use super::oplog::OpLog;
use super::schema::REDIS_KEYS;
use super::{
    Backend, BackendStats, Delta, EntityKey, EntityRecord, MessageRecord, Snapshot, StorageError,
};
use crate::storage::durable::{run_flusher, Buffer, Durability, DurableState, FlushState, Flusher};
use crate::storage::settings::RedisConfig;
use crate::sync::lock;
use ::redis::{Client, Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a lease lives without renewal: a crashed instance blocks a successor this long.
pub const LEASE_TTL_MS: u64 = 10_000;
/// Connecting to Redis gives up after this long (then the caller retries or fails).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A single reply may take this long (large snapshots are one `EXEC`).
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many records go into one log batch.
pub(super) const MAX_BATCH_RECORDS: usize = 4096;
/// At most about this many payload bytes go into one log batch.
pub(super) const MAX_BATCH_BYTES: usize = 8 << 20;
/// Messages are loaded with this many `HGETALL`s per pipeline.
pub(super) const LOAD_PIPELINE: usize = 64;

/// This process's identity in leases: `pid <n> host <name> id <uuid>` (the PID first, worded
/// as the data-directory lock file is).
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        format!(
            "pid {} host {} id {}",
            std::process::id(),
            host_name(),
            uuid::Uuid::new_v4()
        )
    })
}

pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Whether a lease holder string names a process on this host that cannot be alive: its PID
/// no longer exists, or it is our own PID (the previous life of a restarted container).
pub(super) fn holder_is_stale(holder: &str) -> bool {
    let words: Vec<&str> = holder.split_whitespace().collect();
    let field = |name: &str| {
        words
            .windows(2)
            .find(|w| w[0] == name)
            .map(|w| w[1].to_string())
    };
    let (Some(host), Some(pid)) = (field("host"), field("pid")) else {
        return false;
    };
    if host != host_name() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    pid == std::process::id() || !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Where the data lives: the server, the database and the key prefix.
#[derive(Clone, Debug)]
pub struct RedisTarget {
    client: Client,
    prefix: String,
    display: String,
}

impl RedisTarget {
    /// Builds the connection settings from the configuration (no connection is made).
    pub fn from_config(cfg: &RedisConfig) -> Result<Self, StorageError> {
        let display = format!(
            "redis://{}:{}/{} (prefix {})",
            cfg.host, cfg.port, cfg.db, cfg.prefix
        );
        let mut settings = RedisConnectionInfo::default().set_db(cfg.db);
        if let Some(pw) = cfg.password.as_deref().filter(|p| !p.is_empty()) {
            settings = settings.set_password(pw);
        }
        let info = ConnectionAddr::Tcp(cfg.host.clone(), cfg.port)
            .into_connection_info()
            .map(|i| i.set_redis_settings(settings))
            .and_then(Client::open)
            .map_err(|e| StorageError::Other(format!("bad Redis settings {display}: {e}")))?;
        Ok(RedisTarget {
            client: info,
            prefix: cfg.prefix.clone(),
            display,
        })
    }

    /// `prefix ‖ suffix`.
    fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.prefix, suffix)
    }

    /// A `SCAN MATCH` pattern for every key starting with `prefix ‖ suffix`.
    fn pattern(&self, suffix: &str) -> String {
        let mut p = String::new();
        for c in self.prefix.chars().chain(suffix.chars()) {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('*');
        p
    }

    fn err(&self, e: ::redis::RedisError) -> StorageError {
        StorageError::Other(format!("Redis {}: {e}", self.display))
    }

    /// A blocking connection with connect and I/O timeouts.
    fn connect(&self) -> Result<Connection, StorageError> {
        let con = self
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| self.err(e))?;
        con.set_read_timeout(Some(RESPONSE_TIMEOUT))
            .and_then(|_| con.set_write_timeout(Some(RESPONSE_TIMEOUT)))
            .map_err(|e| self.err(e))?;
        Ok(con)
    }

    fn scan(&self, con: &mut Connection, suffix: &str) -> Result<Vec<String>, StorageError> {
        let pattern = self.pattern(suffix);
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(con)
                .map_err(|e| self.err(e))?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    fn in_use(&self, holder: String) -> StorageError {
        StorageError::InUse {
            path: PathBuf::from(self.display.clone()),
            holder,
        }
    }
}

mod lease;
mod log;
mod snapshot;
mod testkit;

pub use lease::RedisLease;
pub use log::RedisOpLog;
pub use snapshot::RedisBackend;
#[doc(hidden)]
pub use testkit::TestRedis;

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, msg, queue, sub, topic};
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let redis = TestRedis::start(dir.path());
        let cfg = redis.config("conf:");
        testkit::conformance(&|| Box::new(RedisBackend::open(&cfg.redis).unwrap()));
    }

    /// The key layout's version: written with every snapshot, absent means version 1 (data
    /// written before it was explicit), a newer one refuses the open naming both versions.
    #[test]
    fn newer_key_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let redis = TestRedis::start(dir.path());
        let cfg = redis.config("v:");
        let mut con = ::redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port))
            .unwrap()
            .get_connection()
            .unwrap();
        let format = |con: &mut Connection| -> Option<i64> {
            ::redis::cmd("GET").arg("v:format").query(con).unwrap()
        };
        let delta = Delta {
            full: true,
            entity_upserts: vec![testkit::entity(&queue("q"), "{}")],
            lsn: 1,
            taken_at: 1,
            ..Delta::default()
        };
        RedisBackend::open(&cfg.redis)
            .unwrap()
            .apply(&delta)
            .unwrap();
        assert_eq!(format(&mut con), Some(REDIS_KEYS.current));
        let _: () = ::redis::cmd("DEL").arg("v:format").query(&mut con).unwrap();
        let legacy = RedisBackend::open(&cfg.redis)
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(legacy.entities.len(), 1);
        let _: () = ::redis::cmd("SET")
            .arg("v:format")
            .arg(REDIS_KEYS.current + 1)
            .query(&mut con)
            .unwrap();
        match RedisBackend::open(&cfg.redis) {
            Err(e @ StorageError::SchemaTooNew { .. }) => {
                let text = e.to_string();
                assert!(text.contains("v:format"), "{text}");
                assert!(
                    text.contains(&format!("version {}", REDIS_KEYS.current + 1)),
                    "{text}"
                );
                assert!(
                    text.contains(&format!("({})", REDIS_KEYS.current)),
                    "{text}"
                );
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    /// Prefixes are independent: a full wipe of one leaves another's keys alone.
    #[test]
    fn prefixes_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let redis = TestRedis::start(dir.path());
        let (a, b) = (redis.config("a:"), redis.config("a:b:"));
        let delta = |full| Delta {
            full,
            entity_upserts: vec![testkit::entity(&queue("q"), "{}")],
            message_upserts: vec![msg(&queue("q"), false, 1)],
            lsn: 1,
            taken_at: 1,
            ..Delta::default()
        };
        RedisBackend::open(&b.redis)
            .unwrap()
            .apply(&delta(true))
            .unwrap();
        RedisBackend::open(&a.redis)
            .unwrap()
            .apply(&delta(true))
            .unwrap();
        RedisBackend::open(&a.redis).unwrap().purge().unwrap();
        assert!(RedisBackend::open(&a.redis)
            .unwrap()
            .load()
            .unwrap()
            .is_none());
        let kept = RedisBackend::open(&b.redis)
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!((kept.entities.len(), kept.messages.len()), (1, 1));
    }

    /// Deleting a topic deletes its subscriptions and their messages, and only those.
    #[test]
    fn topic_delete_cascades() {
        let dir = tempfile::tempdir().unwrap();
        let redis = TestRedis::start(dir.path());
        let cfg = redis.config("t:");
        let mut be = RedisBackend::open(&cfg.redis).unwrap();
        let (t, s, other) = (topic("T"), sub("T", "s"), sub("T2", "s"));
        be.apply(&Delta {
            full: true,
            entity_upserts: vec![
                testkit::entity(&t, "{}"),
                testkit::entity(&s, "{}"),
                testkit::entity(&other, "{}"),
            ],
            message_upserts: vec![msg(&s, false, 1), msg(&s, true, 2), msg(&other, false, 3)],
            lsn: 1,
            taken_at: 1,
            ..Delta::default()
        })
        .unwrap();
        be.apply(&Delta {
            entity_deletes: vec![t.clone()],
            lsn: 2,
            taken_at: 2,
            ..Delta::default()
        })
        .unwrap();
        let snap = be.load().unwrap().unwrap();
        assert_eq!(snap.entities.len(), 1);
        assert_eq!(snap.messages.len(), 1);
        assert_eq!(snap.messages[0].key.entity, other);
    }

    /// The log: appends are durable after one round trip, replayed on reopen, trimmed after a
    /// snapshot; while Redis is away waiters fail, and the buffered records land afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oplog_group_commit_replay_and_outage() {
        let dir = tempfile::tempdir().unwrap();
        let mut redis = TestRedis::start_durable(dir.path());
        let cfg = redis.config("log:");
        let (log, replay) = RedisOpLog::open(&cfg.redis, 1).await.unwrap();
        assert!(replay.records.is_empty());
        let lsns: Vec<u64> = (0..100)
            .map(|i| log.append(format!("r{i}").into()))
            .collect();
        assert_eq!(lsns, (1..=100).collect::<Vec<_>>());
        log.wait_durable(100).await.unwrap();
        log.truncate_through(40).unwrap();
        let l = log.append(b"r100".to_vec());
        log.wait_durable(l).await.unwrap();
        redis.kill();
        let lost = log.append(b"during".to_vec());
        assert!(log.wait_durable(lost).await.is_err());
        assert!(log.health().is_err());
        redis.restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while log.health().is_err() {
            assert!(std::time::Instant::now() < deadline, "log did not recover");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        log.wait_durable(lost).await.unwrap();
        log.close();
        drop(log);
        let (log2, replay) = RedisOpLog::open(&cfg.redis, 1).await.unwrap();
        let got: Vec<u64> = replay.records.iter().map(|r| r.0).collect();
        assert_eq!(got, (41..=102).collect::<Vec<_>>());
        assert_eq!(replay.records.last().unwrap().1, b"during");
        assert_eq!(log2.append(Vec::new()), 103);
    }

    /// A second lease on a held prefix is refused; after release it is granted.
    #[test]
    fn lease_refuses_a_live_holder() {
        let dir = tempfile::tempdir().unwrap();
        let redis = TestRedis::start(dir.path());
        let cfg = redis.config("lease:");
        // Simulate another live process holding it.
        let mut con = Client::open(format!("redis://127.0.0.1:{}/", redis.port))
            .unwrap()
            .get_connection()
            .unwrap();
        ::redis::cmd("SET")
            .arg("lease:lease")
            .arg("pid 1 host elsewhere id x")
            .arg("PX")
            .arg(60_000)
            .exec(&mut con)
            .unwrap();
        let err = RedisLease::acquire(&cfg.redis).unwrap_err();
        assert!(matches!(err, StorageError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("pid 1 host elsewhere"), "{err}");
        // Writes are fenced too.
        let e = RedisBackend::open(&cfg.redis)
            .unwrap()
            .apply(&Delta::default())
            .unwrap_err();
        assert!(matches!(e, StorageError::InUse { .. }), "{e}");
        ::redis::cmd("DEL")
            .arg("lease:lease")
            .exec(&mut con)
            .unwrap();
        let lease = RedisLease::acquire(&cfg.redis).unwrap();
        let held: String = ::redis::cmd("GET")
            .arg("lease:lease")
            .query(&mut con)
            .unwrap();
        assert_eq!(held, instance_id());
        drop(lease);
        let held: Option<String> = ::redis::cmd("GET")
            .arg("lease:lease")
            .query(&mut con)
            .unwrap();
        assert!(held.is_none(), "released on drop");
        // A holder on this host whose process is gone is stale.
        assert!(holder_is_stale(&format!(
            "pid 4000000 host {} id x",
            host_name()
        )));
        assert!(!holder_is_stale("pid 4000000 host elsewhere id x"));
    }
}
