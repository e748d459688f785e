//! Settlement: the client's dispositions of deliveries we sent, applied to the broker in
//! order per link, and the settled dispositions we send back.

use super::state::{Conn, Event, HeldDisposition, Job, Kind};
use crate::amqp::errors::{wire, wire_error};
use crate::amqp::link::settlement_of;
use fe2o3_amqp_types::definitions::Role;
use fe2o3_amqp_types::messaging::{DeliveryState, Rejected};
use fe2o3_amqp_types::performatives::{Disposition, Performative};

impl Conn {
    pub(super) fn send_disposition(&mut self, ch: u16, role: Role, id: u32, state: DeliveryState) {
        self.send_disposition_of(ch, role, id, state, true);
    }

    /// A disposition that may leave the delivery unsettled (`settled: false`), for
    /// transactional work the client has not settled yet (see coordinator.rs).
    pub(super) fn send_disposition_of(
        &mut self,
        ch: u16,
        role: Role,
        id: u32,
        state: DeliveryState,
        settled: bool,
    ) {
        if !self.sessions.contains_key(&ch) {
            return;
        }
        if settled && matches!(state, DeliveryState::Accepted(_)) {
            // Accepted sends settle in delivery order: held back, the next one extends the
            // range, and a burst of sends is answered by one frame (AMQP 1.0 §2.7.6
            // `first`/`last`; the SDKs settle every id of the range: azure-servicebus
            // `_pyamqp/session.py` `_incoming_disposition`, rhea, .NET Amqp). Ranges never
            // wrap past u32::MAX, which some clients would read as empty.
            if let Some(h) = &mut self.held_disposition {
                if h.ch == ch && h.role == role && h.last != u32::MAX && h.last + 1 == id {
                    h.last = id;
                    return;
                }
            }
            self.flush_disposition();
            self.held_disposition = Some(HeldDisposition {
                ch,
                role,
                first: id,
                last: id,
            });
            return;
        }
        let d = Disposition {
            role,
            first: id,
            last: None,
            settled,
            state: Some(state),
            batchable: false,
        };
        self.send(ch, Performative::Disposition(d), &[]);
    }

    /// Encodes the held `accepted` range, if any (before any other frame, and before a write).
    pub(super) fn flush_disposition(&mut self) {
        let Some(h) = self.held_disposition.take() else {
            return;
        };
        let d = Disposition {
            role: h.role,
            first: h.first,
            last: (h.last != h.first).then_some(h.last),
            settled: true,
            state: Some(DeliveryState::Accepted(
                fe2o3_amqp_types::messaging::Accepted {},
            )),
            batchable: false,
        };
        self.send(h.ch, Performative::Disposition(d), &[]);
    }

    /// The client settles deliveries we sent (the role of the frame is the client's: receiver).
    pub(super) fn on_disposition(&mut self, ch: u16, d: Disposition) {
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
        let Some(work) = self.on_transactional_disposition(ch, &state, work, reply) else {
            return;
        };
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
                let result = backend.settle(&u.path, u.token, settlement).await;
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
}
