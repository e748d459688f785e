//! Outgoing delivery: flow and credit, drain, the pump that turns buffered messages and
//! management replies into transfers, and the receives that refill it.

use super::state::{Conn, Event, Kind, Session, Unsettled};
use super::MAX_FETCH;
use crate::amqp::address;
use crate::amqp::convert::{encode_message, Encoding};
use crate::amqp::errors::{wire, WireError};
use crate::amqp::frames::encode_performative;
use crate::amqp::link::{fetch, release};
use crate::broker::message::Message;
use crate::broker::op::{QueuePath, ReceiveMode, SessionRef};
use fe2o3_amqp_types::definitions::Handle;
use fe2o3_amqp_types::performatives::{Flow, Performative, Transfer};
use serde_bytes::ByteBuf;
use tokio_util::sync::CancellationToken;

/// Transfers the peer can still take (AMQP 1.0 §2.5.6): its incoming-window less the
/// transfers in flight (our next-outgoing-id minus its next-incoming-id). Transfer ids and
/// windows are unsigned 32-bit with RFC 1982 serial arithmetic, so any window up to 2^32−1 is
/// legal (qpid-proton advertises 2^31−1 by default); a next-incoming-id "after" ours (a peer
/// error) counts as nothing in flight.
pub(super) fn remote_window(
    next_incoming_id: Option<u32>,
    window: u32,
    next_outgoing_id: u32,
) -> u32 {
    // Before the peer has seen a transfer it may omit next-incoming-id: nothing is in flight.
    let next_in = next_incoming_id.unwrap_or(next_outgoing_id);
    let in_flight = next_outgoing_id.wrapping_sub(next_in);
    if (in_flight as i32) < 0 {
        return window;
    }
    window.saturating_sub(in_flight)
}

impl Conn {
    /// Queues a `$cbs` / `$management` response on the reply link the request named (its
    /// `reply-to`), or else on the link whose source is the node, and sends it.
    pub(super) fn on_reply(
        &mut self,
        ch: u16,
        node: String,
        reply_to: Option<String>,
        message: Vec<u8>,
    ) {
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
        if let Some(Kind::Replies { queue, .. }) = s.links.get_mut(&handle).map(|l| &mut l.kind) {
            queue.push_back(message);
        }
        self.pump(ch, handle);
    }

    /// Sends our view of a link's flow state (credit we grant a sender, or our delivery count
    /// and credit as sender).
    pub(super) fn link_flow(&mut self, ch: u16, handle: u32) {
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        let Some(l) = s.links.get(&handle) else {
            return;
        };
        let flow = Flow {
            handle: Some(Handle(handle)),
            delivery_count: Some(l.delivery_count),
            link_credit: Some(l.credit),
            available: Some(0),
            drain: l.drain,
            ..session_flow_of(s)
        };
        self.send(ch, Performative::Flow(flow), &[]);
    }

    pub(super) fn session_flow(&mut self, ch: u16) {
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        let flow = session_flow_of(s);
        self.send(ch, Performative::Flow(flow), &[]);
    }

    pub(super) fn on_flow(&mut self, ch: u16, fl: Flow) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        s.remote_incoming_window =
            remote_window(fl.next_incoming_id, fl.incoming_window, s.next_outgoing_id);
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

    pub(super) fn find_handle(&self, ch: u16, link_id: u64) -> Option<u32> {
        self.sessions
            .get(&ch)?
            .links
            .iter()
            .find(|(_, l)| l.id == link_id)
            .map(|(h, _)| *h)
    }

    pub(super) fn on_fetched(
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

    pub(super) fn pump_session(&mut self, ch: u16) {
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
    pub(super) fn pump(&mut self, ch: u16, handle: u32) {
        let chunk = (self.remote_max_frame as usize)
            .saturating_sub(256)
            .max(256);
        // Transfers are encoded straight into the output: a held disposition goes first.
        self.flush_disposition();
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
                                txn: None,
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
    pub(super) fn after_pump(&mut self, ch: u16, handle: u32) {
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

/// A session's half of a flow (windows and transfer ids); a link flow adds its link's state.
fn session_flow_of(s: &Session) -> Flow {
    Flow {
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
    }
}

#[cfg(test)]
mod tests {
    use super::remote_window;

    #[test]
    fn large_and_wrapping_windows_are_honoured() {
        // qpid-proton's default incoming-window (2^31−1), nothing in flight.
        assert_eq!(remote_window(Some(1), i32::MAX as u32, 1), i32::MAX as u32);
        // The largest legal window.
        assert_eq!(remote_window(Some(5), u32::MAX, 7), u32::MAX - 2);
        // Transfer ids wrapped past 2^32−1: 3 in flight.
        assert_eq!(remote_window(Some(u32::MAX - 1), 10, 1), 7);
        // More in flight than the window: no room.
        assert_eq!(remote_window(Some(1), 2, 10), 0);
        // No next-incoming-id yet.
        assert_eq!(remote_window(None, 100, 1), 100);
    }
}
