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
//!   and retries every [`super::durable::RETRY_INTERVAL`].
//! - **Durability** is Redis's: a record is "durable" once Redis acknowledged it. To survive a
//!   crash of Redis itself, run it with `appendonly yes` and `appendfsync always`.
//! - **Lease**: `SET P lease <id> NX PX` at start, renewed every `LEASE_TTL_MS / 5`, deleted on
//!   clean shutdown. A live holder makes a second instance refuse to start
//!   ([`StorageError::InUse`]). A holder on the same host whose process no longer exists (or
//!   has our own PID: the previous life of this container) is stale and taken over at once;
//!   otherwise a crashed holder's lease expires after `LEASE_TTL_MS`.

use super::durable::{run_flusher, Buffer, Durability, DurableState, FlushState, Flusher};
use super::journal::{Records, Replay};
use super::keys::{entity_key_string, subscriptions_prefix};
use super::oplog::OpLog;
use super::schema::REDIS_KEYS;
use super::settings::RedisConfig;
use super::{
    Backend, BackendStats, Delta, EntityKey, EntityRecord, MessageRecord, Snapshot, StorageError,
};
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
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A single reply may take this long (large snapshots are one `EXEC`).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many records go into one log batch.
const MAX_BATCH_RECORDS: usize = 4096;
/// At most about this many payload bytes go into one log batch.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Messages are loaded with this many `HGETALL`s per pipeline.
const LOAD_PIPELINE: usize = 64;

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

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Whether a lease holder string names a process on this host that cannot be alive: its PID
/// no longer exists, or it is our own PID (the previous life of a restarted container).
fn holder_is_stale(holder: &str) -> bool {
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

// ----- lease ---------------------------------------------------------------------------------

/// Renews the lease if we hold it, takes it if nobody does; 0 when someone else holds it.
const RENEW_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0";

/// Takes the lease from a holder known to be stale, if it is still that holder.
const TAKEOVER_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0";

/// Deletes the lease if we hold it.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

struct LeaseShared {
    target: RedisTarget,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The held lease on a prefix: renewed by a thread, released on drop.
pub struct RedisLease {
    shared: Arc<LeaseShared>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLease")
            .field("target", &self.shared.target.display)
            .finish()
    }
}

impl RedisLease {
    /// Takes the lease on the configured prefix, or refuses with [`StorageError::InUse`] when
    /// a live instance holds it.
    pub fn acquire(cfg: &RedisConfig) -> Result<RedisLease, StorageError> {
        let target = RedisTarget::from_config(cfg)?;
        let mut con = target.connect()?;
        let key = target.key("lease");
        let id = instance_id();
        let got: i64 = ::redis::Script::new(RENEW_SCRIPT)
            .key(&key)
            .arg(id)
            .arg(LEASE_TTL_MS)
            .invoke(&mut con)
            .map_err(|e| target.err(e))?;
        if got == 0 {
            let holder: Option<String> = ::redis::cmd("GET")
                .arg(&key)
                .query(&mut con)
                .map_err(|e| target.err(e))?;
            let holder = holder.unwrap_or_default();
            let taken = holder_is_stale(&holder)
                && ::redis::Script::new(TAKEOVER_SCRIPT)
                    .key(&key)
                    .arg(&holder)
                    .arg(id)
                    .arg(LEASE_TTL_MS)
                    .invoke::<i64>(&mut con)
                    .map_err(|e| target.err(e))?
                    == 1;
            if taken {
                tracing::warn!("took over the stale Redis lease {key} of {holder}");
            } else {
                let ttl: i64 = ::redis::cmd("PTTL").arg(&key).query(&mut con).unwrap_or(-1);
                return Err(target.in_use(format!(
                    "lease {key} held by {holder}, expires in {ttl} ms unless renewed"
                )));
            }
        }
        let shared = Arc::new(LeaseShared {
            target,
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let s2 = Arc::clone(&shared);
        let renewer = std::thread::Builder::new()
            .name("redis-lease".to_string())
            .spawn(move || renew_loop(&s2, Some(con)))
            .map_err(|e| StorageError::Other(format!("cannot start the lease thread: {e}")))?;
        Ok(RedisLease {
            shared,
            renewer: Some(renewer),
        })
    }
}

fn renew_loop(shared: &LeaseShared, mut con: Option<Connection>) {
    let t = &shared.target;
    let key = t.key("lease");
    let every = Duration::from_millis(LEASE_TTL_MS / 5);
    loop {
        {
            let stop = lock(&shared.stop);
            let (stop, _) = shared
                .wake
                .wait_timeout_while(stop, every, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        if con.is_none() {
            con = t.connect().ok();
        }
        let Some(c) = con.as_mut() else {
            tracing::warn!("Redis {} unreachable: the lease is not renewed", t.display);
            continue;
        };
        match ::redis::Script::new(RENEW_SCRIPT)
            .key(&key)
            .arg(instance_id())
            .arg(LEASE_TTL_MS)
            .invoke::<i64>(c)
        {
            Ok(0) => tracing::error!(
                "the Redis lease {key} is held by another instance: this instance's writes are refused"
            ),
            Ok(2) => tracing::warn!("the Redis lease {key} had expired; taken again"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("renewing the Redis lease {key} failed: {e}");
                con = None;
            }
        }
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        let t = &self.shared.target;
        let released = t.connect().and_then(|mut c| {
            ::redis::Script::new(RELEASE_SCRIPT)
                .key(t.key("lease"))
                .arg(instance_id())
                .invoke::<i64>(&mut c)
                .map_err(|e| t.err(e))
        });
        if let Err(e) = released {
            tracing::warn!("could not release the Redis lease (it expires by itself): {e}");
        }
    }
}

// ----- snapshot backend ----------------------------------------------------------------------

/// An entity as stored in `P snap:entities`.
#[derive(Serialize)]
struct StoredEntityRef<'a> {
    key: &'a EntityKey,
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct StoredEntity {
    key: EntityKey,
    data: Box<RawValue>,
}

fn message_field(dead_letter: bool, seq: u64) -> String {
    format!("{}{seq}", if dead_letter { 'd' } else { 'a' })
}

/// The snapshot store in Redis. Blocking (one synchronous connection, reconnected after an
/// error): the [`Backend`] trait runs off the async runtime.
pub struct RedisBackend {
    target: RedisTarget,
    con: Option<Connection>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.target.display)
            .finish()
    }
}

impl RedisBackend {
    /// Connects to the configured Redis (fails when it is unreachable) and refuses keys
    /// written by a newer format version.
    pub fn open(cfg: &RedisConfig) -> Result<RedisBackend, StorageError> {
        let target = RedisTarget::from_config(cfg)?;
        let mut con = target.connect()?;
        let key = target.key("format");
        let found: Option<i64> = ::redis::cmd("GET")
            .arg(&key)
            .query(&mut con)
            .map_err(|e| target.err(e))?;
        REDIS_KEYS.check(found.unwrap_or(1), format!("{} key {key}", target.display))?;
        Ok(RedisBackend {
            target,
            con: Some(con),
        })
    }

    /// Runs `f` on the connection (reconnecting first if the last call failed); drops the
    /// connection on error so the next call starts afresh. A kept connection can be stale
    /// (Redis restarted while this store was idle: the first call reads EOF), so a failure on
    /// it is retried once on a fresh connection; every `f` here is idempotent (snapshot writes
    /// set keys, reads read). Without the retry the shutdown snapshot after a Redis restart
    /// failed, losing what `wal_enabled=false` had acknowledged from memory.
    fn with_con<R>(
        &mut self,
        f: impl Fn(&RedisTarget, &mut Connection) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let (mut con, reused) = match self.con.take() {
            Some(c) => (c, true),
            None => (self.target.connect()?, false),
        };
        let mut r = f(&self.target, &mut con);
        if r.is_err() && reused {
            con = self.target.connect()?;
            r = f(&self.target, &mut con);
        }
        if r.is_ok() {
            self.con = Some(con);
        }
        r
    }

    fn msgs_key(t: &RedisTarget, ek: &str) -> String {
        t.key(&format!("snap:msgs:{ek}"))
    }
}

fn apply_delta(t: &RedisTarget, con: &mut Connection, delta: &Delta) -> Result<(), StorageError> {
    let q = |e| t.err(e);
    let entities_key = t.key("snap:entities");
    // Reads first (outside the transaction): what a wipe or a topic cascade deletes.
    let mut del_keys: Vec<String> = Vec::new();
    let mut del_fields: Vec<String> = Vec::new();
    if delta.full {
        del_keys.extend(t.scan(con, "snap:")?);
    }
    let topics: Vec<&EntityKey> = delta
        .entity_deletes
        .iter()
        .filter(|k| k.kind == crate::storage::EntityKind::Topic)
        .collect();
    let all_fields: Vec<String> = if topics.is_empty() || delta.full {
        Vec::new()
    } else {
        ::redis::cmd("HKEYS")
            .arg(&entities_key)
            .query(con)
            .map_err(q)?
    };
    for k in &delta.entity_deletes {
        let ek = entity_key_string(k);
        del_keys.push(RedisBackend::msgs_key(t, &ek));
        del_fields.push(ek);
        if k.kind == crate::storage::EntityKind::Topic && !delta.full {
            let subs = subscriptions_prefix(&k.name);
            del_keys.extend(t.scan(con, &format!("snap:msgs:{subs}"))?);
            del_fields.extend(all_fields.iter().filter(|f| f.starts_with(&subs)).cloned());
        }
    }
    let lease = t.key("lease");
    ::redis::cmd("WATCH").arg(&lease).exec(con).map_err(q)?;
    let holder: Option<String> = ::redis::cmd("GET").arg(&lease).query(con).map_err(q)?;
    if let Some(h) = holder.filter(|h| h != instance_id()) {
        let _ = ::redis::cmd("UNWATCH").exec(con);
        return Err(t.in_use(format!("lease {lease} held by {h}")));
    }
    let mut pipe = ::redis::pipe();
    pipe.atomic();
    for chunk in del_keys.chunks(512) {
        pipe.cmd("DEL").arg(chunk).ignore();
    }
    if !del_fields.is_empty() && !delta.full {
        pipe.cmd("HDEL")
            .arg(&entities_key)
            .arg(&del_fields)
            .ignore();
    }
    if !delta.entity_upserts.is_empty() {
        let mut c = ::redis::cmd("HSET");
        c.arg(&entities_key);
        for e in &delta.entity_upserts {
            let v = serde_json::to_string(&StoredEntityRef {
                key: &e.key,
                data: &e.data,
            })
            .map_err(|e| StorageError::Other(e.to_string()))?;
            c.arg(entity_key_string(&e.key)).arg(v);
        }
        pipe.add_command(c).ignore();
    }
    // Group message changes per entity hash: one HDEL and one HSET per entity.
    let mut dels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in &delta.message_deletes {
        dels.entry(entity_key_string(&k.entity))
            .or_default()
            .push(message_field(k.dead_letter, k.sequence_number));
    }
    for (ek, fields) in dels {
        pipe.cmd("HDEL")
            .arg(RedisBackend::msgs_key(t, &ek))
            .arg(fields)
            .ignore();
    }
    let mut ups: BTreeMap<String, Vec<&MessageRecord>> = BTreeMap::new();
    for m in &delta.message_upserts {
        ups.entry(entity_key_string(&m.key.entity))
            .or_default()
            .push(m);
    }
    for (ek, msgs) in ups {
        let mut c = ::redis::cmd("HSET");
        c.arg(RedisBackend::msgs_key(t, &ek));
        for m in msgs {
            c.arg(message_field(m.key.dead_letter, m.key.sequence_number))
                .arg(m.data.get());
        }
        pipe.add_command(c).ignore();
    }
    if let Some(state) = &delta.state {
        pipe.cmd("SET")
            .arg(t.key("snap:state"))
            .arg(state.get())
            .ignore();
    }
    pipe.cmd("SET")
        .arg(t.key("format"))
        .arg(REDIS_KEYS.current)
        .ignore();
    pipe.cmd("HSET")
        .arg(t.key("snap:meta"))
        .arg("lsn")
        .arg(delta.lsn)
        .arg("taken_at")
        .arg(delta.taken_at)
        .ignore();
    let done: Option<Value> = pipe.query(con).map_err(q)?;
    match done {
        Some(_) => Ok(()),
        None => Err(t.in_use(format!(
            "lease {lease} changed hands while a snapshot was written"
        ))),
    }
}

fn load_all(t: &RedisTarget, con: &mut Connection) -> Result<Option<Snapshot>, StorageError> {
    let q = |e| t.err(e);
    let meta: BTreeMap<String, i64> = ::redis::cmd("HGETALL")
        .arg(t.key("snap:meta"))
        .query(con)
        .map_err(q)?;
    let (Some(lsn), Some(taken_at)) = (meta.get("lsn"), meta.get("taken_at")) else {
        return Ok(None);
    };
    let corrupt = |detail: String| StorageError::Corrupt {
        path: PathBuf::from(t.display.clone()),
        detail,
    };
    let raw_entities: BTreeMap<String, Vec<u8>> = ::redis::cmd("HGETALL")
        .arg(t.key("snap:entities"))
        .query(con)
        .map_err(q)?;
    let mut entities = Vec::with_capacity(raw_entities.len());
    for (ek, v) in &raw_entities {
        let e: StoredEntity = serde_json::from_slice(v)
            .map_err(|e| corrupt(format!("entity {ek} does not decode: {e}")))?;
        entities.push(EntityRecord {
            key: e.key,
            data: e.data,
        });
    }
    let mut messages = Vec::new();
    for chunk in entities.chunks(LOAD_PIPELINE) {
        let mut pipe = ::redis::pipe();
        for e in chunk {
            pipe.cmd("HGETALL")
                .arg(RedisBackend::msgs_key(t, &entity_key_string(&e.key)));
        }
        let hashes: Vec<Vec<(String, Vec<u8>)>> = pipe.query(con).map_err(q)?;
        for (e, fields) in chunk.iter().zip(hashes) {
            for (field, data) in fields {
                let dead_letter = field.starts_with('d');
                let seq: u64 = field
                    .get(1..)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt(format!("bad message field {field:?}")))?;
                let text = String::from_utf8(data)
                    .map_err(|_| corrupt(format!("message {field} is not UTF-8")))?;
                let data = RawValue::from_string(text)
                    .map_err(|e| corrupt(format!("message {field} does not decode: {e}")))?;
                messages.push(MessageRecord {
                    key: super::MessageKey {
                        entity: e.key.clone(),
                        dead_letter,
                        sequence_number: seq,
                    },
                    data,
                });
            }
        }
    }
    messages.sort_by(|a, b| a.key.cmp(&b.key));
    let state: Option<String> = ::redis::cmd("GET")
        .arg(t.key("snap:state"))
        .query(con)
        .map_err(q)?;
    let state = state
        .map(RawValue::from_string)
        .transpose()
        .map_err(|e| corrupt(format!("state does not decode: {e}")))?;
    Ok(Some(Snapshot {
        entities,
        messages,
        state,
        lsn: u64::try_from(*lsn).unwrap_or(0),
        taken_at: *taken_at,
    }))
}

impl Backend for RedisBackend {
    fn load(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.with_con(load_all)
    }

    fn apply(&mut self, delta: &Delta) -> Result<(), StorageError> {
        self.with_con(|t, con| apply_delta(t, con, delta))
    }

    /// Redis compacts on its own (and rewrites its AOF by itself): nothing to do.
    fn compact(&mut self) -> Result<(), StorageError> {
        tracing::info!(
            "compact: nothing to do for Redis ({}); Redis reclaims memory and rewrites its AOF by itself",
            self.target.display
        );
        Ok(())
    }

    /// Deletes every snapshot key under the prefix (the log belongs to the log, the lease to
    /// its holder).
    fn purge(&mut self) -> Result<(), StorageError> {
        self.with_con(|t, con| {
            let keys = t.scan(con, "snap:")?;
            for chunk in keys.chunks(512) {
                ::redis::cmd("DEL")
                    .arg(chunk)
                    .exec(con)
                    .map_err(|e| t.err(e))?;
            }
            Ok(())
        })
    }

    /// Sizes are Redis's `MEMORY USAGE` of the snapshot keys.
    fn stats(&self) -> BackendStats {
        let t = &self.target;
        let facts = t.connect().and_then(|mut con| {
            let keys = t.scan(&mut con, "snap:")?;
            let mut size = 0u64;
            for chunk in keys.chunks(LOAD_PIPELINE) {
                let mut pipe = ::redis::pipe();
                for k in chunk {
                    pipe.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0);
                }
                let sizes: Vec<Option<u64>> = pipe.query(&mut con).map_err(|e| t.err(e))?;
                size += sizes.into_iter().flatten().sum::<u64>();
            }
            let taken: Option<i64> = ::redis::cmd("HGET")
                .arg(t.key("snap:meta"))
                .arg("taken_at")
                .query(&mut con)
                .map_err(|e| t.err(e))?;
            Ok((size, taken))
        });
        let (size_bytes, last_snapshot) = facts.unwrap_or_else(|e| {
            tracing::warn!("storage stats: {e}");
            (0, None)
        });
        BackendStats {
            backend: "Redis".to_string(),
            location: Some(t.display.clone()),
            size_bytes,
            last_snapshot,
        }
    }

    /// The log is a Redis stream, not a file ([`RedisOpLog`]).
    fn journal_path(&self) -> Option<PathBuf> {
        None
    }
}

// ----- operation log -------------------------------------------------------------------------

/// Appends one batch to the stream, fenced by the lease; trims through ARGV[3] (exclusive
/// minimum id, 0 = no trim). Returns the highest LSN now in the log.
const APPEND_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then
  return redis.error_reply('LEASE the lease ' .. KEYS[1] .. ' is held by ' .. v .. '; this instance may not write')
end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
local last = redis.call('GET', KEYS[3]) or '0'
local lastn = tonumber(last)
for i = 4, #ARGV, 2 do
  if tonumber(ARGV[i]) > lastn then
    redis.call('XADD', KEYS[2], ARGV[i] .. '-0', 'p', ARGV[i + 1])
    last = ARGV[i]
    lastn = tonumber(last)
  end
end
redis.call('SET', KEYS[3], last)
if ARGV[3] ~= '0' then redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3]) end
return last";

