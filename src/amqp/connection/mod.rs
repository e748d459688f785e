//! One AMQP connection: SASL, then the connection/session/link state machine.
//!
//! Shape: a reader task decodes frames into a bounded channel (so a flooding client is slowed
//! by TCP, not buffered); the connection task owns all state and the write half and reacts to
//! frames and to events posted by the work it started. Work that waits on the broker (a send's
//! durable acknowledgement, a long-poll receive, a management request, a session accept) runs
//! in spawned tasks so the connection keeps serving heartbeats, flows and other links while it
//! waits. Work whose order matters (the sends of one link, the settlements of one link, the
//! requests of one management link) goes through one sequential worker per link.
//!
//! Service Bus specifics live here: delivery tag = the 16-byte lock token in .NET GUID byte
//! order (the SDKs do `uuid.UUID(bytes_le=tag)`); the settled disposition echo the SDKs wait
//! for (`rcv-settle-mode=second`); `modified(undeliverable-here)` = defer; `rejected` with
//! `com.microsoft:dead-letter` = dead-letter; session receivers via the
//! `com.microsoft:session-filter` source filter with the lock expiry in the attach properties.
//!
//! Files: `sasl.rs` (the SASL exchange and protocol header), `state.rs` (connection, session and
//! link state), `attach.rs` (attach, detach, session accept), `transfer.rs` (incoming transfers:
//! sends, `$cbs` and `$management` requests), `delivery.rs` (outgoing delivery: flow, credit,
//! drain, the pump and the receives behind it), `settlement.rs` (dispositions), `authorization.rs`
//! (SAS grants and their expiry). This file holds the run loop, frame dispatch and teardown.

mod attach;
mod authorization;
mod coordinator;
mod delivery;
mod sasl;
mod settlement;
mod state;
mod transfer;

pub(crate) use self::coordinator::txn_wire_error;
use self::sasl::handshake;
use self::state::{Conn, Event, Job, Link, Session, Worker};
use super::cbs;
use super::errors::error;
use super::frames::{
    decode_amqp_body, encode_performative, read_frame, FrameError, RawFrame, FRAME_TYPE_AMQP,
    HEARTBEAT, MIN_MAX_FRAME_SIZE,
};
use super::symbols as sym;
use super::AmqpOptions;
use crate::service::ServiceBusBackend;
use crate::time::Millis;
use fe2o3_amqp_types::definitions::{Error as AmqpError, Handle};
use fe2o3_amqp_types::performatives::{
    Begin, ChannelMax, Close, End, MaxFrameSize, Open, Performative,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// .NET ticks at the UNIX epoch.
pub const DOTNET_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// Credit granted to a client's sender link, topped up when half is used.
const SENDER_CREDIT: u32 = 1000;
/// Our session incoming window, re-opened when half is used.
const INCOMING_WINDOW: u32 = 5000;
/// Most messages one receive fetches for a link.
const MAX_FETCH: u32 = 100;
/// Most frames and events handled after a wake-up before what they produced is written:
/// frames that arrived together (a sender's burst of transfers, a receiver's dispositions)
/// are answered with one write instead of one each.
const READY_BATCH: usize = 256;
/// Output that is written at once even if more work is ready.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// How long the SASL/protocol handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection waits for its in-flight work.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message we assemble from multi-frame transfers before refusing it.
const MAX_ASSEMBLED: usize = 64 * 1024 * 1024;

/// .NET ticks of a UNIX millisecond time (what [`sym::LOCKED_UNTIL_UTC`] carries).
pub fn dotnet_ticks(ms: Millis) -> i64 {
    ms.saturating_mul(10_000).saturating_add(DOTNET_EPOCH_TICKS)
}

/// Serves one connection until the peer closes it, it fails, or `shutdown` fires.
pub async fn serve<S>(
    stream: S,
    backend: ServiceBusBackend,
    opts: Arc<AmqpOptions>,
    shutdown: CancellationToken,
) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut rd, &mut wr)).await {
        Err(_) => return Err(FrameError::Malformed("handshake timed out".into())),
        Ok(r) => r?,
    }
    let _open = crate::metrics::amqp_connection_open();
    let (frame_tx, frame_rx) = mpsc::channel(64);
    let max = opts.max_frame_size;
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut rd, max).await;
            let stop = !matches!(r, Ok(Some(_)));
            if frame_tx.send(r).await.is_err() || stop {
                break;
            }
        }
    });
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        backend,
        opts,
        out: Vec::new(),
        held_disposition: None,
        events: events_tx,
        remote_max_frame: 512 * 1024,
        remote_idle: None,
        opened: false,
        closed: false,
        sessions: HashMap::new(),
        next_link_id: 1,
        locks: Arc::new(Mutex::new(HashMap::new())),
        tasks: Vec::new(),
        grants: Arc::new(cbs::Grants::default()),
        opened_at: Instant::now(),
        link_names: HashMap::new(),
        hostname: None,
    };
    let result = conn.run(frame_rx, events_rx, &mut wr, shutdown).await;
    reader.abort();
    conn.teardown().await;
    let _ = wr.shutdown().await;
    result
}

