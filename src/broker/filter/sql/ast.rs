//! The compiled form of filter expressions and action statements.

use super::like::LikeRegex;
use crate::broker::value::Value;

/// A system property reachable with the `sys.` scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SysProp {
    MessageId,
    CorrelationId,
    Label,
    To,
    ReplyTo,
    ReplyToSessionId,
    SessionId,
    ContentType,
    PartitionKey,
    SequenceNumber,
    EnqueuedTimeUtc,
    EnqueuedSequenceNumber,
    ScheduledEnqueueTimeUtc,
    TimeToLive,
    ExpiresAtUtc,
    DeliveryCount,
    Size,
    DeadLetterSource,
}

impl SysProp {
    /// Looks a system property up by name, ignoring case. `Subject` is the newer SDKs' name
    /// for `Label`.
    pub(super) fn from_name(name: &str) -> Option<SysProp> {
        const TABLE: [(&str, SysProp); 19] = [
            ("MessageId", SysProp::MessageId),
            ("CorrelationId", SysProp::CorrelationId),
            ("Label", SysProp::Label),
            ("Subject", SysProp::Label),
            ("To", SysProp::To),
            ("ReplyTo", SysProp::ReplyTo),
            ("ReplyToSessionId", SysProp::ReplyToSessionId),
            ("SessionId", SysProp::SessionId),
            ("ContentType", SysProp::ContentType),
            ("PartitionKey", SysProp::PartitionKey),
            ("SequenceNumber", SysProp::SequenceNumber),
            ("EnqueuedTimeUtc", SysProp::EnqueuedTimeUtc),
            ("EnqueuedSequenceNumber", SysProp::EnqueuedSequenceNumber),
            ("ScheduledEnqueueTimeUtc", SysProp::ScheduledEnqueueTimeUtc),
            ("TimeToLive", SysProp::TimeToLive),
            ("ExpiresAtUtc", SysProp::ExpiresAtUtc),
            ("DeliveryCount", SysProp::DeliveryCount),
            ("Size", SysProp::Size),
            ("DeadLetterSource", SysProp::DeadLetterSource),
        ];
        TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| *p)
    }

    /// Can an action `SET` this property? Only the string-valued message headers can.
    pub(super) fn settable(self) -> bool {
        matches!(
            self,
            SysProp::MessageId
                | SysProp::CorrelationId
                | SysProp::Label
                | SysProp::To
                | SysProp::ReplyTo
                | SysProp::ReplyToSessionId
                | SysProp::SessionId
                | SysProp::ContentType
                | SysProp::PartitionKey
        )
    }

    /// Can an action `REMOVE` this property? The optional string headers can; MessageId can't.
    pub(super) fn removable(self) -> bool {
        self.settable() && self != SysProp::MessageId
    }
}

/// A property reference: `sys.Name`, `user.name` or a bare `name` (user scope).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PropRef {
    Sys(SysProp),
    User(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl ArithOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A LIKE pattern: compiled at compile time when the pattern and escape are constants.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LikePattern {
    Static(LikeRegex),
    Dynamic {
        pattern: Box<Expr>,
        escape: Option<Box<Expr>>,
    },
}

/// An expression node. `pos` fields are the character offsets used in evaluation errors.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Const(Value),
    Prop(PropRef),
    NewId,
    /// `property(name)` / `p(name)`: a property looked up by a computed name.
    PropertyFn {
        name: Box<Expr>,
        pos: usize,
    },
    Neg {
        expr: Box<Expr>,
        pos: usize,
    },
    Plus {
        expr: Box<Expr>,
        pos: usize,
    },
    Arith {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
        pos: usize,
    },
    Cmp {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// N-ary AND (chains are flattened so long conjunctions don't nest).
    And {
        items: Vec<Expr>,
        pos: usize,
    },
    /// N-ary OR.
    Or {
        items: Vec<Expr>,
        pos: usize,
    },
    Not {
        expr: Box<Expr>,
        pos: usize,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: LikePattern,
        negated: bool,
        pos: usize,
    },
    Exists(PropRef),
}

/// One action statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stmt {
    Set {
        target: PropRef,
        value: Expr,
        pos: usize,
    },
    Remove(PropRef),
}