#[derive(Default)]
struct OpPending {
    /// Appended, not yet acknowledged by Redis, in LSN order.
    records: VecDeque<(u64, Vec<u8>)>,
    next_lsn: u64,
    last_appended: u64,
    /// Trim the stream through this LSN with the next batch (0 = nothing to trim).
    trim_through: u64,
    /// The last trim sent.
    trimmed: u64,
    /// Failure, close and idleness, as the flusher loop ([`run_flusher`]) tracks them.
    flush: FlushState,
}

impl Buffer for OpPending {
    fn flush_state(&mut self) -> &mut FlushState {
        &mut self.flush
    }
    fn buffered(&self) -> usize {
        self.records.len()
    }
    fn has_work(&self) -> bool {
        !self.records.is_empty() || self.trim_through > self.trimmed
    }
}

struct OpShared {
    target: RedisTarget,
    pending: Mutex<OpPending>,
    wake: Condvar,
    durable: Durability,
    /// `(lsn, bytes)` of the records in the stream, for `size_bytes`.
    sizes: Mutex<VecDeque<(u64, u64)>>,
    size: AtomicU64,
    inject_failure: AtomicBool,
    gather: super::idle::Gather,
}

/// The operation log as a Redis stream, with group commit (see the module docs).
pub struct RedisOpLog {
    shared: Arc<OpShared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisOpLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOpLog")
            .field("target", &self.shared.target.display)
            .field("durable", &self.shared.durable.state())
            .finish()
    }
}

