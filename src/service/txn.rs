//! Transactions at the service: the open transactions' buffers ([`Transactions`]), the commit
//! as one [`Op::Commit`] through [`ServiceBusBackend::execute`] (one operation-log record), and
//! the timer that rolls back transactions past the service's timeout (two minutes from the first
//! operation, learn.microsoft.com service-bus-transactions.md "Timeout").
//!
//! Only AMQP uses this: REST operations are never transactional, as in the service.

use super::{ServiceBusBackend, ServiceError};
use crate::broker::message::NewMessage;
use crate::broker::op::{Op, QueuePath, Settlement};
use crate::broker::txn::{Transactions, TxnError};
use crate::sync::lock;
use std::time::Duration;

/// The open transactions and whether their timer task runs.
#[derive(Debug, Default)]
pub(super) struct TxnTable {
    table: Transactions,
    timer_running: bool,
}

/// Why a discharge did not commit.
#[derive(Debug)]
pub enum DischargeError {
    /// Unknown id, timed out, or refused while enlisting.
    Txn(TxnError),
    /// The commit itself was refused (a lock was lost, an entity is gone, a quota is hit):
    /// nothing of the transaction was applied.
    Rollback(ServiceError),
}

impl ServiceBusBackend {
    /// Sets the transaction timeout (the service's is two minutes; tests shorten it).
    pub fn set_transaction_timeout_ms(&self, ms: i64) {
        lock(&self.inner.txns).table = Transactions::new(ms.max(1));
    }

    /// Opens a transaction (AMQP `declare`); returns its id.
    pub fn txn_declare(&self) -> u64 {
        let now = self.now();
        let mut t = lock(&self.inner.txns);
        t.table.expire(now);
        let id = t.table.declare(now);
        if !t.timer_running {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                t.timer_running = true;
                let me = self.clone();
                rt.spawn(async move { me.run_txn_timer().await });
            }
        }
        id
    }

    /// Buffers a transactional send (not visible until commit). `via` names the entity the
    /// link sends through when it differs from `entity` (send-via).
    pub fn txn_send(
        &self,
        id: u64,
        via: Option<&str>,
        entity: String,
        messages: Vec<NewMessage>,
    ) -> Result<(), TxnError> {
        let now = self.now();
        let mut t = lock(&self.inner.txns);
        t.table.expire(now);
        t.table
            .enlist_send(id, via, Op::Send { entity, messages }, now)
    }

    /// Buffers a transactional settlement: the message stays locked to its receiver until
    /// the transaction commits.
    pub fn txn_settle(
        &self,
        id: u64,
        from: &QueuePath,
        lock_token: uuid::Uuid,
        settlement: Settlement,
    ) -> Result<(), TxnError> {
        let now = self.now();
        let mut t = lock(&self.inner.txns);
        t.table.expire(now);
        t.table.enlist_settle(id, from, lock_token, settlement, now)
    }

    /// Buffers another transactional part made through `$management` on the entity `on`
    /// (a cancellation of scheduled messages, a session state). The caller checks first
    /// ([`ServiceBusBackend::txn_check`]) that it could apply now.
    pub fn txn_enlist(&self, id: u64, on: &str, op: Op) -> Result<(), TxnError> {
        let now = self.now();
        let mut t = lock(&self.inner.txns);
        t.table.expire(now);
        t.table.enlist_op(id, on, op, now)
    }

    /// Counts an operation that takes effect at once (a lock renewal) in the transaction:
    /// checks the id and the entity `on`, and starts the timer on the first operation.
    pub fn txn_touch(&self, id: u64, on: &str) -> Result<(), TxnError> {
        let now = self.now();
        let mut t = lock(&self.inner.txns);
        t.table.expire(now);
        t.table.touch(id, on, now)
    }

    /// Checks that transactional parts could apply now (locks held, entities present,
    /// messages scheduled), so a request can be refused when it is made rather than at commit.
    pub fn txn_check(&self, ops: &[Op]) -> Result<(), crate::broker::error::BrokerError> {
        let now = self.now();
        self.read(|b| b.check_commit(ops, now))
    }

    /// Ends a transaction (AMQP `discharge`): `fail` rolls back; otherwise every buffered
    /// operation is applied as one [`Op::Commit`], all or nothing.
    pub async fn txn_discharge(&self, id: u64, fail: bool) -> Result<(), DischargeError> {
        let ops = {
            let now = self.now();
            let mut t = lock(&self.inner.txns);
            t.table.expire(now);
            t.table.discharge(id, fail).map_err(DischargeError::Txn)?
        };
        if ops.is_empty() {
            return Ok(());
        }
        self.execute(Op::Commit { ops })
            .await
            .map(drop)
            .map_err(DischargeError::Rollback)
    }

    /// How many transactions are open (for tests and diagnostics).
    pub fn open_transactions(&self) -> usize {
        lock(&self.inner.txns).table.len()
    }

    /// Rolls back timed-out transactions until none is open, then stops (the next declare
    /// starts it again).
    async fn run_txn_timer(&self) {
        loop {
            let wait = {
                let now = self.now();
                let mut t = lock(&self.inner.txns);
                for id in t.table.expire(now) {
                    tracing::info!(txn = id, "transaction timed out and was rolled back");
                }
                match t.table.next_due() {
                    None => {
                        t.timer_running = false;
                        return;
                    }
                    Some(due) => Duration::from_millis((due - now).clamp(1, 1000) as u64),
                }
            };
            tokio::select! {
                _ = self.inner.draining.cancelled() => {
                    lock(&self.inner.txns).timer_running = false;
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
