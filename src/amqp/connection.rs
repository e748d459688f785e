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

use super::address::{self, Node};
use super::convert::{self, decode_message, decode_send, encode_message, Encoding};
use super::frames::{
    decode_amqp_body, descriptor_code, encode_performative, encode_sasl, read_frame,
    read_protocol_header, FrameError, RawFrame, AMQP_HEADER, FRAME_TYPE_AMQP, FRAME_TYPE_SASL,
    HEARTBEAT, MIN_MAX_FRAME_SIZE, SASL_HEADER,
};
use super::link::{accept_session, fetch, release, settlement_of};
use super::management::{self, lock_key, SessionLocks};
use super::{cbs, wire_error, AmqpOptions, WireError};
use crate::broker::message::Message;
use crate::broker::op::{Op, QueuePath, ReceiveMode, SessionRef, SessionSelect};
use crate::service::ServiceBusBackend;
use crate::time::Millis;
use fe2o3_amqp_types::definitions::{
    Error as AmqpError, ErrorCondition, Fields, Handle, ReceiverSettleMode, Role, SenderSettleMode,
};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Rejected, Source, TargetArchetype};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Close, Detach, Disposition, End, Flow, MaxFrameSize, Open,
    Performative, Transfer,
};
use fe2o3_amqp_types::sasl::{SaslCode, SaslMechanisms, SaslOutcome};
use futures::future::BoxFuture;
use serde_amqp::primitives::{Array, OrderedMap, Symbol};
use serde_amqp::Value as AV;
use serde_bytes::ByteBuf;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The session-filter key of a session receiver's source.
pub const SESSION_FILTER: &str = "com.microsoft:session-filter";
/// The attach property carrying a session's lock expiry (.NET ticks).
pub const LOCKED_UNTIL_UTC: &str = "com.microsoft:locked-until-utc";
/// The attach property carrying the client's operation timeout (ms).
pub const OPERATION_TIMEOUT: &str = "com.microsoft:timeout";
/// The rejected-outcome condition that asks for dead-lettering.
pub const DEAD_LETTER_CONDITION: &str = "com.microsoft:dead-letter";
/// .NET ticks at the UNIX epoch.
pub const DOTNET_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// Credit granted to a client's sender link, topped up when half is used.
const SENDER_CREDIT: u32 = 1000;
/// Our session incoming window, re-opened when half is used.
const INCOMING_WINDOW: u32 = 5000;
/// Most messages one receive fetches for a link.
const MAX_FETCH: u32 = 100;
/// How long the SASL/protocol handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection waits for its in-flight work.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message we assemble from multi-frame transfers before refusing it.
const MAX_ASSEMBLED: usize = 64 * 1024 * 1024;

/// .NET ticks of a UNIX millisecond time (what `com.microsoft:locked-until-utc` carries).
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
    };
    let result = conn.run(frame_rx, events_rx, &mut wr, shutdown).await;
    reader.abort();
    conn.teardown().await;
    let _ = wr.shutdown().await;
    result
}

/// SASL (any mechanism, any credentials) and the AMQP protocol header.
async fn handshake<R, W>(rd: &mut R, wr: &mut W) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let header = read_protocol_header(rd).await?;
        if header == SASL_HEADER {
            wr.write_all(&SASL_HEADER).await?;
            let mechanisms = SaslMechanisms {
                sasl_server_mechanisms: Array(
                    ["MSSBCBS", "ANONYMOUS", "PLAIN", "EXTERNAL"]
                        .into_iter()
                        .map(Symbol::from)
                        .collect(),
                ),
            };
            wr.write_all(&encode_sasl(&mechanisms)?).await?;
            wr.flush().await?;
            let init = read_frame(rd, 64 * 1024)
                .await?
                .ok_or_else(|| FrameError::Malformed("connection closed during SASL".into()))?;
            if init.frame_type != FRAME_TYPE_SASL || descriptor_code(&init.body) != Some(0x41) {
                return Err(FrameError::Malformed("expected sasl-init".into()));
            }
            let outcome = SaslOutcome {
                code: SaslCode::Ok,
                additional_data: None,
            };
            wr.write_all(&encode_sasl(&outcome)?).await?;
            wr.flush().await?;
            continue;
        }
        if header == AMQP_HEADER {
            wr.write_all(&AMQP_HEADER).await?;
            wr.flush().await?;
            return Ok(());
        }
        // Tell the peer which protocol we speak, then hang up (AMQP 1.0 §2.2).
        wr.write_all(&SASL_HEADER).await?;
        wr.flush().await?;
        return Err(FrameError::Malformed(format!(
            "unsupported protocol header {header:?}"
        )));
    }
}

/// Work finished outside the connection task, posted back to it.
enum Event {
    /// Send a settled disposition for one delivery.
    Disposition {
        ch: u16,
        role: Role,
        delivery_id: u32,
        state: DeliveryState,
    },
    /// A `$cbs` / `$management` response to deliver on the reply link of `node`.
    Reply {
        ch: u16,
        node: String,
        reply_to: Option<String>,
        message: Vec<u8>,
    },
    /// A receive finished for an entity receiver link.
    Fetched {
        ch: u16,
        link_id: u64,
        path: QueuePath,
        mode: ReceiveMode,
        result: Result<Vec<Message>, WireError>,
    },
    /// A session accept finished for a session receiver link.
    SessionAccepted {
        ch: u16,
        link_id: u64,
        path: QueuePath,
        result: Result<(String, uuid::Uuid, Millis), WireError>,
    },
}

type Job = BoxFuture<'static, ()>;

/// A sequential worker: jobs run one after another, in submission order.
struct Worker {
    tx: mpsc::UnboundedSender<Job>,
}