impl Conn {
    pub(super) fn send(&mut self, ch: u16, perf: Performative, payload: &[u8]) {
        // A disposition held back to be merged goes first: frames leave in the order made.
        self.flush_disposition();
        match encode_performative(ch, &perf, payload) {
            Ok(bytes) => self.out.extend(bytes),
            Err(e) => tracing::error!("cannot encode a performative: {e}"),
        }
    }

    pub(super) fn spawn(&mut self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(fut));
    }

    pub(super) fn worker(&mut self) -> Worker {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        self.spawn(async move {
            while let Some(job) = rx.recv().await {
                job.await;
            }
        });
        Worker { tx }
    }

    pub(super) fn close_with(&mut self, err: Option<AmqpError>) {
        if !self.closed {
            self.send(0, Performative::Close(Close { error: err }), &[]);
            self.closed = true;
        }
    }

    pub(super) async fn run<W: AsyncWrite + Unpin>(
        &mut self,
        mut frames: mpsc::Receiver<Result<Option<RawFrame>, FrameError>>,
        mut events: mpsc::UnboundedReceiver<Event>,
        wr: &mut W,
        shutdown: CancellationToken,
    ) -> Result<(), FrameError> {
        let idle = Duration::from_millis(self.opts.idle_timeout_ms.max(1000) as u64);
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        let mut result = Ok(());
        let grant_check = Duration::from_millis(u64::from(self.opts.grant_check_ms.max(1)));
        let mut grant_check_at = Instant::now() + grant_check;
        let grant_checks = self.opts.sas.is_some();
        loop {
            let heartbeat_at = self
                .remote_idle
                .map(|d| last_write + d / 2)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let idle_deadline = last_read + idle * 2;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.close_with(Some(error(sym::CONNECTION_FORCED, "The server is shutting down.")));
                }
                Some(ev) = events.recv() => self.on_event(ev),
                frame = frames.recv() => {
                    last_read = Instant::now();
                    self.on_read(frame, &mut result);
                }
                _ = tokio::time::sleep_until(grant_check_at), if grant_checks => {
                    self.enforce_grants();
                    grant_check_at = Instant::now() + grant_check;
                }
                _ = tokio::time::sleep_until(heartbeat_at.min(idle_deadline)) => {
                    if Instant::now() >= idle_deadline {
                        self.close_with(Some(error(sym::RESOURCE_LIMIT_EXCEEDED, "local-idle-timeout expired")));
                    } else if self.out.is_empty() {
                        self.out.extend_from_slice(&HEARTBEAT);
                    }
                }
            }
            // Whatever else is ready now goes out in the same write.
            let mut budget = READY_BATCH;
            while budget > 0 && !self.closed && self.out.len() < WRITE_BATCH_BYTES {
                budget -= 1;
                if let Ok(ev) = events.try_recv() {
                    self.on_event(ev);
                } else if let Ok(frame) = frames.try_recv() {
                    last_read = Instant::now();
                    self.on_read(Some(frame), &mut result);
                } else {
                    break;
                }
            }
            self.flush_disposition();
            if !self.out.is_empty() {
                let buf = std::mem::take(&mut self.out);
                if let Err(e) = wr.write_all(&buf).await {
                    return Err(e.into());
                }
                wr.flush().await?;
                last_write = Instant::now();
            }
            if self.closed {
                return result;
            }
        }
    }

    /// Cancels waits, gives back what was fetched but not delivered, releases session locks,
    /// and waits (bounded) for in-flight work, so nothing outlives the connection unseen.
    pub(super) async fn teardown(&mut self) {
        let chans: Vec<u16> = self.sessions.keys().copied().collect();
        for ch in chans {
            self.end_session(ch);
        }
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(tasks)).await;
    }

    /// One read from the frame reader: a frame, the end of the stream, or a framing error
    /// (answered with a close; the error is the connection's result).
    fn on_read(
        &mut self,
        frame: Option<Result<Option<RawFrame>, FrameError>>,
        result: &mut Result<(), FrameError>,
    ) {
        match frame {
            Some(Ok(Some(f))) => self.on_frame(f),
            Some(Ok(None)) | None => {
                self.closed = true;
            }
            Some(Err(e)) => {
                let cond = match &e {
                    FrameError::TooLarge { .. } => sym::CONNECTION_FRAMING_ERROR,
                    FrameError::Io(_) => sym::CONNECTION_FRAMING_ERROR,
                    _ => sym::DECODE_ERROR,
                };
                self.close_with(Some(error(cond, e.to_string())));
                *result = Err(e);
            }
        }
    }

    pub(super) fn on_frame(&mut self, f: RawFrame) {
        if f.frame_type != FRAME_TYPE_AMQP {
            self.close_with(Some(error(
                sym::CONNECTION_FRAMING_ERROR,
                "unexpected frame type",
            )));
            return;
        }
        let decoded = match decode_amqp_body(&f.body) {
            Ok(d) => d,
            Err(e) => {
                self.close_with(Some(error(sym::DECODE_ERROR, e.to_string())));
                return;
            }
        };
        let Some((perf, payload)) = decoded else {
            return; // heartbeat
        };
        let ch = f.channel;
        if !self.opened {
            match perf {
                Performative::Open(open) => self.on_open(open),
                _ => self.close_with(Some(error(
                    sym::NOT_ALLOWED,
                    "the first frame must be open",
                ))),
            }
            return;
        }
        match perf {
            Performative::Open(_) => {
                self.close_with(Some(error(sym::NOT_ALLOWED, "duplicate open")));
            }
            Performative::Begin(b) => self.on_begin(ch, b),
            Performative::Attach(a) => self.on_attach(ch, a),
            Performative::Flow(fl) => self.on_flow(ch, fl),
            Performative::Transfer(t) => self.on_transfer(ch, t, &payload),
            Performative::Disposition(d) => self.on_disposition(ch, d),
            Performative::Detach(d) => self.on_detach(ch, d),
            Performative::End(_) => {
                self.end_session(ch);
                self.send(ch, Performative::End(End { error: None }), &[]);
            }
            Performative::Close(_) => {
                self.close_with(None);
            }
        }
    }

    pub(super) fn on_open(&mut self, open: Open) {
        self.opened = true;
        self.hostname = open.hostname.as_deref().map(Arc::from);
        self.remote_max_frame = open.max_frame_size.0.max(MIN_MAX_FRAME_SIZE);
        self.remote_idle = open
            .idle_time_out
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64));
        let reply = Open {
            container_id: format!("localzure-{}", uuid::Uuid::new_v4().simple()),
            hostname: None,
            max_frame_size: MaxFrameSize(self.opts.max_frame_size),
            // Our limit, not an echo of the client's (AMQP 1.0 §2.7.1: each side announces the
            // highest channel it accepts).
            channel_max: ChannelMax(self.opts.channel_max),
            idle_time_out: Some(self.opts.idle_timeout_ms),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(0, Performative::Open(reply), &[]);
    }

    pub(super) fn on_begin(&mut self, ch: u16, b: Begin) {
        if ch > self.opts.channel_max {
            // AMQP 1.0 §2.7.1 (open, channel-max): a channel outside the announced range
            // closes the connection with framing-error.
            let msg = format!(
                "channel {ch} is beyond the connection's channel-max {}",
                self.opts.channel_max
            );
            self.close_with(Some(error(sym::CONNECTION_FRAMING_ERROR, msg)));
            return;
        }
        if self.sessions.contains_key(&ch) {
            self.close_with(Some(error(
                sym::CONNECTION_FRAMING_ERROR,
                "channel already in use",
            )));
            return;
        }
        self.sessions.insert(
            ch,
            Session {
                next_outgoing_id: 1,
                next_incoming_id: b.next_outgoing_id,
                incoming_window: INCOMING_WINDOW,
                remote_incoming_window: b.incoming_window,
                next_delivery_id: 0,
                links: HashMap::new(),
                unsettled: HashMap::new(),
            },
        );
        let reply = Begin {
            remote_channel: Some(ch),
            next_outgoing_id: 1,
            incoming_window: INCOMING_WINDOW,
            outgoing_window: u32::MAX,
            handle_max: Handle(self.opts.handle_max),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(ch, Performative::Begin(reply), &[]);
    }

    /// Removes a session, cleaning up its links (as if each was detached).
    pub(super) fn end_session(&mut self, ch: u16) {
        let Some(mut s) = self.sessions.remove(&ch) else {
            return;
        };
        let links: Vec<Link> = s.links.drain().map(|(_, l)| l).collect();
        for l in links {
            self.cleanup_link(l);
        }
    }

    pub(super) fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Disposition {
                ch,
                role,
                delivery_id,
                state,
            } => self.send_disposition(ch, role, delivery_id, state),
            Event::Reply {
                ch,
                node,
                reply_to,
                message,
            } => self.on_reply(ch, node, reply_to, message),
            Event::Fetched {
                ch,
                link_id,
                path,
                mode,
                result,
            } => self.on_fetched(ch, link_id, path, mode, result),
            Event::SessionAccepted {
                ch,
                link_id,
                path,
                result,
            } => self.on_session_accepted(ch, link_id, path, result),
        }
    }
}