impl RedisOpLog {
    /// Reads the records already in the stream and starts the flusher. New LSNs continue after
    /// the highest LSN ever written and are at least `next_lsn_floor`.
    pub async fn open(
        cfg: &RedisConfig,
        next_lsn_floor: u64,
    ) -> Result<(RedisOpLog, Replay), StorageError> {
        let target = RedisTarget::from_config(cfg)?;
        let t2 = target.clone();
        let (records, last_written) = tokio::task::spawn_blocking(move || read_stream(&t2))
            .await
            .map_err(|e| StorageError::Other(e.to_string()))??;
        let last = records.last().map_or(0, |r| r.0).max(last_written);
        let next_lsn = (last + 1).max(next_lsn_floor).max(1);
        let sizes: VecDeque<(u64, u64)> =
            records.iter().map(|(l, p)| (*l, p.len() as u64)).collect();
        let size = sizes.iter().map(|s| s.1).sum();
        let shared = Arc::new(OpShared {
            target,
            pending: Mutex::new(OpPending {
                next_lsn,
                last_appended: next_lsn - 1,
                ..OpPending::default()
            }),
            wake: Condvar::new(),
            durable: Durability::new("the operation log", DurableState::Ok(next_lsn - 1)),
            sizes: Mutex::new(sizes),
            size: AtomicU64::new(size),
            inject_failure: AtomicBool::new(false),
            gather: super::idle::Gather::default(),
        });
        let s2 = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("redis-oplog".to_string())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => run_flusher(&mut RedisFlusher {
                        shared: &s2,
                        rt,
                        con: None,
                        script: ::redis::Script::new(APPEND_SCRIPT),
                    }),
                    Err(e) => {
                        let durable = s2.durable.durable_lsn();
                        s2.durable.publish(DurableState::Failed {
                            durable,
                            error: format!("cannot start the Redis log flusher: {e}"),
                        });
                    }
                }
            })
            .map_err(|e| StorageError::Other(format!("cannot start the Redis log thread: {e}")))?;
        Ok((
            RedisOpLog {
                shared,
                flusher: Mutex::new(Some(handle)),
            },
            Replay {
                records,
                torn_tail: None,
            },
        ))
    }

    /// Where the log lives, for messages.
    pub fn location(&self) -> String {
        format!(
            "{} stream {}",
            self.shared.target.display,
            self.shared.target.key("wal")
        )
    }
}

