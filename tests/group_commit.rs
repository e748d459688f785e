//! Group commit gated by the runtime's idleness (`storage::idle`), on the binary's runtime
//! (`localzure::runtime::builder`). Its own test binary: installing the hooks is process-wide.

use localzure::storage::idle::GROUP_COMMIT_RECORDS;
use localzure::storage::journal::Journal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The idleness signal is process-wide: one test at a time, or another test's idle runtime
/// would look like ours.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `task` as a task on a one-worker runtime built like the binary's, with a fresh journal
/// in a temp dir (returned, so tests can reopen the file).
fn on_worker<T, F>(task: impl FnOnce(Arc<Journal>) -> F) -> (T, Arc<Journal>, tempfile::TempDir)
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let _serial = serial();
    let rt = localzure::runtime::builder()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (j, replay) = Journal::open(&dir.path().join("ops.wal"), 0).expect("open journal");
    assert!(replay.records.is_empty());
    let j = Arc::new(j);
    let fut = task(Arc::clone(&j));
    let out = rt.block_on(async move { tokio::spawn(fut).await.expect("task") });
    (out, j, dir)
}

/// Appends `n` records without yielding (the only worker stays busy), then waits for the last.
async fn burst(j: &Journal, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        last = j.append(format!("record {i}").into_bytes());
    }
    j.wait_durable(last).await.expect("durable");
    last
}

/// Keeps the worker busy (no await, so it cannot park) until `lsn` is durable or 10 s pass
/// (a generous bound, so a slow disk cannot fail a test); returns the durable LSN.
fn spin_until_durable(j: &Journal, lsn: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while j.durable_lsn() < lsn && Instant::now() < deadline {
        std::hint::spin_loop();
    }
    j.durable_lsn()
}

#[test]
fn idle_server_flushes_each_record_at_once() {
    let ((), j, _dir) = on_worker(|j| async move {
        // One request at a time: the worker parks while each waits, so nothing is held back
        // to gather a batch.
        for _ in 0..20 {
            burst(&j, 1).await;
        }
    });
    assert_eq!(j.durable_lsn(), 20);
    assert_eq!(j.flush_count(), 20);
    // Each flush started when the worker went idle, not by the time limit (a few are allowed:
    // a stalled machine can deschedule the worker between its append and its park).
    assert!(j.linger_timeouts() < 5, "{} timeouts", j.linger_timeouts());
}

#[test]
fn busy_worker_records_share_one_flush() {
    let n = GROUP_COMMIT_RECORDS / 2;
    let (_, j, _dir) = on_worker(move |j| async move { burst(&j, n).await });
    assert_eq!(j.durable_lsn(), n as u64);
    // The flusher waited while the worker was busy appending; the worker parked only once
    // every record was buffered, so they went out together. (Two at most: the time limit can
    // split the burst if this machine stalls the worker.)
    assert!(j.flush_count() <= 2, "{} flushes", j.flush_count());
}

#[test]
fn full_batches_are_flushed_while_the_worker_stays_busy() {
    let n = GROUP_COMMIT_RECORDS * 4;
    let (flushed_while_busy, j, _dir) = on_worker(move |j| async move {
        let mut last = 0;
        for i in 0..n {
            last = j.append(format!("record {i}").into_bytes());
        }
        // A full batch does not wait for the worker to go idle.
        let flushed = spin_until_durable(&j, GROUP_COMMIT_RECORDS as u64);
        j.wait_durable(last).await.expect("durable");
        flushed
    });
    assert!(
        flushed_while_busy >= GROUP_COMMIT_RECORDS as u64,
        "only {flushed_while_busy} records durable while the worker was busy"
    );
    assert_eq!(j.durable_lsn(), n as u64);
    // Batched: a few full batches, not one flush per record (a loose bound, because a batch
    // can also close at the time limit if this machine stalls the appending thread).
    assert!(
        j.flush_count() <= (n / 8) as u64,
        "{} flushes",
        j.flush_count()
    );
}

#[test]
fn a_never_idle_worker_still_gets_its_record_flushed() {
    let (durable, j, _dir) = on_worker(|j| async move {
        let lsn = j.append(b"one".to_vec());
        // Busy for good: only the linger's time limit can end the wait.
        spin_until_durable(&j, lsn) >= lsn
    });
    assert!(durable);
    assert_eq!(j.flush_count(), 1);
    assert_eq!(j.linger_timeouts(), 1);
}

#[test]
fn close_ends_a_linger_and_flushes() {
    let ((), j, dir) = on_worker(|j| async move {
        j.append(b"kept".to_vec());
        // The worker is busy, so the flusher lingers; closing must not wait it out.
        j.close();
    });
    drop(j);
    let (_, replay) = Journal::open(&dir.path().join("ops.wal"), 0).expect("reopen");
    assert_eq!(replay.records.len(), 1);
}
