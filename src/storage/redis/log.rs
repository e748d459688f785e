//! The operation log: a Redis stream appended in group-committed batches by one flusher
//! thread.

use super::*;

/// Appends one batch to the stream, fenced by the lease; trims through ARGV[3] (exclusive
/// minimum id, 0 = no trim). Returns the highest LSN now in the log.
pub(super) const APPEND_SCRIPT: &str = r"
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
pub(super) struct OpPending {
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

pub(super) struct OpShared {
    target: RedisTarget,
    pending: Mutex<OpPending>,
    wake: Condvar,
    durable: Durability,
    /// `(lsn, bytes)` of the records in the stream, for `size_bytes`.
    sizes: Mutex<VecDeque<(u64, u64)>>,
    size: AtomicU64,
    inject_failure: AtomicBool,
    gather: crate::storage::idle::Gather,
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
            gather: crate::storage::idle::Gather::default(),
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
pub(super) fn read_stream(t: &RedisTarget) -> Result<(Records, u64), StorageError> {
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

pub(super) async fn connect_async(
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
pub(super) struct RedisFlusher<'a> {
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
    fn gather(&self) -> &crate::storage::idle::Gather {
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
pub(super) fn prune_sizes(shared: &OpShared, through: u64, written: &[(u64, Vec<u8>)]) {
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
        crate::storage::idle::nudge();
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
