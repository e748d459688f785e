//! Execution of `SET` / `REMOVE` action statements.

use super::ast::{PropRef, Stmt, SysProp};
use super::eval::{eval, names_equal_ci, Cx};
use super::{EvalBudget, SqlError};
use crate::broker::message::{Message, NewMessage};
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
                        msg.edit_content(|c| c.properties.insert(key, v));
                    }
                    PropRef::Sys(p) => set_sys(msg, *p, v, *pos)?,
                }
            }
            Stmt::Remove(target) => match target {
                PropRef::User(name) => {
                    if let Some(key) = existing_key(msg, name) {
                        msg.edit_content(|c| c.properties.remove(&key));
                    }
                }
                PropRef::Sys(p) => {
                    if let Some(slot) = sys_slot(*p) {
                        msg.edit_content(|c| *slot(c) = None);
                    }
                }
            },
        }
    }
    Ok(())
}

/// The stored key a (case-insensitive) property name refers to, exact match first.
fn existing_key(msg: &Message, name: &str) -> Option<String> {
    let props = msg.content.properties();
    if props.contains_key(name) {
        return Some(name.to_string());
    }
    props.keys().find(|k| names_equal_ci(k, name)).cloned()
}

/// The optional string header behind a settable system property (not MessageId), as a
/// field of the content being edited; `None` for a read-only property, which leaves the
/// content untouched.
fn sys_slot(p: SysProp) -> Option<fn(&mut NewMessage) -> &mut Option<String>> {
    let slot: fn(&mut NewMessage) -> &mut Option<String> = match p {
        SysProp::CorrelationId => |c| &mut c.correlation_id,
        SysProp::Label => |c| &mut c.label,
        SysProp::To => |c| &mut c.to,
        SysProp::ReplyTo => |c| &mut c.reply_to,
        SysProp::ReplyToSessionId => |c| &mut c.reply_to_session_id,
        SysProp::SessionId => |c| &mut c.session_id,
        SysProp::ContentType => |c| &mut c.content_type,
        SysProp::PartitionKey => |c| &mut c.partition_key,
        _ => return None,
    };
    Some(slot)
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
                msg.edit_content(|c| c.message_id = s);
                Ok(())
            }
            None => Err(SqlError {
                position: pos,
                token: "=".to_string(),
                message: "MessageId cannot be set to NULL".to_string(),
            }),
        };
    }
    match sys_slot(p) {
        Some(slot) => {
            msg.edit_content(|c| *slot(c) = s);
            Ok(())
        }
        None => Err(SqlError {
            position: pos,
            token: "=".to_string(),
            message: format!("system property {p:?} is read-only"),
        }),
    }
}
