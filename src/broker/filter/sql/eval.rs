//! Evaluation of compiled expressions against a message, with SQL three-valued logic.
//!
//! `Value::Null` doubles as SQL's *unknown*: a missing user property, a NULL value and
//! an incomparable comparison all evaluate to it.

use super::ast::{ArithOp, CmpOp, Expr, LikePattern, PropRef, SysProp};
use super::like::{self, LikeRegex};
use super::{EvalBudget, SqlError};
use crate::broker::message::Message;
use crate::broker::value::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

fn err(pos: usize, token: impl Into<String>, message: impl Into<String>) -> SqlError {
    SqlError {
        position: pos,
        token: token.into(),
        message: message.into(),
    }
}

/// Case-insensitive name comparison (Unicode simple lowercase folding, no allocation).
pub(super) fn names_equal_ci(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Finds a user property: the exact name first, then a case-insensitive match (property
/// names are case-insensitive in Service Bus SQL; the exact match only breaks ties).
pub(super) fn user_prop<'m>(
    props: &'m BTreeMap<String, Value>,
    name: &str,
) -> Option<(&'m String, &'m Value)> {
    props
        .get_key_value(name)
        .or_else(|| props.iter().find(|(k, _)| names_equal_ci(k, name)))
}

fn opt_str(s: Option<&str>) -> Value {
    match s {
        Some(s) => Value::String(s.to_string()),
        None => Value::Null,
    }
}

fn int_u64(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The value of a system property; absent optional headers are NULL.
pub(super) fn sys_value(msg: &Message, p: SysProp) -> Value {
    let c = &msg.content;
    match p {
        SysProp::MessageId => Value::String(c.message_id().to_string()),
        SysProp::CorrelationId => opt_str(c.correlation_id()),
        SysProp::Label => opt_str(c.label()),
        SysProp::To => opt_str(c.to()),
        SysProp::ReplyTo => opt_str(c.reply_to()),
        SysProp::ReplyToSessionId => opt_str(c.reply_to_session_id()),
        SysProp::SessionId => opt_str(c.session_id()),
        SysProp::ContentType => opt_str(c.content_type()),
        SysProp::PartitionKey => opt_str(c.partition_key()),
        SysProp::SequenceNumber => int_u64(msg.sequence_number),
        SysProp::EnqueuedTimeUtc => Value::DateTime(msg.enqueued_time),
        SysProp::EnqueuedSequenceNumber => int_u64(msg.enqueued_sequence_number),
        SysProp::ScheduledEnqueueTimeUtc => match c.scheduled_enqueue_time() {
            Some(t) => Value::DateTime(t),
            None => Value::Null,
        },
        SysProp::TimeToLive => Value::Int(msg.ttl.as_millis()),
        SysProp::ExpiresAtUtc => Value::DateTime(msg.expires_at),
        SysProp::DeliveryCount => Value::Int(i64::from(msg.delivery_count)),
        SysProp::Size => int_u64(u64::try_from(msg.size()).unwrap_or(u64::MAX)),
        SysProp::DeadLetterSource => opt_str(msg.dead_letter_source.as_deref()),
    }
}

/// What evaluation reads and spends: the message and the per-message work allowance.
pub(super) struct Cx<'a> {
    pub(super) msg: &'a Message,
    pub(super) budget: &'a EvalBudget,
}

impl Cx<'_> {
    /// Spends `units` of the budget; once it is spent, evaluation fails (an evaluation
    /// error: the rule doesn't match, as for any filter exception on the service).
    fn charge(&self, units: usize, pos: usize) -> Result<(), SqlError> {
        if self.budget.spend(units, self.msg) {
            Ok(())
        } else {
            Err(err(
                pos,
                "",
                format!(
                    "filter evaluation exceeded the work limit of {} units for this message",
                    self.budget.limit()
                ),
            ))
        }
    }

    /// A user property by name. The case-insensitive fallback scans every property, so
    /// it is charged one unit per property.
    fn user_prop(&self, name: &str) -> Result<Option<&Value>, SqlError> {
        let props = self.msg.content.properties();
        if let Some(v) = props.get(name) {
            return Ok(Some(v));
        }
        self.charge(props.len(), 0)?;
        Ok(user_prop(props, name).map(|(_, v)| v))
    }
}

