//! The snapshot store: entity and message records as Redis hashes, written as deltas in
//! one `MULTI`/`EXEC` under the lease.

use super::*;

/// An entity as stored in `P snap:entities`.
#[derive(Serialize)]
pub(super) struct StoredEntityRef<'a> {
    key: &'a EntityKey,
    data: &'a RawValue,
}

#[derive(Deserialize)]
pub(super) struct StoredEntity {
    key: EntityKey,
    data: Box<RawValue>,
}

pub(super) fn message_field(dead_letter: bool, seq: u64) -> String {
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

pub(super) fn apply_delta(
    t: &RedisTarget,
    con: &mut Connection,
    delta: &Delta,
) -> Result<(), StorageError> {
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

pub(super) fn load_all(
    t: &RedisTarget,
    con: &mut Connection,
) -> Result<Option<Snapshot>, StorageError> {
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
                    key: crate::storage::MessageKey {
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
