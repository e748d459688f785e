//! Service-level tests: journal failure and recovery through the whole request path; message
//! counters fed by the broker's events.

use super::*;
use crate::broker::entity::EntityProps;
use crate::broker::message::NewMessage;
use crate::broker::op::{Op, QueuePath, ReceiveMode, Settlement};
use crate::metrics::{entity_label, global, Event};
use crate::time::{ManualClock, TimeSpan};
use std::time::{Duration, Instant};

fn send(id: &str) -> Op {
    Op::Send {
        entity: "q".into(),
        messages: vec![NewMessage {
            message_id: id.into(),
            body: b"x".to_vec(),
            ..NewMessage::default()
        }],
    }
}

/// SQLite persistence in `dir`, no periodic snapshots (a crash leaves everything to replay).
fn sqlite_config(dir: &std::path::Path) -> StorageConfig {
    StorageConfig {
        storage_type: StorageType::Sqlite,
        sqlite: crate::config::SqliteConfig {
            path: dir.join("sb.db"),
            ..Default::default()
        },
        snapshot_interval_seconds: 0,
        ..StorageConfig::default()
    }
}

/// Initialises persistence once the previous instance's lock file is free (it is released
/// when that instance's last handle drops).
async fn initialize_when_free(b: &ServiceBusBackend) {
    let mut tries = 0;
    loop {
        match b.initialize_persistence().await {
            Ok(_) => return,
            Err(StorageError::InUse { .. }) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A journal that cannot be written refuses acknowledgement with a storage error (503 on
/// the wire), health reports it, and the buffered records land once writes work again.
#[tokio::test]
async fn journal_failure_refuses_acknowledgement_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    let b = ServiceBusBackend::new(Some(cfg.clone()));
    b.initialize_persistence().await.unwrap();
    b.execute(Op::CreateQueue {
        name: "q".into(),
        props: EntityProps::default(),
    })
    .await
    .unwrap();
    b.execute(send("before")).await.unwrap();
    b.inject_journal_failure(true);
    let err = b.execute(send("during")).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::Storage(StorageError::JournalFailed(_))),
        "{err}"
    );
    assert!(b.journal_healthy().is_err());
    b.inject_journal_failure(false);
    // The flusher retries the buffered records on its own; health recovers with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.journal_healthy().is_err() {
        assert!(Instant::now() < deadline, "journal did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.execute(send("after")).await.unwrap();
    // Crash (no final snapshot): recovery replays all three sends.
    drop(b);
    let b2 = ServiceBusBackend::new(Some(cfg));
    initialize_when_free(&b2).await;
    let ids: Vec<String> = b2
        .read(|br| br.peek(&QueuePath::queue("q"), 0, 10))
        .unwrap()
        .into_iter()
        .map(|m| m.content.message_id().to_string())
        .collect();
    assert_eq!(ids, vec!["before", "during", "after"]);
}

/// The dead-lettered and expired counters of `q`.
fn counted(q: &QueuePath) -> (u64, u64) {
    let e = entity_label(q);
    (
        global().counted(&e, Event::DeadLettered),
        global().counted(&e, Event::Expired),
    )
}

/// Live dead-letterings and expiries are counted (from the broker's events); replaying
/// the same operations from the journal at start-up counts nothing again.
#[tokio::test]
async fn broker_events_count_live_operations_not_replays() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let b = ServiceBusBackend::with_clock(Some(cfg.clone()), clock.clone());
    b.initialize_persistence().await.unwrap();
    // A name no other test uses: the registry is process-wide.
    let name = "metrics-events-replay";
    let q = QueuePath::queue(name);
    b.execute(Op::CreateQueue {
        name: name.into(),
        props: EntityProps {
            default_message_time_to_live: TimeSpan::from_secs(10),
            dead_lettering_on_message_expiration: true,
            ..EntityProps::default()
        },
    })
    .await
    .unwrap();
    let msg = |id: &str| NewMessage {
        message_id: id.into(),
        body: b"x".to_vec(),
        ..NewMessage::default()
    };
    b.send(name, vec![msg("settled"), msg("expires")])
        .await
        .unwrap();
    let got = b.receive(&q, ReceiveMode::PeekLock, 1, None).await.unwrap();
    let token = got[0].lock.unwrap().token;
    let dead_letter = Settlement::DeadLetter {
        reason: None,
        description: None,
        properties: Default::default(),
    };
    b.settle(&q, token, dead_letter).await.unwrap();
    assert_eq!(counted(&q), (1, 0), "live dead-letter counted");
    clock.advance(11_000);
    b.execute(Op::Tick).await.unwrap();
    assert_eq!(counted(&q), (2, 1), "live expiry (dead-lettered) counted");

    // Crash (no final snapshot): the next start replays every operation above.
    drop(b);
    let b2 = ServiceBusBackend::with_clock(Some(cfg), clock);
    initialize_when_free(&b2).await;
    assert_eq!(b2.peek(&q.clone().dlq(), None, 0, 10).unwrap().len(), 2);
    assert_eq!(counted(&q), (2, 1), "replay counts nothing");
}

/// Whether the timer loop has a wake-up waiting (a stored `notify_one` permit), consuming it.
fn timer_woken(b: &ServiceBusBackend) -> bool {
    use futures::FutureExt;
    b.inner.timer_wake.notified().now_or_never().is_some()
}

/// An operation wakes the timer only when it brings the earliest deadline before the one the
/// timer sleeps until (or while the timer is re-reading the state): a plain send, which sets
/// no deadline, wakes nothing; a scheduled message earlier than the timer's deadline does.
#[tokio::test]
async fn operations_wake_the_timer_only_for_an_earlier_deadline() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let b = ServiceBusBackend::with_clock(None, clock.clone());
    let now = clock.now();
    b.execute(Op::CreateQueue {
        name: "q".into(),
        props: EntityProps::default(),
    })
    .await
    .unwrap();
    let _ = timer_woken(&b);
    b.execute(send("plain")).await.unwrap();
    assert!(!timer_woken(&b), "a send without deadlines woke the timer");
    let scheduled = |id: &str, at: i64| Op::Send {
        entity: "q".into(),
        messages: vec![NewMessage {
            message_id: id.into(),
            body: b"x".to_vec(),
            scheduled_enqueue_time: Some(at),
            ..NewMessage::default()
        }],
    };
    // The timer sleeps until now + 10 s.
    b.inner.timer_due.store(now + 10_000, Ordering::SeqCst);
    b.execute(scheduled("later", now + 20_000)).await.unwrap();
    assert!(!timer_woken(&b), "a deadline after the timer's woke it");
    b.execute(scheduled("sooner", now + 5_000)).await.unwrap();
    assert!(
        timer_woken(&b),
        "a deadline before the timer's did not wake it"
    );
    // Between sleeps (the timer is re-reading the state) any deadline wakes it.
    b.inner.timer_due.store(Millis::MAX, Ordering::SeqCst);
    b.execute(send("plain-2")).await.unwrap();
    assert!(
        timer_woken(&b),
        "the earliest deadline (5 s) must reach a re-reading timer"
    );
}
