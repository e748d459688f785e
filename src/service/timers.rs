//! The timer loop: applies a `Tick` whenever a lock, schedule, TTL or idle deadline falls due.

use super::ServiceBusBackend;
use crate::broker::op::Op;
use crate::time::Millis;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl ServiceBusBackend {
    /// Runs the timer loop until shutdown: applies a `Tick` whenever something falls due.
    pub async fn run_timers(&self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if shutdown.is_cancelled() || self.inner.closing.load(Ordering::SeqCst) {
                return;
            }
            // From here until the sleep below, every operation with a deadline wakes us: the
            // state read next may predate it.
            self.inner.timer_due.store(Millis::MAX, Ordering::SeqCst);
            let next = self.read(|b| b.next_due());
            let now = self.now();
            match next {
                Some(t) if t <= now => {
                    if let Err(e) = self.execute(Op::Tick).await {
                        tracing::warn!("timer tick failed: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
                _ => {}
            }
            // Wall-clock waits are capped so an injected clock that jumps is noticed promptly.
            self.inner
                .timer_due
                .store(next.unwrap_or(Millis::MAX), Ordering::SeqCst);
            let wait = next
                .map(|t| Duration::from_millis((t - now).clamp(1, 1000) as u64))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.timer_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
