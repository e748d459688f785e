//! With SAS validation on: which entity a link needs a token for, the refusal of links no
//! token covers, and the periodic check that detaches links whose tokens expired.

use super::state::{Conn, InTarget, Kind};
use crate::amqp::address::{self, Node};
use crate::amqp::errors::{error, wire, WireError};
use crate::amqp::symbols as sym;
use fe2o3_amqp_types::definitions::Error as AmqpError;
use std::time::Duration;

/// The entity whose token a link needs (with SAS validation on); `None` for `$cbs` links and
/// links already closed.
fn link_entity(kind: &Kind) -> Option<String> {
    match kind {
        Kind::In {
            target: InTarget::Entity(p) | InTarget::Management(p),
            ..
        } => Some(p.clone()),
        Kind::In {
            target: InTarget::Cbs | InTarget::Coordinator,
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

impl Conn {
    /// With SAS validation on: the error refusing a link to `entity` that no unexpired
    /// put-token of this connection covers (`claim`: "Send" or "Listen", as Azure words it).
    pub(super) fn unauthorized(&self, entity: &str, claim: &str) -> Option<AmqpError> {
        self.opts.sas.as_ref()?;
        if self.grants.cover(entity, self.backend.now()) {
            return None;
        }
        Some(wire(&WireError::unauthorized(entity, claim)))
    }

    /// With SAS validation on, what Service Bus does as tokens age: every link whose entity no
    /// unexpired token of the connection covers any more (its token expired and was not
    /// renewed) is detached with `amqp:unauthorized-access`, and a connection that has put no
    /// valid token within `token_grace_ms` of opening is closed.
    pub(super) fn enforce_grants(&mut self) {
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
                sym::UNAUTHORIZED_ACCESS,
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
            self.detach_with(ch, handle, error(sym::UNAUTHORIZED_ACCESS, why));
        }
    }
}