/// Every record in the stream (in LSN order) and `P wal:last`.
fn read_stream(t: &RedisTarget) -> Result<(Records, u64), StorageError> {
    let mut con = t.connect()?;
    let q = |e| t.err(e);
    let stream = t.key("wal");
    let last: Option<u64> = ::redis::cmd("GET")
        .arg(t.key("wal:last"))
        .query(&mut con)
        .map_err(q)?;
    let mut out: Records = Vec::new();
    let mut start = "-".to_string();
    loop {
        let reply: ::redis::streams::StreamRangeReply = ::redis::cmd("XRANGE")
            .arg(&stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(&mut con)
            .map_err(q)?;
        let n = reply.ids.len();
        for entry in reply.ids {
            let lsn: u64 = entry
                .id
                .split('-')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StorageError::Corrupt {
                    path: PathBuf::from(t.display.clone()),
                    detail: format!("stream entry {} has no LSN", entry.id),
                })?;
            let payload = match entry.map.get("p") {
                Some(Value::BulkString(b)) => b.clone(),
                _ => {
                    return Err(StorageError::Corrupt {
                        path: PathBuf::from(t.display.clone()),
                        detail: format!("stream entry {} has no payload", entry.id),
                    })
                }
            };
            start = format!("({}", entry.id);
            out.push((lsn, payload));
        }
        if n < 10_000 {
            return Ok((out, last.unwrap_or(0)));
        }
    }
}

