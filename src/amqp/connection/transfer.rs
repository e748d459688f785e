//! Incoming transfers: assembling multi-frame messages, then sending them to an entity or
//! answering them as `$cbs` / `$management` requests.

use super::state::{Conn, Event, InTarget, Kind, Partial};
use super::{INCOMING_WINDOW, MAX_ASSEMBLED, SENDER_CREDIT};
use crate::amqp::convert::{decode_message, decode_send, request_ids};
use crate::amqp::errors::{error, wire, wire_error, WireError};
use crate::amqp::symbols as sym;
use crate::amqp::{cbs, management};
use fe2o3_amqp_types::definitions::Role;
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Rejected};
use fe2o3_amqp_types::performatives::Transfer;

/// Room for the encoding around a message (sections, type codes, a batch envelope) beyond the
/// size the broker counts.
const ENCODING_SLACK: usize = 64 * 1024;

/// The most bytes we assemble for one delivery: the link's max-message-size plus encoding
/// room (never more than [`MAX_ASSEMBLED`]); larger deliveries are read to their end and
/// refused without being kept.
fn assembly_limit(max_message_size: u64) -> usize {
    usize::try_from(max_message_size)
        .unwrap_or(usize::MAX)
        .saturating_add(ENCODING_SLACK)
        .min(MAX_ASSEMBLED)
}