impl Worker {
    fn submit(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

/// A message being assembled from multi-frame transfers.
struct Partial {
    delivery_id: Option<u32>,
    settled: bool,
    format: u32,
    bytes: Vec<u8>,
}

/// What a client-sender link (we receive) delivers to.
enum InTarget {
    Entity(String),
    Cbs,
    Management(String),
}

/// State of an entity receiver link (we send messages from a queue or subscription).
struct EntityOut {
    path: QueuePath,
    mode: ReceiveMode,
    session: Option<SessionRef>,
    /// False while a session receiver waits for a session.
    ready: bool,
    fetch: Option<CancellationToken>,
    accept: Option<CancellationToken>,
    /// Fetched but not yet deliverable (credit or window shrank meanwhile).
    buffered: VecDeque<Message>,
    /// A drain saw the entity empty (or got what there was): finish the drain next.
    drain_checked: bool,
    settle: Worker,
    /// The attach frame to answer with once the session is accepted.
    pending_attach: Option<Attach>,
}

enum Kind {
    In {
        target: InTarget,
        address: String,
        worker: Worker,
        partial: Option<Partial>,
    },
    Replies {
        source: String,
        target: String,
        queue: VecDeque<Vec<u8>>,
    },
    Out(Box<EntityOut>),
    /// We detached it with an error and wait for the client's detach.
    Closed,
}

struct Link {
    id: u64,
    credit: u32,
    delivery_count: u32,
    drain: bool,
    kind: Kind,
}

/// An outgoing delivery the client has not settled yet.
struct Unsettled {
    path: QueuePath,
    token: uuid::Uuid,
    link_id: u64,
}

struct Session {
    next_outgoing_id: u32,
    next_incoming_id: u32,
    incoming_window: u32,
    remote_incoming_window: u32,
    next_delivery_id: u32,
    links: HashMap<u32, Link>,
    unsettled: HashMap<u32, Unsettled>,
}

struct Conn {
    backend: ServiceBusBackend,
    opts: Arc<AmqpOptions>,
    out: Vec<u8>,
    events: mpsc::UnboundedSender<Event>,
    remote_max_frame: u32,
    remote_idle: Option<Duration>,
    opened: bool,
    closed: bool,
    /// Sessions by channel (we answer each begin on the channel number the client used).
    sessions: HashMap<u16, Session>,
    next_link_id: u64,
    locks: SessionLocks,
    tasks: Vec<JoinHandle<()>>,
    /// Accepted put-tokens of this connection (only recorded with SAS validation on).
    grants: Arc<cbs::Grants>,
    /// When the connection started (the deadline for its first token counts from here).
    opened_at: Instant,
}

/// The entity whose token a link needs (with SAS validation on); `None` for `$cbs` links and
/// links already closed.
fn link_entity(kind: &Kind) -> Option<String> {
    match kind {
        Kind::In {
            target: InTarget::Entity(p) | InTarget::Management(p),
            ..
        } => Some(p.clone()),
        Kind::In {
            target: InTarget::Cbs,
            ..
        }
        | Kind::Closed => None,
        Kind::Replies { source, .. } => match address::parse(source) {
            Node::Management(p) => Some(p),
            _ => None,
        },
        Kind::Out(o) => Some(o.path.display()),
    }
}

/// The refusal of a link or management request that no unexpired token of its connection
/// covers (`claim`: "Send" or "Listen", as Azure words it).
fn unauthorized_error(entity: &str, claim: &str) -> WireError {
    WireError::new(
        "amqp:unauthorized-access",
        format!(
            "Unauthorized access. '{claim}' claim(s) are required to perform this operation. Resource: 'sb://localhost/{}'.",
            entity.to_ascii_lowercase()
        ),
        401,
    )
}

fn error(condition: &str, description: impl Into<String>) -> AmqpError {
    AmqpError::new(
        ErrorCondition::Custom(Symbol::from(condition)),
        Some(description.into()),
        None,
    )
}

fn wire(e: &WireError) -> AmqpError {
    error(&e.condition, e.description.clone())
}

fn source_address(a: &Attach) -> String {
    a.source
        .as_ref()
        .and_then(|s| s.address.clone())
        .unwrap_or_default()
}

fn target_address(a: &Attach) -> String {
    match a.target.as_deref() {
        Some(TargetArchetype::Target(t)) => t.address.clone().unwrap_or_default(),
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

fn session_filter(source: &Option<Box<Source>>) -> Option<AV> {
    let filter = source.as_ref()?.filter.as_ref()?;
    filter
        .iter()
        .find(|(k, _)| k.0.eq_ignore_ascii_case(SESSION_FILTER))
        .map(|(_, v)| match v {
            AV::Described(d) => d.value.clone(),
            other => other.clone(),
        })
}

fn link_property(a: &Attach, key: &str) -> Option<AV> {
    a.properties
        .as_ref()?
        .iter()
        .find(|(k, _)| k.0 == key)
        .map(|(_, v)| v.clone())
}

impl Conn {
    fn send(&mut self, ch: u16, perf: Performative, payload: &[u8]) {
        match encode_performative(ch, &perf, payload) {
            Ok(bytes) => self.out.extend(bytes),
            Err(e) => tracing::error!("cannot encode a performative: {e}"),
        }
    }

    fn spawn(&mut self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(fut));
    }

    fn worker(&mut self) -> Worker {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        self.spawn(async move {
            while let Some(job) = rx.recv().await {
                job.await;
            }
        });
        Worker { tx }
    }

    fn close_with(&mut self, err: Option<AmqpError>) {
        if !self.closed {
            self.send(0, Performative::Close(Close { error: err }), &[]);
            self.closed = true;
        }
    }

    async fn run<W: AsyncWrite + Unpin>(
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
                    self.close_with(Some(error("amqp:connection:forced", "The server is shutting down.")));
                }
                Some(ev) = events.recv() => self.on_event(ev),
                frame = frames.recv() => {
                    last_read = Instant::now();
                    match frame {
                        Some(Ok(Some(f))) => self.on_frame(f),
                        Some(Ok(None)) | None => { self.closed = true; }
                        Some(Err(e)) => {
                            let cond = match &e {
                                FrameError::TooLarge { .. } => "amqp:connection:framing-error",
                                FrameError::Io(_) => "amqp:connection:framing-error",
                                _ => "amqp:decode-error",
                            };
                            self.close_with(Some(error(cond, e.to_string())));
                            result = Err(e);
                        }
                    }
                }
                _ = tokio::time::sleep_until(grant_check_at), if grant_checks => {
                    self.enforce_grants();
                    grant_check_at = Instant::now() + grant_check;
                }
                _ = tokio::time::sleep_until(heartbeat_at.min(idle_deadline)) => {
                    if Instant::now() >= idle_deadline {
                        self.close_with(Some(error("amqp:resource-limit-exceeded", "local-idle-timeout expired")));
                    } else if self.out.is_empty() {
                        self.out.extend_from_slice(&HEARTBEAT);
                    }
                }
            }
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
    async fn teardown(&mut self) {
        let chans: Vec<u16> = self.sessions.keys().copied().collect();
        for ch in chans {
            self.end_session(ch);
        }
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(tasks)).await;
    }

    // ----- frames ------------------------------------------------------------------------------

    fn on_frame(&mut self, f: RawFrame) {
        if f.frame_type != FRAME_TYPE_AMQP {
            self.close_with(Some(error(
                "amqp:connection:framing-error",
                "unexpected frame type",
            )));
            return;
        }
        let decoded = match decode_amqp_body(&f.body) {
            Ok(d) => d,
            Err(e) => {
                self.close_with(Some(error("amqp:decode-error", e.to_string())));
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
                    "amqp:not-allowed",
                    "the first frame must be open",
                ))),
            }
            return;
        }
        match perf {
            Performative::Open(_) => {
                self.close_with(Some(error("amqp:not-allowed", "duplicate open")));
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

    fn on_open(&mut self, open: Open) {
        self.opened = true;
        self.remote_max_frame = open.max_frame_size.0.max(MIN_MAX_FRAME_SIZE);
        self.remote_idle = open
            .idle_time_out
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64));
        let reply = Open {
            container_id: format!("localzure-{}", uuid::Uuid::new_v4().simple()),
            hostname: None,
            max_frame_size: MaxFrameSize(self.opts.max_frame_size),
            channel_max: ChannelMax(open.channel_max.0),
            idle_time_out: Some(self.opts.idle_timeout_ms),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(0, Performative::Open(reply), &[]);
    }

    fn on_begin(&mut self, ch: u16, b: Begin) {
        if self.sessions.contains_key(&ch) {
            self.close_with(Some(error(
                "amqp:connection:framing-error",
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
            handle_max: Handle(u32::MAX),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(ch, Performative::Begin(reply), &[]);
    }

    /// Removes a session, cleaning up its links (as if each was detached).
    fn end_session(&mut self, ch: u16) {
        let Some(mut s) = self.sessions.remove(&ch) else {
            return;
        };
        let links: Vec<Link> = s.links.drain().map(|(_, l)| l).collect();
        for l in links {
            self.cleanup_link(l);
        }
    }

    fn attach_reply(&self, a: &Attach, role: Role) -> Attach {
        let is_sender = role == Role::Sender;
        Attach {
            name: a.name.clone(),
            handle: a.handle.clone(),
            role,
            snd_settle_mode: a.snd_settle_mode.clone(),
            rcv_settle_mode: a.rcv_settle_mode.clone(),
            source: a.source.clone(),
            target: a.target.clone(),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: if is_sender { Some(0) } else { None },
            max_message_size: Some(self.opts.max_message_size),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }

    /// Answers an attach we refuse: attach (so the client's link exists), then a closing detach
    /// with the error, as the service does for a missing entity.
    fn refuse_attach(&mut self, ch: u16, reply: Attach, err: AmqpError, link_id: u64) {
        let handle = reply.handle.clone();
        self.send(ch, Performative::Attach(reply), &[]);
        self.send(
            ch,
            Performative::Detach(Detach {
                handle: handle.clone(),
                closed: true,
                error: Some(err),
            }),
            &[],
        );
        if let Some(s) = self.sessions.get_mut(&ch) {
            s.links.insert(
                handle.0,
                Link {
                    id: link_id,
                    credit: 0,
                    delivery_count: 0,
                    drain: false,
                    kind: Kind::Closed,
                },
            );
        }
    }

    fn on_attach(&mut self, ch: u16, a: Attach) {
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        let handle = a.handle.0;
        if s.links.contains_key(&handle) {
            self.close_with(Some(error(
                "amqp:session:handle-in-use",
                "the handle is already attached",
            )));
            return;
        }
        let link_id = self.next_link_id;
        self.next_link_id += 1;
        match a.role {
            Role::Sender => self.attach_incoming(ch, a, link_id),
            Role::Receiver => self.attach_outgoing(ch, a, link_id),
        }
    }

    /// With SAS validation on: the error refusing a link to `entity` that no unexpired
    /// put-token of this connection covers (`claim`: "Send" or "Listen", as Azure words it).
    fn unauthorized(&self, entity: &str, claim: &str) -> Option<AmqpError> {
        self.opts.sas.as_ref()?;
        if self.grants.cover(entity, self.backend.now()) {
            return None;
        }
        Some(wire(&unauthorized_error(entity, claim)))
    }

    /// With SAS validation on, what Service Bus does as tokens age: every link whose entity no
    /// unexpired token of the connection covers any more (its token expired and was not
    /// renewed) is detached with `amqp:unauthorized-access`, and a connection that has put no
    /// valid token within `token_grace_ms` of opening is closed.
    fn enforce_grants(&mut self) {
        if self.opts.sas.is_none() || self.closed {
            return;
        }
        let now = self.backend.now();
        let mut expired = Vec::new();
        for (ch, s) in &self.sessions {
            for (handle, l) in &s.links {
                if let Some(entity) = link_entity(&l.kind) {
                    if !self.grants.cover(&entity, now) {
                        expired.push((*ch, *handle, entity));
                    }
                }
            }
        }
        let any = self.grants.any();
        let grace = Duration::from_millis(u64::from(self.opts.token_grace_ms));
        if !any && self.opened_at.elapsed() >= grace {
            self.close_with(Some(error(
                "amqp:unauthorized-access",
                format!(
                    "No valid token was put on $cbs within {} seconds of opening the connection.",
                    grace.as_secs_f64()
                ),
            )));
            return;
        }
        for (ch, handle, entity) in expired {
            let why = format!(
                "Unauthorized access. The token for 'sb://localhost/{}' has expired; put a new one on $cbs to keep links open.",
                entity.to_ascii_lowercase()
            );
            self.detach_with(ch, handle, error("amqp:unauthorized-access", why));
        }
    }

    /// A client sender: to an entity, `$cbs`, or a management node.
    fn attach_incoming(&mut self, ch: u16, a: Attach, link_id: u64) {
        let address = target_address(&a);
        let mut reply = self.attach_reply(&a, Role::Receiver);
        reply.rcv_settle_mode = ReceiverSettleMode::First;
        let target = match address::parse(&address) {
            Node::Cbs => InTarget::Cbs,
            Node::Management(p) => {
                if let Some(err) = self.unauthorized(&p, "Listen") {
                    self.refuse_attach(ch, reply, err, link_id);
                    return;
                }
                InTarget::Management(p)
            }
            Node::Entity(p) => {
                if let Some(err) = self.unauthorized(&p, "Send") {
                    self.refuse_attach(ch, reply, err, link_id);
                    return;
                }
                let exists = self
                    .backend
                    .read(|b| b.queue_info(&p).is_some() || b.topic_info(&p).is_some());
                if !exists {
                    let msg = format!("The messaging entity '{p}' could not be found.");
                    self.refuse_attach(ch, reply, error("amqp:not-found", msg), link_id);
                    return;
                }
                InTarget::Entity(p)
            }
        };
        let worker = self.worker();
        let delivery_count = a.initial_delivery_count.unwrap_or(0);
        self.send(ch, Performative::Attach(reply), &[]);
        if let Some(s) = self.sessions.get_mut(&ch) {
            s.links.insert(
                a.handle.0,
                Link {
                    id: link_id,
                    credit: SENDER_CREDIT,
                    delivery_count,
                    drain: false,
                    kind: Kind::In {
                        target,
                        address: address::normalize(&address).to_ascii_lowercase(),
                        worker,
                        partial: None,
                    },
                },
            );
        }
        self.link_flow(ch, a.handle.0);
    }

    /// A client receiver: from an entity, or the reply link of `$cbs` / a management node.
    fn attach_outgoing(&mut self, ch: u16, a: Attach, link_id: u64) {
        let source = source_address(&a);
        let reply = self.attach_reply(&a, Role::Sender);
        let node = address::parse(&source);
        if let Node::Management(p) = &node {
            if let Some(err) = self.unauthorized(p, "Listen") {
                self.refuse_attach(ch, reply, err, link_id);
                return;
            }
        }
        let path = match node {
            Node::Cbs | Node::Management(_) => {
                self.send(ch, Performative::Attach(reply), &[]);
                if let Some(s) = self.sessions.get_mut(&ch) {
                    s.links.insert(
                        a.handle.0,
                        Link {
                            id: link_id,
                            credit: 0,
                            delivery_count: 0,
                            drain: false,
                            kind: Kind::Replies {
                                source: address::normalize(&source).to_ascii_lowercase(),
                                target: address::normalize(&target_address(&a))
                                    .to_ascii_lowercase(),
                                queue: VecDeque::new(),
                            },
                        },
                    );
                }
                return;
            }
            Node::Entity(p) => p,
        };
        if let Some(err) = self.unauthorized(&path, "Listen") {
            self.refuse_attach(ch, reply, err, link_id);
            return;
        }
        let qp = match address::queue_path(&path) {
            Ok(qp) => qp,
            Err(e) => {
                self.refuse_attach(ch, reply, error("amqp:not-found", e), link_id);
                return;
            }
        };
        let props = match self.backend.read(|b| b.receivable_props(&qp)) {
            Ok(p) => p,
            Err(e) => {
                let w = wire_error(&e.into());
                self.refuse_attach(ch, reply, wire(&w), link_id);
                return;
            }
        };
        let mode = if a.snd_settle_mode == SenderSettleMode::Settled {
            ReceiveMode::ReceiveAndDelete
        } else {
            ReceiveMode::PeekLock
        };
        let filter = session_filter(&a.source);
        let wants_session = a
            .source
            .as_ref()
            .and_then(|s| s.filter.as_ref())
            .is_some_and(|f| {
                f.iter()
                    .any(|(k, _)| k.0.eq_ignore_ascii_case(SESSION_FILTER))
            });
        let session_mode = props.requires_session && !qp.dead_letter;
        if wants_session && !session_mode {
            let msg = format!(
                "It is not possible for an entity that requires no sessions ('{}') to create a session receiver.",
                qp.display()
            );
            self.refuse_attach(
                ch,
                reply,
                error("com.microsoft:argument-error", msg),
                link_id,
            );
            return;
        }
        if session_mode && !wants_session {
            let msg = format!(
                "The messaging entity '{}' requires sessions; use a session receiver.",
                qp.display()
            );
            self.refuse_attach(
                ch,
                reply,
                error("com.microsoft:argument-error", msg),
                link_id,
            );
            return;
        }
        let settle = self.worker();
        let mut out = EntityOut {
            path: qp.clone(),
            mode,
            session: None,
            ready: !session_mode,
            fetch: None,
            accept: None,
            buffered: VecDeque::new(),
            drain_checked: false,
            settle,
            pending_attach: None,
        };
        if session_mode {
            let select = match filter.as_ref().and_then(convert::text_of) {
                Some(id) => SessionSelect::Id(id),
                None => SessionSelect::Next,
            };
            let wait_ms = link_property(&a, OPERATION_TIMEOUT)
                .as_ref()
                .and_then(convert::int_of)
                .map(|ms| ms.clamp(0, u32::MAX as i64) as u64)
                .unwrap_or(self.opts.session_accept_timeout_ms as u64);
            let cancel = CancellationToken::new();
            out.accept = Some(cancel.clone());
            out.pending_attach = Some(reply);
            let backend = self.backend.clone();
            let events = self.events.clone();
            self.spawn(async move {
                let result = accept_session(
                    backend,
                    qp.clone(),
                    select,
                    Duration::from_millis(wait_ms),
                    cancel,
                )
                .await;
                let _ = events.send(Event::SessionAccepted {
                    ch,
                    link_id,
                    path: qp,
                    result,
                });
            });
        } else {
            self.send(ch, Performative::Attach(reply), &[]);
        }
        if let Some(s) = self.sessions.get_mut(&ch) {
            s.links.insert(
                a.handle.0,
                Link {
                    id: link_id,
                    credit: 0,
                    delivery_count: 0,
                    drain: false,
                    kind: Kind::Out(Box::new(out)),
                },
            );
        }
    }

    /// Sends our view of a link's flow state (credit we grant a sender, or our delivery count
    /// and credit as sender).
    fn link_flow(&mut self, ch: u16, handle: u32) {
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        let Some(l) = s.links.get(&handle) else {
            return;
        };
        let flow = Flow {
            next_incoming_id: Some(s.next_incoming_id),
            incoming_window: s.incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX,
            handle: Some(Handle(handle)),
            delivery_count: Some(l.delivery_count),
            link_credit: Some(l.credit),
            available: Some(0),
            drain: l.drain,
            echo: false,
            properties: None,
        };
        self.send(ch, Performative::Flow(flow), &[]);
    }

    fn session_flow(&mut self, ch: u16) {
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        let flow = Flow {
            next_incoming_id: Some(s.next_incoming_id),
            incoming_window: s.incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX,
            handle: None,
            delivery_count: None,
            link_credit: None,
            available: None,
            drain: false,
            echo: false,
            properties: None,
        };
        self.send(ch, Performative::Flow(flow), &[]);
    }

    fn on_flow(&mut self, ch: u16, fl: Flow) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let next_in = fl.next_incoming_id.unwrap_or(1);
        s.remote_incoming_window = next_in
            .wrapping_add(fl.incoming_window)
            .wrapping_sub(s.next_outgoing_id);
        if s.remote_incoming_window > INCOMING_WINDOW.saturating_mul(1000) {
            // A wrapped (negative) window: the client has no room.
            s.remote_incoming_window = 0;
        }
        let Some(handle) = fl.handle.map(|h| h.0) else {
            if fl.echo {
                self.session_flow(ch);
            }
            self.pump_session(ch);
            return;
        };
        let mut cancel = None;
        if let Some(l) = s.links.get_mut(&handle) {
            match &mut l.kind {
                Kind::Out(_) | Kind::Replies { .. } => {
                    let dc = fl.delivery_count.unwrap_or(0);
                    let limit = dc as i64 + fl.link_credit.unwrap_or(0) as i64;
                    l.credit = (limit - l.delivery_count as i64).clamp(0, u32::MAX as i64) as u32;
                    l.drain = fl.drain;
                    if let Kind::Out(o) = &mut l.kind {
                        if fl.drain {
                            cancel = o.fetch.clone();
                        } else {
                            o.drain_checked = false;
                        }
                    }
                }
                Kind::In { .. } | Kind::Closed => {}
            }
        }
        if let Some(c) = cancel {
            c.cancel();
        }
        if fl.echo {
            self.link_flow(ch, handle);
        }
        self.pump_session(ch);
    }

    fn on_transfer(&mut self, ch: u16, t: Transfer, payload: &[u8]) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        s.next_incoming_id = s.next_incoming_id.wrapping_add(1);
        s.incoming_window = s.incoming_window.saturating_sub(1);
        let refill = s.incoming_window < INCOMING_WINDOW / 2;
        if refill {
            s.incoming_window = INCOMING_WINDOW;
        }
        let handle = t.handle.0;
        let mut complete = None;
        let mut too_large = false;
        if let Some(l) = s.links.get_mut(&handle) {
            if let Kind::In { partial, .. } = &mut l.kind {
                if t.aborted {
                    *partial = None;
                } else {
                    let p = partial.get_or_insert_with(|| Partial {
                        delivery_id: t.delivery_id,
                        settled: t.settled.unwrap_or(false),
                        format: t.message_format.unwrap_or(0),
                        bytes: Vec::new(),
                    });
                    if t.settled == Some(true) {
                        p.settled = true;
                    }
                    p.bytes.extend_from_slice(payload);
                    if p.bytes.len() > MAX_ASSEMBLED {
                        too_large = true;
                        *partial = None;
                    } else if !t.more {
                        complete = partial.take();
                    }
                }
                if complete.is_some() || too_large {
                    l.delivery_count = l.delivery_count.wrapping_add(1);
                    l.credit = l.credit.saturating_sub(1);
                }
            }
        }
        if refill {
            self.session_flow(ch);
        }
        if too_large {
            self.detach_with(
                ch,
                handle,
                error(
                    "amqp:link:message-size-exceeded",
                    "The message is too large.",
                ),
            );
            return;
        }
        if let Some(p) = complete {
            self.on_message(ch, handle, p);
        }
    }

    /// A complete message from a client sender.
    fn on_message(&mut self, ch: u16, handle: u32, p: Partial) {
        let Some(l) = self
            .sessions
            .get_mut(&ch)
            .and_then(|s| s.links.get_mut(&handle))
        else {
            return;
        };
        let needs_credit = l.credit <= SENDER_CREDIT / 2;
        if needs_credit {
            l.credit = SENDER_CREDIT;
        }
        let Kind::In {
            target,
            address,
            worker,
            ..
        } = &l.kind
        else {
            return;
        };
        let events = self.events.clone();
        let reply = !p.settled;
        let delivery_id = p.delivery_id;
        match target {
            InTarget::Entity(entity) => {
                let decoded = decode_send(&p.bytes, p.format);
                let backend = self.backend.clone();
                let entity = entity.clone();
                worker.submit(Box::pin(async move {
                    let state = match decoded {
                        Err(e) => DeliveryState::Rejected(Rejected {
                            error: Some(error("amqp:decode-error", e.to_string())),
                        }),
                        Ok(messages) => {
                            match backend.execute(Op::Send { entity, messages }).await {
                                Ok(_) => DeliveryState::Accepted(Accepted {}),
                                Err(e) => DeliveryState::Rejected(Rejected {
                                    error: Some(wire(&wire_error(&e))),
                                }),
                            }
                        }
                    };
                    if let (true, Some(id)) = (reply, delivery_id) {
                        let _ = events.send(Event::Disposition {
                            ch,
                            role: Role::Receiver,
                            delivery_id: id,
                            state,
                        });
                    }
                }));
            }
            InTarget::Cbs | InTarget::Management(_) => {
                let node = address.clone();
                let request = decode_message(&p.bytes);
                let mgmt = match target {
                    InTarget::Management(path) => Some(path.clone()),
                    _ => None,
                };
                let backend = self.backend.clone();
                let locks = self.locks.clone();
                let sas = self.opts.sas.clone();
                let grants = self.grants.clone();
                worker.submit(Box::pin(async move {
                    let request = match request {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!("undecodable request on {node}: {e}");
                            return;
                        }
                    };
                    let response = match &mgmt {
                        None => cbs::respond(&request, sas.as_ref(), cbs::secs(backend.now())).map(
                            |(message, grant)| {
                                // Remembered before the answer goes out: the client attaches
                                // only after reading it.
                                if let Some(g) = grant {
                                    grants.record(g);
                                }
                                message
                            },
                        ),
                        Some(path) => {
                            // Tokens expire while a management link stays open.
                            let allowed = sas.is_none() || grants.cover(path, backend.now());
                            if allowed {
                                management::respond(&backend, path, &request, &locks).await
                            } else {
                                management::refuse(&request, &unauthorized_error(path, "Listen"))
                            }
                        }
                    };
                    match response {
                        Ok(message) => {
                            let _ = events.send(Event::Reply {
                                ch,
                                node,
                                reply_to: request.reply_to(),
                                message,
                            });
                        }
                        Err(e) => tracing::warn!("cannot encode a response on {node}: {e}"),
                    }
                }));
                if let (true, Some(id)) = (reply, delivery_id) {
                    self.send_disposition(
                        ch,
                        Role::Receiver,
                        id,
                        DeliveryState::Accepted(Accepted {}),
                    );
                }
            }
        }
        if needs_credit {
            self.link_flow(ch, handle);
        }
    }

    fn send_disposition(&mut self, ch: u16, role: Role, id: u32, state: DeliveryState) {
        if !self.sessions.contains_key(&ch) {
            return;
        }
        let d = Disposition {
            role,
            first: id,
            last: None,
            settled: true,
            state: Some(state),
            batchable: false,
        };
        self.send(ch, Performative::Disposition(d), &[]);
    }

    /// The client settles deliveries we sent (the role of the frame is the client's: receiver).
    fn on_disposition(&mut self, ch: u16, d: Disposition) {
        if d.role != Role::Receiver {
            return; // the client settling its own sends: we settled those already
        }
        let Some(state) = d.state else {
            return;
        };
        let last = d.last.unwrap_or(d.first);
        if last.wrapping_sub(d.first) > 10_000 {
            return;
        }
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let mut work = Vec::new();
        let mut id = d.first;
        loop {
            if let Some(u) = s.unsettled.remove(&id) {
                work.push((id, u));
            }
            if id == last {
                break;
            }
            id = id.wrapping_add(1);
        }
        let reply = !d.settled;
        for (id, u) in work {
            let Some(settlement) = settlement_of(&state) else {
                continue;
            };
            let echo = match &state {
                DeliveryState::Rejected(_) => DeliveryState::Rejected(Rejected { error: None }),
                other => other.clone(),
            };
            let backend = self.backend.clone();
            let events = self.events.clone();
            let job: Job = Box::pin(async move {
                let result = backend
                    .execute(Op::Settle {
                        from: u.path,
                        lock_token: u.token,
                        settlement,
                    })
                    .await;
                let state = match result {
                    Ok(_) => echo,
                    Err(e) => DeliveryState::Rejected(Rejected {
                        error: Some(wire(&wire_error(&e))),
                    }),
                };
                if reply {
                    let _ = events.send(Event::Disposition {
                        ch,
                        role: Role::Sender,
                        delivery_id: id,
                        state,
                    });
                }
            });
            let worker = self
                .sessions
                .get(&ch)
                .and_then(|s| s.links.values().find(|l| l.id == u.link_id))
                .and_then(|l| match &l.kind {
                    Kind::Out(o) => Some(o.settle.tx.clone()),
                    _ => None,
                });
            match worker {
                Some(tx) => {
                    let _ = tx.send(job);
                }
                None => self.spawn(job),
            }
        }
    }

    fn on_detach(&mut self, ch: u16, d: Detach) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let Some(link) = s.links.remove(&d.handle.0) else {
            return;
        };
        let already = matches!(link.kind, Kind::Closed);
        self.cleanup_link(link);
        if !already {
            self.send(
                ch,
                Performative::Detach(Detach {
                    handle: d.handle,
                    closed: d.closed,
                    error: None,
                }),
                &[],
            );
        }
    }

    /// We end a link with an error (the client answers with its detach).
    fn detach_with(&mut self, ch: u16, handle: u32, err: AmqpError) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let Some(link) = s.links.get_mut(&handle) else {
            return;
        };
        let old = std::mem::replace(&mut link.kind, Kind::Closed);
        let id = link.id;
        self.cleanup_link(Link {
            id,
            credit: 0,
            delivery_count: 0,
            drain: false,
            kind: old,
        });
        self.send(
            ch,
            Performative::Detach(Detach {
                handle: Handle(handle),
                closed: true,
                error: Some(err),
            }),
            &[],
        );
    }

    /// Stops a link's waits and gives back what it held: undelivered peek-locked messages are
    /// released and a session lock is released so another receiver can take the session.
    fn cleanup_link(&mut self, link: Link) {
        let Kind::Out(o) = link.kind else {
            return;
        };
        // Deliveries of a gone link can only be settled through `$management` (by lock token,
        // which the SDKs fall back to), so stop tracking them here.
        for s in self.sessions.values_mut() {
            s.unsettled.retain(|_, u| u.link_id != link.id);
        }
        if let Some(c) = &o.fetch {
            c.cancel();
        }
        if let Some(c) = &o.accept {
            c.cancel();
        }
        let backend = self.backend.clone();
        let path = o.path.clone();
        let buffered: Vec<Message> = o.buffered.into_iter().collect();
        let session = o.session.clone();
        if let Some(sref) = &session {
            self.locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&lock_key(&path, &sref.id));
        }
        if buffered.is_empty() && session.is_none() {
            return;
        }
        let mode = o.mode;
        self.spawn(async move {
            release(&backend, &path, mode, buffered).await;
            if let Some(sref) = session {
                let _ = backend
                    .execute(Op::ReleaseSession {
                        from: path,
                        session: sref,
                    })
                    .await;
            }
        });
    }

    // ----- events --------------------------------------------------------------------------------

    fn on_event(&mut self, ev: Event) {
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
            } => {
                let Some(s) = self.sessions.get_mut(&ch) else {
                    return;
                };
                let reply_to = reply_to.map(|r| address::normalize(&r).to_ascii_lowercase());
                let by_target = reply_to.as_ref().and_then(|rt| {
                    s.links.iter().find_map(|(h, l)| match &l.kind {
                        Kind::Replies { target, .. } if target == rt => Some(*h),
                        _ => None,
                    })
                });
                let handle = by_target.or_else(|| {
                    s.links.iter().find_map(|(h, l)| match &l.kind {
                        Kind::Replies { source, .. } if *source == node => Some(*h),
                        _ => None,
                    })
                });
                let Some(handle) = handle else {
                    tracing::debug!("no reply link for {node}; response dropped");
                    return;
                };
                if let Some(Kind::Replies { queue, .. }) =
                    s.links.get_mut(&handle).map(|l| &mut l.kind)
                {
                    queue.push_back(message);
                }
                self.pump(ch, handle);
            }
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

    fn find_handle(&self, ch: u16, link_id: u64) -> Option<u32> {
        self.sessions
            .get(&ch)?
            .links
            .iter()
            .find(|(_, l)| l.id == link_id)
            .map(|(h, _)| *h)
    }

    fn on_fetched(
        &mut self,
        ch: u16,
        link_id: u64,
        path: QueuePath,
        mode: ReceiveMode,
        result: Result<Vec<Message>, WireError>,
    ) {
        let handle = self.find_handle(ch, link_id);
        let link =
            handle.and_then(|h| self.sessions.get_mut(&ch).and_then(|s| s.links.get_mut(&h)));
        let Some(link) = link else {
            // The link went away while receiving: give the messages back.
            if let Ok(msgs) = result {
                if !msgs.is_empty() {
                    let backend = self.backend.clone();
                    self.spawn(async move { release(&backend, &path, mode, msgs).await });
                }
            }
            return;
        };
        let drain = link.drain;
        let Kind::Out(o) = &mut link.kind else {
            return;
        };
        o.fetch = None;
        match result {
            Ok(msgs) => {
                if drain {
                    o.drain_checked = true;
                }
                o.buffered.extend(msgs);
            }
            Err(e) => {
                if let Some(h) = handle {
                    self.detach_with(ch, h, wire(&e));
                }
                return;
            }
        }
        if let Some(h) = handle {
            self.pump(ch, h);
        }
    }

    fn on_session_accepted(
        &mut self,
        ch: u16,
        link_id: u64,
        path: QueuePath,
        result: Result<(String, uuid::Uuid, Millis), WireError>,
    ) {
        let handle = self.find_handle(ch, link_id);
        let link =
            handle.and_then(|h| self.sessions.get_mut(&ch).and_then(|s| s.links.get_mut(&h)));
        let Some(link) = link else {
            if let Ok((id, token, _)) = result {
                // The receiver went away while we waited: free the session again.
                let backend = self.backend.clone();
                self.spawn(async move {
                    let _ = backend
                        .execute(Op::ReleaseSession {
                            from: path,
                            session: SessionRef { id, token },
                        })
                        .await;
                });
            }
            return;
        };
        let Kind::Out(o) = &mut link.kind else {
            return;
        };
        o.accept = None;
        let Some(mut reply) = o.pending_attach.take() else {
            return;
        };
        match result {
            Ok((id, token, until)) => {
                o.session = Some(SessionRef {
                    id: id.clone(),
                    token,
                });
                o.ready = true;
                self.locks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(lock_key(&o.path, &id), token);
                if let Some(src) = reply.source.as_mut() {
                    let filter = src.filter.get_or_insert_with(OrderedMap::new);
                    let key = filter
                        .iter()
                        .find(|(k, _)| k.0.eq_ignore_ascii_case(SESSION_FILTER))
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| Symbol::from(SESSION_FILTER));
                    filter.insert(key, AV::String(id.clone()));
                }
                let mut props = Fields::new();
                props.insert(
                    Symbol::from(LOCKED_UNTIL_UTC),
                    AV::Long(dotnet_ticks(until)),
                );
                reply.properties = Some(props);
                self.send(ch, Performative::Attach(reply), &[]);
                if let Some(h) = handle {
                    self.pump(ch, h);
                }
            }
            Err(e) => {
                if let Some(h) = handle {
                    if let Some(l) = self.sessions.get_mut(&ch).and_then(|s| s.links.get_mut(&h)) {
                        l.kind = Kind::Closed;
                    }
                    self.send(ch, Performative::Attach(reply), &[]);
                    self.send(
                        ch,
                        Performative::Detach(Detach {
                            handle: Handle(h),
                            closed: true,
                            error: Some(wire(&e)),
                        }),
                        &[],
                    );
                }
            }
        }
    }

    // ----- delivery ------------------------------------------------------------------------------

    fn pump_session(&mut self, ch: u16) {
        let handles: Vec<u32> = match self.sessions.get(&ch) {
            Some(s) => s
                .links
                .iter()
                .filter(|(_, l)| matches!(l.kind, Kind::Out(_) | Kind::Replies { .. }))
                .map(|(h, _)| *h)
                .collect(),
            None => return,
        };
        for h in handles {
            self.pump(ch, h);
        }
    }

    /// Delivers what a sending link holds, within link credit and the session window; then
    /// starts a receive when credit is left, and completes a drain.
    fn pump(&mut self, ch: u16, handle: u32) {
        let chunk = (self.remote_max_frame as usize)
            .saturating_sub(256)
            .max(256);
        loop {
            let Some(s) = self.sessions.get_mut(&ch) else {
                return;
            };
            if s.remote_incoming_window == 0 {
                break;
            }
            let Some(l) = s.links.get_mut(&handle) else {
                return;
            };
            if l.credit == 0 {
                break;
            }
            let link_id = l.id;
            let (payload, tag, settled, unsettled) = match &mut l.kind {
                Kind::Replies { queue, .. } => match queue.pop_front() {
                    Some(m) => (m, uuid::Uuid::new_v4().to_bytes_le().to_vec(), true, None),
                    None => break,
                },
                Kind::Out(o) => {
                    if !o.ready {
                        break;
                    }
                    let Some(m) = o.buffered.pop_front() else {
                        break;
                    };
                    let bytes = match encode_message(&m, Encoding::Delivery) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::error!("cannot encode message {}: {e}", m.sequence_number);
                            continue;
                        }
                    };
                    match (o.mode, m.lock) {
                        (ReceiveMode::PeekLock, Some(lock)) => (
                            bytes,
                            lock.token.to_bytes_le().to_vec(),
                            false,
                            Some(Unsettled {
                                path: o.path.clone(),
                                token: lock.token,
                                link_id,
                            }),
                        ),
                        _ => (
                            bytes,
                            uuid::Uuid::new_v4().to_bytes_le().to_vec(),
                            true,
                            None,
                        ),
                    }
                }
                _ => break,
            };
            l.credit -= 1;
            l.delivery_count = l.delivery_count.wrapping_add(1);
            let delivery_id = s.next_delivery_id;
            s.next_delivery_id = s.next_delivery_id.wrapping_add(1);
            if let Some(u) = unsettled {
                s.unsettled.insert(delivery_id, u);
            }
            let pieces: Vec<&[u8]> = if payload.is_empty() {
                vec![&payload[..]]
            } else {
                payload.chunks(chunk).collect()
            };
            let n = pieces.len();
            for (i, piece) in pieces.into_iter().enumerate() {
                let first = i == 0;
                let t = Transfer {
                    handle: Handle(handle),
                    delivery_id: Some(delivery_id),
                    delivery_tag: if first {
                        Some(ByteBuf::from(tag.clone()))
                    } else {
                        None
                    },
                    message_format: if first { Some(0) } else { None },
                    settled: Some(settled),
                    more: i + 1 < n,
                    rcv_settle_mode: None,
                    state: None,
                    resume: false,
                    aborted: false,
                    batchable: false,
                };
                match encode_performative(ch, &Performative::Transfer(t), piece) {
                    Ok(bytes) => self.out.extend(bytes),
                    Err(e) => tracing::error!("cannot encode a transfer: {e}"),
                }
                s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
                s.remote_incoming_window = s.remote_incoming_window.saturating_sub(1);
            }
        }
        self.after_pump(ch, handle);
    }

    /// Starts a receive for credit that is left, or completes a drain.
    fn after_pump(&mut self, ch: u16, handle: u32) {
        let Some(l) = self
            .sessions
            .get_mut(&ch)
            .and_then(|s| s.links.get_mut(&handle))
        else {
            return;
        };
        let link_id = l.id;
        let credit = l.credit;
        let mut finish_drain = false;
        let mut start: Option<(QueuePath, ReceiveMode, Option<SessionRef>, u32, bool)> = None;
        match &mut l.kind {
            Kind::Replies { queue, .. } => {
                finish_drain = l.drain && (queue.is_empty() || credit == 0);
            }
            Kind::Out(o) => {
                if !o.ready || o.fetch.is_some() {
                    // wait for the accept or the receive in flight
                } else if l.drain {
                    if credit == 0 || (o.drain_checked && o.buffered.is_empty()) {
                        finish_drain = true;
                        o.drain_checked = false;
                    } else if o.buffered.is_empty() {
                        start = Some((
                            o.path.clone(),
                            o.mode,
                            o.session.clone(),
                            credit.min(MAX_FETCH),
                            true,
                        ));
                    }
                } else if credit > 0 && o.buffered.is_empty() {
                    start = Some((
                        o.path.clone(),
                        o.mode,
                        o.session.clone(),
                        credit.min(MAX_FETCH),
                        false,
                    ));
                }
                if start.is_some() {
                    o.fetch = Some(CancellationToken::new());
                }
            }
            _ => {}
        }
        if finish_drain {
            l.delivery_count = l.delivery_count.wrapping_add(l.credit);
            l.credit = 0;
            self.link_flow(ch, handle);
            if let Some(l) = self
                .sessions
                .get_mut(&ch)
                .and_then(|s| s.links.get_mut(&handle))
            {
                l.drain = false;
            }
            return;
        }
        let Some((path, mode, session, max, immediate)) = start else {
            return;
        };
        let cancel = match self
            .sessions
            .get(&ch)
            .and_then(|s| s.links.get(&handle))
            .map(|l| &l.kind)
        {
            Some(Kind::Out(o)) => o.fetch.clone().unwrap_or_default(),
            _ => return,
        };
        let backend = self.backend.clone();
        let events = self.events.clone();
        self.spawn(async move {
            let result = fetch(backend, path.clone(), mode, session, max, immediate, cancel).await;
            let _ = events.send(Event::Fetched {
                ch,
                link_id,
                path,
                mode,
                result,
            });
        });
    }
}