async fn connect_async(
    t: &RedisTarget,
) -> Result<::redis::aio::MultiplexedConnection, ::redis::RedisError> {
    let cfg = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    t.client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// The `redis-oplog` thread's view of the log, for [`run_flusher`]: a batch is at most
/// [`MAX_BATCH_RECORDS`] records (about [`MAX_BATCH_BYTES`]) and any pending trim, sent as one
/// script call on the thread's own current-thread runtime.
struct RedisFlusher<'a> {
    shared: &'a OpShared,
    rt: tokio::runtime::Runtime,
    con: Option<::redis::aio::MultiplexedConnection>,
    script: ::redis::Script,
}

impl Flusher for RedisFlusher<'_> {
    type Pending = OpPending;
    fn buffer(&self) -> (&Mutex<OpPending>, &Condvar) {
        (&self.shared.pending, &self.shared.wake)
    }
    fn gather(&self) -> &super::idle::Gather {
        &self.shared.gather
    }
    fn write(&mut self) -> bool {
        let RedisFlusher {
            shared,
            rt,
            con,
            script,
        } = self;
        let t = &shared.target;
        let (batch, trim) = {
            let p = lock(&shared.pending);
            let trim = if p.trim_through > p.trimmed {
                p.trim_through
            } else {
                0
            };
            let mut bytes = 0usize;
            let batch: Vec<(u64, Vec<u8>)> = p
                .records
                .iter()
                .take(MAX_BATCH_RECORDS)
                .take_while(|(_, r)| {
                    bytes += r.len();
                    bytes <= MAX_BATCH_BYTES
                })
                .cloned()
                .collect();
            // A single record larger than the byte cap still goes alone.
            let batch = if batch.is_empty() {
                p.records.front().cloned().into_iter().collect()
            } else {
                batch
            };
            (batch, trim)
        };
        if batch.is_empty() && trim == 0 {
            return true;
        }
        let result = rt.block_on(async {
            if shared.inject_failure.load(Ordering::SeqCst) {
                return Err("injected Redis write failure".to_string());
            }
            if con.is_none() {
                *con = Some(connect_async(t).await.map_err(|e| e.to_string())?);
            }
            let c = con.as_mut().ok_or("no connection")?;
            let mut inv = script.key(t.key("lease"));
            inv.key(t.key("wal"))
                .key(t.key("wal:last"))
                .arg(instance_id())
                .arg(LEASE_TTL_MS)
                .arg(if trim > 0 { trim + 1 } else { 0 });
            for (lsn, payload) in &batch {
                inv.arg(*lsn).arg(payload.as_slice());
            }
            // On any error the connection is replaced before the retry (below).
            inv.invoke_async::<String>(c)
                .await
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(_) => {
                let last = batch.last().map(|b| b.0);
                {
                    let mut p = lock(&shared.pending);
                    p.flush.failing = false;
                    for _ in 0..batch.len() {
                        p.records.pop_front();
                    }
                    p.trimmed = p.trimmed.max(trim);
                }
                let through = lock(&shared.pending).trim_through;
                prune_sizes(shared, through, &batch);
                let before = shared.durable.durable_lsn();
                let durable = last.unwrap_or(before).max(before);
                shared.durable.publish(DurableState::Ok(durable));
                true
            }
            Err(error) => {
                let durable = shared.durable.durable_lsn();
                let was_ok = shared.durable.state().is_ok();
                if was_ok {
                    tracing::error!("Redis operation log write failed (retrying): {error}");
                }
                shared.durable.publish(DurableState::Failed {
                    durable,
                    error: format!("Redis {}: {error}", t.display),
                });
                let mut p = lock(&shared.pending);
                p.flush.failing = true;
                p.flush.last_failure = Some(Instant::now());
                *con = None;
                false
            }
        }
    }
    fn closed(&mut self) {
        let shared = self.shared;
        let durable = shared.durable.durable_lsn();
        let left = lock(&shared.pending).records.len();
        if left > 0 {
            tracing::error!("the Redis operation log closed with {left} records unwritten");
        }
        shared.durable.publish(DurableState::Closed { durable });
    }
}