impl Conn {
    pub(super) fn on_transfer(&mut self, ch: u16, t: Transfer, payload: &[u8]) {
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
        let limit = assembly_limit(self.opts.max_message_size);
        let mut complete = None;
        let mut too_large = None;
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
                        state: None,
                        oversize: false,
                    });
                    if t.state.is_some() {
                        p.state = t.state.clone();
                    }
                    if t.settled == Some(true) {
                        p.settled = true;
                    }
                    if !p.oversize {
                        p.bytes.extend_from_slice(payload);
                        if p.bytes.len() > limit {
                            // Keep reading the delivery's frames without keeping them.
                            p.oversize = true;
                            p.bytes = Vec::new();
                        }
                    }
                    if !t.more {
                        let done = partial.take();
                        match done {
                            Some(p) if p.oversize => too_large = Some(p),
                            other => complete = other,
                        }
                    }
                }
                if complete.is_some() || too_large.is_some() {
                    l.delivery_count = l.delivery_count.wrapping_add(1);
                    l.credit = l.credit.saturating_sub(1);
                }
            }
        }
        if refill {
            self.session_flow(ch);
        }
        if let Some(p) = too_large {
            // Settle it rejected and keep the link, as the service does: the SDKs raise their
            // message-size error from the outcome (a detach alone leaves the send waiting).
            tracing::debug!("refused a message over {limit} bytes on link {handle}");
            if let (false, Some(id)) = (p.settled, p.delivery_id) {
                let msg = format!(
                    "The received message (delivery-id:{id}) exceeds the limit ({} bytes) currently allowed on the link.",
                    self.opts.max_message_size
                );
                let state = DeliveryState::Rejected(Rejected {
                    error: Some(error(sym::MESSAGE_SIZE_EXCEEDED, msg)),
                });
                self.send_disposition(ch, Role::Receiver, id, state);
            }
            self.top_up_credit(ch, handle);
            return;
        }
        if let Some(p) = complete {
            self.on_message(ch, handle, p);
        }
    }

    /// Grants a client sender a fresh batch of credit when half is used.
    fn top_up_credit(&mut self, ch: u16, handle: u32) {
        let Some(l) = self.link_mut(ch, handle) else {
            return;
        };
        if l.credit <= SENDER_CREDIT / 2 {
            l.credit = SENDER_CREDIT;
            self.link_flow(ch, handle);
        }
    }

    /// A complete message from a client sender.
    pub(super) fn on_message(&mut self, ch: u16, handle: u32, p: Partial) {
        let Some(l) = self.sessions.get(&ch).and_then(|s| s.links.get(&handle)) else {
            return;
        };
        let Kind::In {
            target, address, ..
        } = &l.kind
        else {
            return;
        };
        let (target, address) = (target.clone(), address.clone());
        if self.on_transactional_message(ch, &target, &address, &p) {
            self.top_up_credit(ch, handle);
            return;
        }
        let Some(Kind::In { worker, .. }) = self
            .sessions
            .get(&ch)
            .and_then(|s| s.links.get(&handle))
            .map(|l| &l.kind)
        else {
            return;
        };
        let events = self.events.clone();
        let reply = !p.settled;
        let delivery_id = p.delivery_id;
        let mut unreadable = None;
        'target: {
            match &target {
                InTarget::Entity(entity) => {
                    let decoded = decode_send(&p.bytes, p.format);
                    let backend = self.backend.clone();
                    let entity = entity.clone();
                    worker.submit(Box::pin(async move {
                        let _timed = crate::metrics::timer("amqp", "send");
                        let state = match decoded {
                            Err(e) => DeliveryState::Rejected(Rejected {
                                error: Some(error(sym::DECODE_ERROR, e.to_string())),
                            }),
                            Ok(messages) => match backend.send(entity, messages).await {
                                Ok(_) => DeliveryState::Accepted(Accepted {}),
                                Err(e) => DeliveryState::Rejected(Rejected {
                                    error: Some(wire(&wire_error(&e))),
                                }),
                            },
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
                // Transactional transfers to the coordinator were handled above.
                InTarget::Coordinator => {}
                InTarget::Cbs | InTarget::Management(_) => {
                    let node = address.clone();
                    let request = match decode_message(&p.bytes) {
                        Ok(r) => Ok(r),
                        Err(e) => {
                            let problem = format!("The request could not be decoded: {e}");
                            match request_ids(&p.bytes) {
                                // Answered with a 400 below: the client correlates it.
                                Some(ids) => Err((ids, problem)),
                                None => {
                                    tracing::warn!(
                                        "undecodable request without a message-id on {node}: {e}"
                                    );
                                    unreadable = Some(problem);
                                    break 'target;
                                }
                            }
                        }
                    };
                    let mgmt = match &target {
                        InTarget::Management(path) => Some(path.clone()),
                        _ => None,
                    };
                    let txn = super::coordinator::request_txn(&p.state);
                    let backend = self.backend.clone();
                    let locks = self.locks.clone();
                    let sas = self.opts.sas.clone();
                    let grants = self.grants.clone();
                    let hostname = self.hostname.clone();
                    worker.submit(Box::pin(async move {
                        let request = match request {
                            Ok(r) => r,
                            Err((ids, problem)) => {
                                tracing::warn!("malformed request on {node}: {problem}");
                                let refusal = WireError::new(sym::DECODE_ERROR, problem, 400);
                                match management::refuse(&ids, &refusal) {
                                    Ok(message) => {
                                        let _ = events.send(Event::Reply {
                                            ch,
                                            node,
                                            reply_to: ids.reply_to(),
                                            message,
                                        });
                                    }
                                    Err(e) => {
                                        tracing::warn!("cannot encode a response on {node}: {e}")
                                    }
                                }
                                return;
                            }
                        };
                        let response = match &mgmt {
                            None => cbs::respond(
                                &request,
                                sas.as_ref(),
                                hostname.as_deref(),
                                cbs::secs(backend.now()),
                            )
                            .map(|(message, grant)| {
                                // Remembered before the answer goes out: the client attaches
                                // only after reading it.
                                if let Some(g) = grant {
                                    grants.record(g);
                                }
                                message
                            }),
                            Some(path) => {
                                // Tokens expire while a management link stays open.
                                let allowed = sas.is_none() || grants.cover(path, backend.now());
                                if allowed {
                                    management::respond(&backend, path, &request, &locks, txn).await
                                } else {
                                    management::refuse(
                                        &request,
                                        &WireError::unauthorized(path, "Listen"),
                                    )
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
                        let state = super::coordinator::request_disposition(&p.state);
                        self.send_disposition(ch, Role::Receiver, id, state);
                    }
                }
            }
        }
        if let Some(problem) = unreadable {
            // Nothing to correlate an answer with: end the link (AMQP 1.0 §2.8.15 decode-error).
            if let (true, Some(id)) = (reply, delivery_id) {
                let state = DeliveryState::Rejected(Rejected {
                    error: Some(error(sym::DECODE_ERROR, problem.clone())),
                });
                self.send_disposition(ch, Role::Receiver, id, state);
            }
            self.detach_with(ch, handle, error(sym::DECODE_ERROR, problem));
            return;
        }
        self.top_up_credit(ch, handle);
    }
}
