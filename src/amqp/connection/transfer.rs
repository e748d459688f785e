//! Incoming transfers: assembling multi-frame messages, then sending them to an entity or
//! answering them as `$cbs` / `$management` requests.

use super::state::{Conn, Event, InTarget, Kind, Partial};
use super::{INCOMING_WINDOW, MAX_ASSEMBLED, SENDER_CREDIT};
use crate::amqp::convert::{decode_message, decode_send};
use crate::amqp::errors::{error, wire, wire_error, WireError};
use crate::amqp::symbols as sym;
use crate::amqp::{cbs, management};
use crate::broker::op::Op;
use fe2o3_amqp_types::definitions::Role;
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Rejected};
use fe2o3_amqp_types::performatives::Transfer;

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
                        state: None,
                    });
                    if t.state.is_some() {
                        p.state = t.state.clone();
                    }
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
                error(sym::MESSAGE_SIZE_EXCEEDED, "The message is too large."),
            );
            return;
        }
        if let Some(p) = complete {
            self.on_message(ch, handle, p);
        }
    }

    /// A complete message from a client sender.
    pub(super) fn on_message(&mut self, ch: u16, handle: u32, p: Partial) {
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
            target, address, ..
        } = &l.kind
        else {
            return;
        };
        let (target, address) = (target.clone(), address.clone());
        if self.on_transactional_message(ch, &target, &address, &p) {
            if needs_credit {
                self.link_flow(ch, handle);
            }
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
            InTarget::Coordinator => {}
            InTarget::Cbs | InTarget::Management(_) => {
                let node = address.clone();
                let request = decode_message(&p.bytes);
                let mgmt = match &target {
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
}
