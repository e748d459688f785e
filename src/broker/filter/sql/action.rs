//! Execution of `SET` / `REMOVE` action statements.

use super::ast::{PropRef, Stmt, SysProp};
use super::eval::{eval, names_equal_ci, Cx};
use super::{EvalBudget, SqlError};
use crate::broker::message::Message;
use crate::broker::value::Value;

/// Runs the statements in order against `msg`; each sees the effect of the previous ones.
/// Evaluating the values spends `budget`.
pub(super) fn run(stmts: &[Stmt], msg: &mut Message, budget: &EvalBudget) -> Result<(), SqlError> {
    for s in stmts {
        match s {
            Stmt::Set { target, value, pos } => {
                let v = eval(value, &Cx { msg, budget })?;
                match target {
                    PropRef::User(name) => {
                        let key = existing_key(msg, name).unwrap_or_else(|| name.clone());
                        msg.content_mut().properties.insert(key, v);
                    }
                    PropRef::Sys(p) => set_sys(msg, *p, v, *pos)?,
                }
            }
            Stmt::Remove(target) => match target {
                PropRef::User(name) => {
                    if let Some(key) = existing_key(msg, name) {
                        msg.content_mut().properties.remove(&key);
                    }
                }
                PropRef::Sys(p) => {
                    if let Some(slot) = sys_slot(msg, *p) {
                        *slot = None;
                    }
                }
            },
        }
    }
    Ok(())
}

/// The stored key a (case-insensitive) property name refers to, exact match first.
fn existing_key(msg: &Message, name: &str) -> Option<String> {
    let props = &msg.content.properties;
    if props.contains_key(name) {
        return Some(name.to_string());
    }
    props.keys().find(|k| names_equal_ci(k, name)).cloned()
}

/// The optional string header behind a settable system property (not MessageId).
fn sys_slot(msg: &mut Message, p: SysProp) -> Option<&mut Option<String>> {
    let c = msg.content_mut();
    match p {
        SysProp::CorrelationId => Some(&mut c.correlation_id),
        SysProp::Label => Some(&mut c.label),
        SysProp::To => Some(&mut c.to),
        SysProp::ReplyTo => Some(&mut c.reply_to),
        SysProp::ReplyToSessionId => Some(&mut c.reply_to_session_id),
        SysProp::SessionId => Some(&mut c.session_id),
        SysProp::ContentType => Some(&mut c.content_type),
        SysProp::PartitionKey => Some(&mut c.partition_key),
        _ => None,
    }
}

fn set_sys(msg: &mut Message, p: SysProp, v: Value, pos: usize) -> Result<(), SqlError> {
    let s = match v {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => {
            return Err(SqlError {
                position: pos,
                token: "=".to_string(),
                message: format!("system property {p:?} must be set to a string, not {other}"),
            })
        }
    };
    if p == SysProp::MessageId {
        return match s {
            Some(s) => {
                msg.content_mut().message_id = s;
                Ok(())
            }
            None => Err(SqlError {
                position: pos,
                token: "=".to_string(),
                message: "MessageId cannot be set to NULL".to_string(),
            }),
        };
    }
    match sys_slot(msg, p) {
        Some(slot) => {
            *slot = s;
            Ok(())
        }
        None => Err(SqlError {
            position: pos,
            token: "=".to_string(),
            message: format!("system property {p:?} is read-only"),
        }),
    }
}
