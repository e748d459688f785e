//! Attach and detach: client senders (to an entity, `$cbs`, a `$management` node), client
//! receivers (from an entity or a reply node), session receivers waiting for a session, and
//! the cleanup that gives back what a closing link held.

use super::coordinator;
use super::state::{Conn, EntityOut, Event, InTarget, Kind, Link};
use super::{dotnet_ticks, SENDER_CREDIT};
use crate::amqp::address::{self, Node};
use crate::amqp::convert;
use crate::amqp::errors::{error, wire, wire_error, WireError};
use crate::amqp::link::{accept_session, release};
use crate::amqp::management::lock_key;
use crate::amqp::symbols as sym;
use crate::broker::message::Message;
use crate::broker::op::{QueuePath, ReceiveMode, SessionRef, SessionSelect};
use crate::time::Millis;
use fe2o3_amqp_types::definitions::{
    Error as AmqpError, Fields, Handle, ReceiverSettleMode, Role, SenderSettleMode,
};
use fe2o3_amqp_types::messaging::{Source, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Detach, Performative};
use serde_amqp::primitives::{OrderedMap, Symbol};
use serde_amqp::Value as AV;
use std::collections::VecDeque;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        .find(|(k, _)| k.0.eq_ignore_ascii_case(sym::SESSION_FILTER))
        .map(|(_, v)| match v {
            AV::Described(d) => d.value.clone(),
            other => other.clone(),
        })
}

/// Our role on a link the peer attaches with `role`.
fn peer_role(role: &Role) -> Role {
    match role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    }
}

fn link_property(a: &Attach, key: &str) -> Option<AV> {
    a.properties
        .as_ref()?
        .iter()
        .find(|(k, _)| k.0 == key)
        .map(|(_, v)| v.clone())
}

impl Conn {
    pub(super) fn attach_reply(&self, a: &Attach, role: Role) -> Attach {
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
    ///
    /// The reply's terminus on our side is null (AMQP 1.0 §2.6.3: the link could not be
    /// established), as the service answers: pyamqp and rhea then report the detach's error
    /// (`amqp:not-found` → `MessagingEntityNotFoundError` / `MessagingEntityNotFound`) rather
    /// than a generic link failure.
    pub(super) fn refuse_attach(
        &mut self,
        ch: u16,
        mut reply: Attach,
        err: AmqpError,
        link_id: u64,
    ) {
        match reply.role {
            Role::Receiver => reply.target = None,
            Role::Sender => reply.source = None,
        }
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
            s.links.insert(handle.0, Link::new(link_id, Kind::Closed));
        }
    }

    pub(super) fn on_attach(&mut self, ch: u16, a: Attach) {
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        let handle = a.handle.0;
        if s.links.contains_key(&handle) {
            self.close_with(Some(error(
                sym::SESSION_HANDLE_IN_USE,
                "the handle is already attached",
            )));
            return;
        }
        if handle > self.opts.handle_max {
            // AMQP 1.0 §2.7.2 (begin, handle-max): a handle outside the range we announced
            // closes the connection with framing-error.
            let msg = format!(
                "handle {handle} is beyond the session's handle-max {}",
                self.opts.handle_max
            );
            self.close_with(Some(error(sym::CONNECTION_FRAMING_ERROR, msg)));
            return;
        }
        let link_id = self.next_link_id;
        self.next_link_id += 1;
        let attached: usize = self.sessions.values().map(|s| s.links.len()).sum();
        if attached >= self.opts.max_links_per_connection as usize {
            let msg = format!(
                "Cannot allocate more links: a connection may have at most {} (LocalZure's AmqpOptions::max_links_per_connection).",
                self.opts.max_links_per_connection
            );
            let role = peer_role(&a.role);
            let reply = self.attach_reply(&a, role);
            self.refuse_attach(ch, reply, error(sym::RESOURCE_LIMIT_EXCEEDED, msg), link_id);
            return;
        }
        let key = (a.role.clone(), a.name.clone());
        if self.link_names.contains_key(&key) {
            // A link's name identifies it per direction between two containers (AMQP 1.0
            // §2.6.1); a second attach of a name in use is refused alone, never the connection
            // and its other links.
            let msg = format!(
                "A link named '{}' with this role is already attached on this connection.",
                a.name
            );
            let role = peer_role(&a.role);
            let reply = self.attach_reply(&a, role);
            self.refuse_attach(ch, reply, error(sym::INVALID_FIELD, msg), link_id);
            return;
        }
        self.link_names.insert(key, link_id);
        match a.role {
            Role::Sender => self.attach_incoming(ch, a, link_id),
            Role::Receiver => self.attach_outgoing(ch, a, link_id),
        }
    }