/// Adds `written` to the size accounting and drops everything at or below `through`.
fn prune_sizes(shared: &OpShared, through: u64, written: &[(u64, Vec<u8>)]) {
    let mut sizes = lock(&shared.sizes);
    sizes.extend(written.iter().map(|(l, r)| (*l, r.len() as u64)));
    while sizes.front().is_some_and(|s| s.0 <= through) {
        sizes.pop_front();
    }
    shared
        .size
        .store(sizes.iter().map(|s| s.1).sum(), Ordering::Relaxed);
}

impl OpLog for RedisOpLog {
    fn append(&self, payload: Vec<u8>) -> u64 {
        let mut p = lock(&self.shared.pending);
        let lsn = p.next_lsn;
        p.next_lsn += 1;
        p.last_appended = lsn;
        p.records.push_back((lsn, payload));
        let buffered = p.records.len();
        let idle = std::mem::replace(&mut p.flush.flusher_idle, false);
        drop(p);
        if idle {
            self.shared.wake.notify_one();
        }
        self.shared.gather.appended(buffered);
        lsn
    }

    fn wait_durable(&self, lsn: u64) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move { self.shared.durable.wait(lsn).await })
    }

    fn last_lsn(&self) -> u64 {
        lock(&self.shared.pending).last_appended
    }

    /// Asks the flusher to trim the stream with its next round trip (never blocks).
    fn truncate_through(&self, lsn: u64) -> Result<(), StorageError> {
        let mut p = lock(&self.shared.pending);
        p.trim_through = p.trim_through.max(lsn);
        drop(p);
        // Those records are in a snapshot: they no longer count, trimmed yet or not.
        prune_sizes(&self.shared, lsn, &[]);
        self.shared.wake.notify_one();
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.shared.size.load(Ordering::Relaxed)
    }

    fn inject_write_failure(&self, fail: bool) {
        self.shared.inject_failure.store(fail, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    fn close(&self) {
        lock(&self.shared.pending).flush.shutdown = true;
        self.shared.wake.notify_all();
        super::idle::nudge();
        if let Some(h) = lock(&self.flusher).take() {
            if h.join().is_err() {
                tracing::error!("the Redis log flusher panicked");
            }
        }
    }

    fn health(&self) -> Result<(), String> {
        self.shared.durable.health()
    }
}

impl Drop for RedisOpLog {
    fn drop(&mut self) {
        self.close();
    }
}

// ----- test support ----------------------------------------------------------------------------

/// A throw-away `redis-server` for tests: its own port and directory, killed on drop.
///
/// Fails loudly when `redis-server` is not installed (CI installs Debian's package), so Redis
/// tests never pass by skipping.
#[doc(hidden)]
pub struct TestRedis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
    extra: Vec<String>,
}

