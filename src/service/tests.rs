//! Service-level tests: journal failure and recovery through the whole request path.

use super::*;
use crate::broker::entity::EntityProps;
use crate::broker::message::NewMessage;
use crate::broker::op::{Op, QueuePath};
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

/// A journal that cannot be written refuses acknowledgement with a storage error (503 on
/// the wire), health reports it, and the buffered records land once writes work again.
#[tokio::test]
async fn journal_failure_refuses_acknowledgement_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        storage_type: StorageType::Sqlite,
        sqlite: crate::config::SqliteConfig {
            path: dir.path().join("sb.db"),
            ..Default::default()
        },
        snapshot_interval_seconds: 0,
        ..StorageConfig::default()
    };
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
    // The first instance's lock file is released when its last handle drops; wait for it.
    let mut tries = 0;
    loop {
        match b2.initialize_persistence().await {
            Ok(_) => break,
            Err(StorageError::InUse { .. }) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let ids: Vec<String> = b2
        .read(|br| br.peek(&QueuePath::queue("q"), 0, 10))
        .unwrap()
        .into_iter()
        .map(|m| m.content.message_id.clone())
        .collect();
    assert_eq!(ids, vec!["before", "during", "after"]);
}