    /// A client sender: to an entity, `$cbs`, or a management node.
    pub(super) fn attach_incoming(&mut self, ch: u16, a: Attach, link_id: u64) {
        let address = target_address(&a);
        let mut reply = self.attach_reply(&a, Role::Receiver);
        reply.rcv_settle_mode = ReceiverSettleMode::First;
        let target = match address::parse(&address) {
            // A transaction controller's link (coordinator.rs handles declare and discharge).
            _ if coordinator::is_coordinator(&a) => InTarget::Coordinator,
            Node::Cbs => InTarget::Cbs,
            Node::Management(p) => {
                if let Some(err) = self
                    .unauthorized(&p, "Listen")
                    .or_else(|| self.missing_node(&p))
                {
                    self.refuse_attach(ch, reply, err, link_id);
                    return;
                }
                InTarget::Management(p)
            }
            Node::Entity(p) => {
                // Send-via: the link targets the via entity and names the destination.
                let p = coordinator::transfer_destination(&a).map_or(p, |d| {
                    reply.properties = a.properties.clone();
                    address::normalize(&d)
                });
                if let Some(err) = self.unauthorized(&p, "Send") {
                    self.refuse_attach(ch, reply, err, link_id);
                    return;
                }
                let exists = self
                    .backend
                    .read(|b| b.queue_info(&p).is_some() || b.topic_info(&p).is_some());
                if !exists {
                    let msg = format!("The messaging entity '{p}' could not be found.");
                    self.refuse_attach(ch, reply, error(sym::NOT_FOUND, msg), link_id);
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
                    credit: SENDER_CREDIT,
                    delivery_count,
                    ..Link::new(
                        link_id,
                        Kind::In {
                            target,
                            address: address::normalize(&address).to_ascii_lowercase(),
                            worker,
                            partial: None,
                        },
                    )
                },
            );
        }
        self.link_flow(ch, a.handle.0);
    }

    /// A client receiver: from an entity, or the reply link of `$cbs` / a management node.
    pub(super) fn attach_outgoing(&mut self, ch: u16, a: Attach, link_id: u64) {
        let source = source_address(&a);
        let reply = self.attach_reply(&a, Role::Sender);
        let node = address::parse(&source);
        if let Node::Management(p) = &node {
            if let Some(err) = self
                .unauthorized(p, "Listen")
                .or_else(|| self.missing_node(p))
            {
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
                        Link::new(
                            link_id,
                            Kind::Replies {
                                source: address::normalize(&source).to_ascii_lowercase(),
                                target: address::normalize(&target_address(&a))
                                    .to_ascii_lowercase(),
                                queue: VecDeque::new(),
                            },
                        ),
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
                self.refuse_attach(ch, reply, error(sym::NOT_FOUND, e), link_id);
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
                    .any(|(k, _)| k.0.eq_ignore_ascii_case(sym::SESSION_FILTER))
            });
        let session_mode = props.requires_session && !qp.dead_letter;
        if wants_session && !session_mode {
            let msg = format!(
                "It is not possible for an entity that requires no sessions ('{}') to create a session receiver.",
                qp.display()
            );
            self.refuse_attach(ch, reply, error(sym::ARGUMENT_ERROR, msg), link_id);
            return;
        }
        if session_mode && !wants_session {
            let msg = format!(
                "The messaging entity '{}' requires sessions; use a session receiver.",
                qp.display()
            );
            self.refuse_attach(ch, reply, error(sym::ARGUMENT_ERROR, msg), link_id);
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
            let wait_ms = link_property(&a, sym::OPERATION_TIMEOUT)
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
            s.links
                .insert(a.handle.0, Link::new(link_id, Kind::Out(Box::new(out))));
        }
    }

    /// The refusal of a `$management` link whose entity does not exist (the service answers
    /// `amqp:not-found`, which the SDKs raise as their entity-not-found error).
    fn missing_node(&self, path: &str) -> Option<AmqpError> {
        let exists = match address::queue_path(path) {
            Ok(qp) => self.backend.read(|b| b.receivable_props(&qp).is_ok()),
            Err(_) => false,
        } || self.backend.read(|b| b.topic_info(path).is_some());
        (!exists).then(|| {
            error(
                sym::NOT_FOUND,
                format!("The messaging entity '{path}' could not be found."),
            )
        })
    }

    pub(super) fn on_detach(&mut self, ch: u16, d: Detach) {
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
    pub(super) fn detach_with(&mut self, ch: u16, handle: u32, err: AmqpError) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let Some(link) = s.links.get_mut(&handle) else {
            return;
        };
        let old = std::mem::replace(&mut link.kind, Kind::Closed);
        let id = link.id;
        self.cleanup_link(Link::new(id, old));
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
    pub(super) fn cleanup_link(&mut self, link: Link) {
        self.link_names.retain(|_, id| *id != link.id);
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
                let _ = backend.release_session(&path, sref).await;
            }
        });
    }

    pub(super) fn on_session_accepted(
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
                        .release_session(&path, SessionRef { id, token })
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
                        .find(|(k, _)| k.0.eq_ignore_ascii_case(sym::SESSION_FILTER))
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| Symbol::from(sym::SESSION_FILTER));
                    filter.insert(key, AV::String(id.clone()));
                }
                let mut props = Fields::new();
                props.insert(
                    Symbol::from(sym::LOCKED_UNTIL_UTC),
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
}
