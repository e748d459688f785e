//! The state a connection task owns: its sessions, their links and unsettled deliveries, and
//! the events and workers that bring results of off-task work back to it.

use crate::amqp::errors::WireError;
use crate::amqp::management::SessionLocks;
use crate::amqp::{cbs, AmqpOptions};
use crate::broker::message::Message;
use crate::broker::op::{QueuePath, ReceiveMode, SessionRef};
use crate::service::ServiceBusBackend;
use crate::time::Millis;
use fe2o3_amqp_types::definitions::Role;
use fe2o3_amqp_types::messaging::DeliveryState;
use fe2o3_amqp_types::performatives::Attach;
use futures::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Work finished outside the connection task, posted back to it.
pub(super) enum Event {
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

pub(super) type Job = BoxFuture<'static, ()>;

/// A sequential worker: jobs run one after another, in submission order.
pub(super) struct Worker {
    pub(super) tx: mpsc::UnboundedSender<Job>,
}

impl Worker {
    pub(super) fn submit(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

/// A message being assembled from multi-frame transfers.
pub(super) struct Partial {
    pub(super) delivery_id: Option<u32>,
    pub(super) settled: bool,
    pub(super) format: u32,
    pub(super) bytes: Vec<u8>,
    /// The delivery state the transfer carried (a `transactional-state` enlists it).
    pub(super) state: Option<DeliveryState>,
    /// Over the size limit: the rest of its frames are read and dropped, then it is refused.
    pub(super) oversize: bool,
}

/// What a client-sender link (we receive) delivers to.
#[derive(Clone)]
pub(super) enum InTarget {
    Entity(String),
    Cbs,
    Management(String),
    /// The transaction coordinator (src/amqp/connection/coordinator.rs).
    Coordinator,
}

/// State of an entity receiver link (we send messages from a queue or subscription).
pub(super) struct EntityOut {
    pub(super) path: QueuePath,
    pub(super) mode: ReceiveMode,
    pub(super) session: Option<SessionRef>,
    /// False while a session receiver waits for a session.
    pub(super) ready: bool,
    pub(super) fetch: Option<CancellationToken>,
    pub(super) accept: Option<CancellationToken>,
    /// Fetched but not yet deliverable (credit or window shrank meanwhile).
    pub(super) buffered: VecDeque<Message>,
    /// A drain saw the entity empty (or got what there was): finish the drain next.
    pub(super) drain_checked: bool,
    pub(super) settle: Worker,
    /// The attach frame to answer with once the session is accepted.
    pub(super) pending_attach: Option<Attach>,
}

/// What a link does, by role and node.
pub(super) enum Kind {
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

/// One attached link: its flow state and what it does.
pub(super) struct Link {
    pub(super) id: u64,
    pub(super) credit: u32,
    pub(super) delivery_count: u32,
    pub(super) drain: bool,
    pub(super) kind: Kind,
    pub(super) _attached: crate::metrics::Open,
}

impl Link {
    /// A link with no credit yet, as attach creates it.
    pub(super) fn new(id: u64, kind: Kind) -> Self {
        Link {
            id,
            credit: 0,
            delivery_count: 0,
            drain: false,
            kind,
            _attached: crate::metrics::amqp_link_attached(),
        }
    }
}

/// An outgoing delivery the client has not settled yet.
pub(super) struct Unsettled {
    pub(super) path: QueuePath,
    pub(super) token: uuid::Uuid,
    pub(super) link_id: u64,
    /// The transaction its settlement is buffered in, while the client has not settled it
    /// (see coordinator.rs).
    pub(super) txn: Option<u64>,
}

/// One session (by channel): its transfer window state, links and unsettled deliveries.
pub(super) struct Session {
    pub(super) next_outgoing_id: u32,
    pub(super) next_incoming_id: u32,
    pub(super) incoming_window: u32,
    pub(super) remote_incoming_window: u32,
    pub(super) next_delivery_id: u32,
    pub(super) links: HashMap<u32, Link>,
    pub(super) unsettled: HashMap<u32, Unsettled>,
}

/// A run of deliveries `first..=last` on channel `ch` settled `accepted` in one frame.
#[derive(Debug)]
pub(super) struct HeldDisposition {
    pub(super) ch: u16,
    pub(super) role: fe2o3_amqp_types::definitions::Role,
    pub(super) first: u32,
    pub(super) last: u32,
}

/// All state of one connection, owned by its task.
pub(super) struct Conn {
    pub(super) backend: ServiceBusBackend,
    pub(super) opts: Arc<AmqpOptions>,
    pub(super) out: Vec<u8>,
    /// An `accepted`, settled disposition not yet encoded, so the next one for the following
    /// delivery id can extend its range ([`Conn::send_disposition`]).
    pub(super) held_disposition: Option<HeldDisposition>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) remote_max_frame: u32,
    pub(super) remote_idle: Option<Duration>,
    pub(super) opened: bool,
    pub(super) closed: bool,
    /// Sessions by channel (we answer each begin on the channel number the client used).
    pub(super) sessions: HashMap<u16, Session>,
    pub(super) next_link_id: u64,
    pub(super) locks: SessionLocks,
    pub(super) tasks: Vec<JoinHandle<()>>,
    /// Accepted put-tokens of this connection (only recorded with SAS validation on).
    pub(super) grants: Arc<cbs::Grants>,
    /// Names of the attached links by the peer's role (a name is unique per direction).
    pub(super) link_names: HashMap<(Role, String), u64>,
    /// When the connection started (the deadline for its first token counts from here).
    pub(super) opened_at: Instant,
    /// The `hostname` of the client's open frame (the namespace host the SDKs connect for):
    /// put-tokens must be signed for it.
    pub(super) hostname: Option<Arc<str>>,
}

impl Conn {
    /// The link attached with `handle` on channel `ch`.
    pub(super) fn link_mut(&mut self, ch: u16, handle: u32) -> Option<&mut Link> {
        self.sessions.get_mut(&ch)?.links.get_mut(&handle)
    }
}