impl TestRedis {
    /// Starts a server without persistence (`--save '' --appendonly no`) in `dir`.
    pub fn start(dir: &std::path::Path) -> TestRedis {
        Self::start_with(dir, &["--save", "", "--appendonly", "no"])
    }

    /// Starts a server that survives its own crash: append-only file, fsync on every write.
    pub fn start_durable(dir: &std::path::Path) -> TestRedis {
        Self::start_with(
            dir,
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        )
    }

    /// Starts a server with extra arguments.
    pub fn start_with(dir: &std::path::Path, args: &[&str]) -> TestRedis {
        let mut r = TestRedis {
            port: Self::free_port(),
            dir: dir.to_path_buf(),
            child: None,
            extra: args.iter().map(|s| s.to_string()).collect(),
        };
        // The port was free a moment ago; another test may take it before redis-server binds
        // it. Then the server exits and a fresh port is tried.
        for _ in 0..10 {
            if r.try_start() {
                return r;
            }
            r.port = Self::free_port();
        }
        panic!("redis-server could not bind a free port in 10 attempts");
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"))
    }

    /// (Re)starts the server on the same port and directory, and waits until it answers.
    /// Retries while the port is taken (a bind failure exits redis-server at once).
    pub fn restart(&mut self) {
        for _ in 0..50 {
            if self.try_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server could not bind port {} again", self.port);
    }

    /// Starts redis-server on `self.port`: true once *this* process answers (checked by its
    /// `process_id`, so a server another test started on the same port is never mistaken for
    /// it), false when it exited (port taken).
    fn try_start(&mut self) -> bool {
        let mut child = std::process::Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (apt-get install redis-server); the Redis tests need a real server")
            });
        let pid = format!("process_id:{}", child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let info = Client::open(format!("redis://127.0.0.1:{}/", self.port))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| ::redis::cmd("INFO").arg("server").query::<String>(&mut c));
            if info.is_ok_and(|i| i.lines().any(|l| l.trim() == pid)) {
                self.child = Some(child);
                return true;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server on port {} did not come up", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the server (no shutdown save) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A storage configuration pointing at this server with `prefix`.
    pub fn config(&self, prefix: &str) -> super::settings::StorageConfig {
        super::settings::StorageConfig {
            storage_type: super::settings::StorageType::Redis,
            redis: RedisConfig {
                host: "127.0.0.1".to_string(),
                port: self.port,
                prefix: prefix.to_string(),
                ..RedisConfig::default()
            },
            ..Default::default()
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

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