/// The work of producing a value: strings cost their length (they are copied).
fn value_cost(v: &Value) -> usize {
    match v {
        Value::String(s) => 1 + s.len(),
        _ => 1,
    }
}

fn prop_value(cx: &Cx, p: &PropRef) -> Result<Value, SqlError> {
    Ok(match p {
        PropRef::Sys(s) => sys_value(cx.msg, *s),
        PropRef::User(name) => cx.user_prop(name)?.cloned().unwrap_or(Value::Null),
    })
}

fn prop_exists(cx: &Cx, p: &PropRef) -> Result<bool, SqlError> {
    Ok(match p {
        PropRef::Sys(s) => !matches!(sys_value(cx.msg, *s), Value::Null),
        PropRef::User(name) => cx.user_prop(name)?.is_some(),
    })
}

/// Evaluates a whole filter: only TRUE matches; FALSE and unknown don't.
pub(super) fn matches(e: &Expr, cx: &Cx) -> Result<bool, SqlError> {
    Ok(truth(eval(e, cx)?, 0, "")? == Some(true))
}

/// Interprets a value in a predicate position.
fn truth(v: Value, pos: usize, token: &str) -> Result<Option<bool>, SqlError> {
    match v {
        Value::Bool(b) => Ok(Some(b)),
        Value::Null => Ok(None),
        other => Err(err(
            pos,
            token,
            format!("expected a boolean value but found {}", type_name(&other)),
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Double(_) => "double",
        Value::String(_) => "string",
        Value::DateTime(_) => "datetime",
    }
}

fn tri(b: Option<bool>) -> Value {
    match b {
        Some(b) => Value::Bool(b),
        None => Value::Null,
    }
}

/// Evaluates an expression to a value (`Null` = unknown).
///
/// This dispatcher stays tiny and each case lives in its own non-inlined function, so that
/// recursion over deep trees costs little stack per level.
pub(super) fn eval(e: &Expr, cx: &Cx) -> Result<Value, SqlError> {
    let v = match e {
        Expr::Const(v) => Ok(v.clone()),
        Expr::Prop(p) => prop_value(cx, p),
        Expr::NewId => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
        Expr::PropertyFn { name, pos } => eval_property_fn(name, *pos, cx),
        Expr::Neg { expr, pos } => eval_neg(expr, *pos, cx),
        Expr::Plus { expr, pos } => eval_plus(expr, *pos, cx),
        Expr::Arith {
            op,
            left,
            right,
            pos,
        } => eval_arith(*op, left, right, *pos, cx),
        Expr::Cmp { op, left, right } => eval_cmp(*op, left, right, cx),
        Expr::And { items, pos } => eval_logic(items, false, *pos, cx),
        Expr::Or { items, pos } => eval_logic(items, true, *pos, cx),
        Expr::Not { expr, pos } => eval_not(expr, *pos, cx),
        Expr::IsNull { expr, negated } => eval_is_null(expr, *negated, cx),
        Expr::In {
            expr,
            list,
            negated,
        } => eval_in(expr, list, *negated, cx),
        Expr::Like {
            expr,
            pattern,
            negated,
            pos,
        } => eval_like(expr, pattern, *negated, *pos, cx),
        Expr::Exists(p) => prop_exists(cx, p).map(Value::Bool),
    }?;
    cx.charge(value_cost(&v), 0)?;
    Ok(v)
}

#[inline(never)]
fn eval_property_fn(name: &Expr, pos: usize, cx: &Cx) -> Result<Value, SqlError> {
    match eval(name, cx)? {
        Value::Null => Ok(Value::Null),
        Value::String(s) => dynamic_property(cx, &s, pos),
        other => Err(err(
            pos,
            "property",
            format!(
                "property() needs a string name but got {}",
                type_name(&other)
            ),
        )),
    }
}

#[inline(never)]
fn eval_neg(expr: &Expr, pos: usize, cx: &Cx) -> Result<Value, SqlError> {
    match eval(expr, cx)? {
        Value::Null => Ok(Value::Null),
        Value::Int(i) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or_else(|| err(pos, "-", "integer overflow")),
        Value::Double(d) => Ok(Value::Double(-d)),
        other => Err(err(
            pos,
            "-",
            format!("unary '-' cannot be applied to {}", type_name(&other)),
        )),
    }
}

#[inline(never)]
fn eval_plus(expr: &Expr, pos: usize, cx: &Cx) -> Result<Value, SqlError> {
    match eval(expr, cx)? {
        v @ (Value::Null | Value::Int(_) | Value::Double(_)) => Ok(v),
        other => Err(err(
            pos,
            "+",
            format!("unary '+' cannot be applied to {}", type_name(&other)),
        )),
    }
}

#[inline(never)]
fn eval_arith(
    op: ArithOp,
    left: &Expr,
    right: &Expr,
    pos: usize,
    cx: &Cx,
) -> Result<Value, SqlError> {
    let l = eval(left, cx)?;
    let r = eval(right, cx)?;
    arith(op, l, r, pos)
}

#[inline(never)]
fn eval_cmp(op: CmpOp, left: &Expr, right: &Expr, cx: &Cx) -> Result<Value, SqlError> {
    let l = eval(left, cx)?;
    let r = eval(right, cx)?;
    Ok(tri(compare(op, &l, &r)))
}

/// AND (`is_or` false) / OR with three-valued logic, short-circuiting on the deciding value.
#[inline(never)]
fn eval_logic(items: &[Expr], is_or: bool, pos: usize, cx: &Cx) -> Result<Value, SqlError> {
    let token = if is_or { "OR" } else { "AND" };
    let mut unknown = false;
    for item in items {
        match truth(eval(item, cx)?, pos, token)? {
            Some(b) if b == is_or => return Ok(Value::Bool(is_or)),
            Some(_) => {}
            None => unknown = true,
        }
    }
    Ok(if unknown {
        Value::Null
    } else {
        Value::Bool(!is_or)
    })
}

#[inline(never)]
fn eval_not(expr: &Expr, pos: usize, cx: &Cx) -> Result<Value, SqlError> {
    Ok(tri(truth(eval(expr, cx)?, pos, "NOT")?.map(|b| !b)))
}

#[inline(never)]
fn eval_is_null(expr: &Expr, negated: bool, cx: &Cx) -> Result<Value, SqlError> {
    let is_null = matches!(eval(expr, cx)?, Value::Null);
    Ok(Value::Bool(is_null != negated))
}

#[inline(never)]
fn eval_in(expr: &Expr, list: &[Expr], negated: bool, cx: &Cx) -> Result<Value, SqlError> {
    let v = eval(expr, cx)?;
    if matches!(v, Value::Null) {
        return Ok(Value::Null);
    }
    let mut found = false;
    for item in list {
        let w = eval(item, cx)?;
        if compare(CmpOp::Eq, &v, &w) == Some(true) {
            found = true;
            break;
        }
    }
    Ok(Value::Bool(found != negated))
}

#[inline(never)]
fn eval_like(
    expr: &Expr,
    pattern: &LikePattern,
    negated: bool,
    pos: usize,
    cx: &Cx,
) -> Result<Value, SqlError> {
    let v = eval(expr, cx)?;
    let r = match pattern {
        LikePattern::Static(p) => like_value(&v, p, pos, cx)?,
        LikePattern::Dynamic { pattern, escape } => {
            let pv = eval(pattern, cx)?;
            let ev = match escape {
                Some(e) => Some(eval(e, cx)?),
                None => None,
            };
            dynamic_like(&v, pv, ev, pos, cx)?
        }
    };
    Ok(tri(r.map(|b| b != negated)))
}

/// `property('name')`: `sys.`/`user.` prefixes select the scope, as in the static syntax.
fn dynamic_property(cx: &Cx, name: &str, pos: usize) -> Result<Value, SqlError> {
    let lower_prefix = |p: &str| -> Option<&str> {
        let head = name.get(..p.len())?;
        if head.eq_ignore_ascii_case(p) {
            name.get(p.len()..)
        } else {
            None
        }
    };
    if let Some(rest) = lower_prefix("sys.") {
        return match SysProp::from_name(rest) {
            Some(s) => Ok(sys_value(cx.msg, s)),
            None => Err(err(
                pos,
                "property",
                format!("unknown system property '{rest}'"),
            )),
        };
    }
    let user = lower_prefix("user.").unwrap_or(name);
    prop_value(cx, &PropRef::User(user.to_string()))
}

/// Matches a value against a compiled pattern, charged [`LikeRegex::cost`] first.
fn like_value(
    v: &Value,
    pattern: &LikeRegex,
    pos: usize,
    cx: &Cx,
) -> Result<Option<bool>, SqlError> {
    match v {
        Value::String(s) => {
            cx.charge(pattern.cost(s), pos)?;
            Ok(Some(pattern.is_match(s)))
        }
        // NULL is unknown; other types can't be LIKE-matched: unknown as well.
        _ => Ok(None),
    }
}

fn dynamic_like(
    v: &Value,
    pattern: Value,
    escape: Option<Value>,
    pos: usize,
    cx: &Cx,
) -> Result<Option<bool>, SqlError> {
    let esc = match escape {
        None => None,
        Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => {
            let mut cs = s.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => Some(c),
                _ => return Err(err(pos, "LIKE", "ESCAPE must be a single character")),
            }
        }
        Some(other) => {
            return Err(err(
                pos,
                "LIKE",
                format!("ESCAPE must be a string but is {}", type_name(&other)),
            ))
        }
    };
    let p = match pattern {
        Value::Null => return Ok(None),
        Value::String(p) => p,
        other => {
            return Err(err(
                pos,
                "LIKE",
                format!("LIKE pattern must be a string but is {}", type_name(&other)),
            ))
        }
    };
    // A pattern computed from message data compiles at each evaluation: charged its length.
    cx.charge(p.len(), pos)?;
    let compiled = like::compile(&p, esc).map_err(|m| err(pos, "LIKE", m))?;
    like_value(v, &compiled, pos, cx)
}

/// Ordinal string order as .NET has it (UTF-16 code units).
fn ordinal_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// SQL comparison: `None` is unknown (a NULL operand or operands of incompatible types).
fn compare(op: CmpOp, l: &Value, r: &Value) -> Option<bool> {
    let ord = match (l, r) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Int(a), Value::Double(b)) => return Some(cmp_f64(op, *a as f64, *b)),
        (Value::Double(a), Value::Int(b)) => return Some(cmp_f64(op, *a, *b as f64)),
        (Value::Double(a), Value::Double(b)) => return Some(cmp_f64(op, *a, *b)),
        (Value::String(a), Value::String(b)) => ordinal_cmp(a, b),
        (Value::DateTime(a), Value::DateTime(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => match op {
            CmpOp::Eq => return Some(a == b),
            CmpOp::Ne => return Some(a != b),
            _ => return None,
        },
        _ => return None,
    };
    Some(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

/// IEEE comparison, as C# does it (NaN compares false except for `!=`).
fn cmp_f64(op: CmpOp, a: f64, b: f64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// The text C# would produce when concatenating a value onto a string.
fn concat_text(v: &Value) -> String {
    match v {
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::DateTime(ms) => crate::time::iso8601(*ms),
        other => other.to_string(),
    }
}

fn arith(op: ArithOp, l: Value, r: Value, pos: usize) -> Result<Value, SqlError> {
    let sym = op.symbol();
    match (&l, &r) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Int(a), Value::Int(b)) => {
            let (a, b) = (*a, *b);
            let res = match op {
                ArithOp::Add => a.checked_add(b),
                ArithOp::Sub => a.checked_sub(b),
                ArithOp::Mul => a.checked_mul(b),
                ArithOp::Div | ArithOp::Mod if b == 0 => {
                    return Err(err(pos, sym, "integer division by zero"))
                }
                ArithOp::Div => a.checked_div(b),
                ArithOp::Mod => a.checked_rem(b),
            };
            res.map(Value::Int)
                .ok_or_else(|| err(pos, sym, "integer overflow"))
        }
        (Value::Int(_) | Value::Double(_), Value::Int(_) | Value::Double(_)) => {
            let f = |v: &Value| match v {
                Value::Int(i) => *i as f64,
                Value::Double(d) => *d,
                _ => 0.0,
            };
            let (a, b) = (f(&l), f(&r));
            Ok(Value::Double(match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div => a / b,
                ArithOp::Mod => a % b,
            }))
        }
        (Value::String(_), _) | (_, Value::String(_)) if op == ArithOp::Add => Ok(Value::String(
            format!("{}{}", concat_text(&l), concat_text(&r)),
        )),
        _ => Err(err(
            pos,
            sym,
            format!(
                "operator '{sym}' cannot be applied to {} and {}",
                type_name(&l),
                type_name(&r)
            ),
        )),
    }
}
