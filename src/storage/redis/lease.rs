//! The instance lease: one holder per key prefix, renewed in the background, taken
//! over when stale.

use super::*;

/// Renews the lease if we hold it, takes it if nobody does; 0 when someone else holds it.
pub(super) const RENEW_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0";

/// Takes the lease from a holder known to be stale, if it is still that holder.
pub(super) const TAKEOVER_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0";

/// Deletes the lease if we hold it.
pub(super) const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

pub(super) struct LeaseShared {
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

pub(super) fn renew_loop(shared: &LeaseShared, mut con: Option<Connection>) {
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
