//! The Service Bus SQL filter and rule-action language.
//!
//! [`SqlExpr`] compiles a `SqlFilter` expression once (at rule creation) and evaluates it
//! against each message; [`SqlActionProgram`] compiles a `SqlRuleAction` and applies it to
//! the copy of a message delivered to a subscription.
//!
//! # Language
//!
//! Filters (the documented SQL-92 subset):
//! - Logic: `AND`, `OR`, `NOT`, parentheses; SQL three-valued logic (TRUE/FALSE/unknown).
//! - Comparison: `=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`.
//! - `x [NOT] IN (e1, e2, ...)`, `x [NOT] LIKE pattern [ESCAPE 'c']` (`%` = any run,
//!   `_` = one character), `x IS [NOT] NULL`, `EXISTS(prop)` and `NOT EXISTS(prop)`.
//! - Arithmetic: `+ - * / %`, unary `+`/`-`.
//! - Constants: `'strings'` (`''` escapes a quote), integers (64-bit), decimals and
//!   exponent numbers (`1.5`, `.5`, `101.5E5`; doubles), `TRUE`, `FALSE`, `NULL`.
//! - Parameters `@name`, taken from the rule's parameter map (key `@name` or `name`; an
//!   undefined parameter is a compile error).
//! - Functions: `newid()` (a random GUID string), `property(name)` / `p(name)` (a property
//!   by computed name; a `sys.` or `user.` prefix in the name selects the scope).
//! - Properties: `sys.Name` (system), `user.name` or bare `name` (application properties).
//!   Names are regular identifiers (a letter or `_`, then letters, digits, `_`), `[delimited]`
//!   (`]]` escapes `]`) or `"quoted"` (`""` escapes `"`). Keywords are case-insensitive.
//!
//! The grammar is a little more permissive than the documented one: `IS [NOT] NULL` accepts
//! any expression, a boolean property or parameter can stand alone as a predicate
//! (`active AND x = 1`), and a parenthesised predicate can be compared (`(a = 1) = FALSE`).
//! After a `sys.`/`user.` scope a keyword is taken as a name (`user.in`).
//!
//! Actions: statements `SET prop = expression` and `REMOVE prop`, separated by optional
//! `;`. They run in order (each sees the previous one's effect) and atomically: if one fails
//! at evaluation time the message is left unchanged.
//!
//! # System properties
//!
//! `sys.` names are case-insensitive: MessageId, CorrelationId, Label (alias Subject), To,
//! ReplyTo, ReplyToSessionId, SessionId, ContentType, PartitionKey, SequenceNumber,
//! EnqueuedTimeUtc, EnqueuedSequenceNumber, ScheduledEnqueueTimeUtc, TimeToLive, ExpiresAtUtc,
//! DeliveryCount, Size, DeadLetterSource. Unset optional headers are NULL. Times are
//! date-time values; `TimeToLive` is an integer number of milliseconds (there is no TimeSpan
//! value type). An unknown `sys.` name is a compile error (the service throws a
//! FilterException for it). Actions may `SET` the string headers (MessageId, CorrelationId,
//! Label/Subject, To, ReplyTo, ReplyToSessionId, SessionId, ContentType, PartitionKey) to a
//! string or NULL, and `REMOVE` all of them but MessageId; changing any other system
//! property is a compile error.
//!
//! # Semantics choices
//!
//! - Property names are case-insensitive, as the service documents. A lookup tries the exact
//!   name first and then falls back to a case-insensitive match; `SET`/`REMOVE` on a user
//!   property updates an existing key that matches case-insensitively.
//! - A missing user property, a NULL value and a NULL constant are all *unknown*. Arithmetic,
//!   comparison and LIKE with an unknown operand are unknown; `IN` is unknown when its left
//!   operand is; `IS NULL` and `EXISTS` are never unknown. `EXISTS` on a user property is
//!   true when the key is present (even with a NULL value); on a system property, when it is
//!   set. A filter matches only when it evaluates to TRUE.
//! - Numbers follow C# promotion: integer op integer stays integer (overflow and division by
//!   zero are evaluation errors), anything with a double is a double (IEEE: `1.0/0` is
//!   infinity). `+` with a string operand concatenates, as in C#.
//! - Comparisons of values of incompatible types (string vs number, boolean ordering,
//!   date-time vs string, ...) are *unknown*, not errors, so such a filter simply doesn't
//!   match. Integers and doubles compare numerically.
//! - String comparison and LIKE are ordinal and case-sensitive (UTF-16 code-unit order, as
//!   .NET's ordinal comparison). LIKE on a non-string value is unknown.
//! - Evaluation errors ([`SqlExpr::evaluate`] returns `Err`): arithmetic type errors (e.g.
//!   `TRUE + 1`), integer overflow/division by zero, a LIKE pattern/escape that is not a
//!   string or not a single character, a non-boolean value used as a predicate,
//!   `property()` with a non-string name or an unknown `sys.` name.
//! - Compile-time checks beyond syntax: unknown `sys.` names, undefined parameters, a
//!   constant non-boolean where a predicate is required (`1`, `1 = 1 AND 'x'`), a constant
//!   LIKE pattern/escape that is malformed, a SET/REMOVE of a read-only system property.
//! - An expression nested deeper than [`MAX_DEPTH`] (each parenthesis, `NOT`, unary and
//!   binary operator and function call is a level; a constant or property is level 1) is a
//!   compile error, so no input can overflow the stack while
//!   parsing or evaluating; `AND`/`OR` chains are flattened and don't add depth (a chain of
//!   128 `+` does). Integer constants outside the 64-bit range and non-finite doubles are
//!   compile errors. The service caps filter and action text at [`MAX_EXPRESSION_CHARS`]
//!   characters; rule creation enforces it (`CompiledRule::compile`).
//! - `newid()` is not deterministic: a filter or action using it evaluates differently each
//!   time (as on the service).

mod action;
mod ast;
#[cfg(test)]
mod cost_tests;
mod eval;
mod lexer;
mod like;
mod parser;
#[cfg(test)]
mod tests;

use crate::broker::message::Message;
use crate::broker::value::Value;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

/// Maximum nesting depth of an expression (README: "nesting is capped at depth 128"); the
/// parser's recursion is bounded by twice this.
/// Chosen so that even unoptimised builds stay well within a 1 MiB stack.
pub const MAX_DEPTH: usize = 128;

/// The longest filter or action text the service accepts, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 1024;

/// The work one message may cost across every filter and action of a topic's
/// subscriptions, in units of about one byte scanned or copied (every expression node costs
/// one, a string value its length, a LIKE its text's length, a case-insensitive property
/// lookup one per property). LIKE is linear in the text, but a topic multiplies it by its
/// rules: this keeps one send's fan-out within a few milliseconds of CPU. Normal filters
/// spend a few hundred units; twenty LIKEs over a 64 KiB property spend about 2.6 million.
pub const EVAL_BUDGET_PER_MESSAGE: u64 = 8 << 20;

/// A per-message work allowance shared by all the filters and actions evaluated for one
/// message (see [`EVAL_BUDGET_PER_MESSAGE`]). Once spent, every further evaluation is an
/// evaluation error, which the service treats as "the rule doesn't match" (and dead-letters
/// the message per subscription when `EnableDeadLetteringOnFilterEvaluationExceptions` is on:
/// "whether messages need to be forwarded to dead-letter sub queue when subscription rule
/// evaluation fails", SubscriptionProperties in Azure.Messaging.ServiceBus).
#[derive(Debug)]
pub struct EvalBudget {
    limit: u64,
    remaining: Cell<u64>,
    exhausted: Cell<bool>,
}

impl EvalBudget {
    /// The allowance for one message's fan-out: [`EVAL_BUDGET_PER_MESSAGE`].
    pub fn per_message() -> EvalBudget {
        EvalBudget::new(EVAL_BUDGET_PER_MESSAGE)
    }

    /// An allowance of `limit` units.
    pub fn new(limit: u64) -> EvalBudget {
        EvalBudget {
            limit,
            remaining: Cell::new(limit),
            exhausted: Cell::new(false),
        }
    }

    /// The allowance this budget started with.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Has evaluation run out of budget?
    pub fn is_exhausted(&self) -> bool {
        self.exhausted.get()
    }

    /// Spends `units`; false once the allowance is spent (logged once per budget).
    fn spend(&self, units: usize, msg: &Message) -> bool {
        let units = u64::try_from(units).unwrap_or(u64::MAX);
        match self.remaining.get().checked_sub(units) {
            Some(left) if !self.exhausted.get() => {
                self.remaining.set(left);
                true
            }
            _ => {
                if !self.exhausted.replace(true) {
                    tracing::warn!(
                        message_id = %msg.content.message_id(),
                        sequence_number = msg.sequence_number,
                        limit = self.limit,
                        "filter evaluation exceeded its per-message work limit; the remaining \
                         filters and actions for this message count as evaluation errors"
                    );
                }
                false
            }
        }
    }
}

/// A syntax or evaluation error with the position (0-based character offset) and token.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    /// 0-based character offset of the offending token (the text length at end of input).
    pub position: usize,
    /// The offending token's text (empty at end of input).
    pub token: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at position {} near '{}'",
            self.message, self.position, self.token
        )
    }
}

impl std::error::Error for SqlError {}

impl SqlError {
    /// The 1-based line and 0-based column of [`SqlError::position`] in `text` (the service
    /// reports `line=1, column=0` for the first character).
    pub fn line_column(&self, text: &str) -> (usize, usize) {
        let mut line = 1;
        let mut column = 0;
        for c in text.chars().take(self.position) {
            if c == '\n' {
                line += 1;
                column = 0;
            } else {
                column += 1;
            }
        }
        (line, column)
    }

    /// The message a rule-creation 400 carries, in the service's shape (`There was an error
    /// parsing the SQL expression. [Token line=1, column=8, Token in error= =, Additional
    /// details= ...]`), with the 0-based character offset added to the details.
    pub fn describe(&self, text: &str) -> String {
        let (line, column) = self.line_column(text);
        let token = if self.token.is_empty() {
            "<end of expression>"
        } else {
            self.token.as_str()
        };
        format!(
            "There was an error parsing the SQL expression. [Token line={line}, column={column}, \
             Token in error= {token}, Additional details= {} (at position {})]",
            self.message, self.position
        )
    }
}

/// A compiled SqlFilter expression.
#[derive(Debug, Clone)]
pub struct SqlExpr {
    root: ast::Expr,
}

impl SqlExpr {
    /// Compiles filter text; `params` supplies `@name` parameters (keys with or without `@`).
    pub fn compile(text: &str, params: &BTreeMap<String, Value>) -> Result<SqlExpr, SqlError> {
        Ok(SqlExpr {
            root: parser::parse_filter(text, params)?,
        })
    }

    /// Does the message match? Unknown (NULL) results don't match; an `Err` is an evaluation
    /// exception (the service's FilterException).
    pub fn evaluate(&self, msg: &Message) -> Result<bool, SqlError> {
        self.evaluate_within(msg, &EvalBudget::per_message())
    }

    /// [`SqlExpr::evaluate`] spending `budget`, shared by every filter a message meets.
    pub fn evaluate_within(&self, msg: &Message, budget: &EvalBudget) -> Result<bool, SqlError> {
        eval::matches(&self.root, &eval::Cx { msg, budget })
    }
}

/// A compiled SqlRuleAction program.
#[derive(Debug, Clone)]
pub struct SqlActionProgram {
    stmts: Vec<ast::Stmt>,
}

impl SqlActionProgram {
    /// Compiles action text (`SET`/`REMOVE` statements); `params` as for [`SqlExpr::compile`].
    /// Empty text compiles to a program that does nothing.
    pub fn compile(
        text: &str,
        params: &BTreeMap<String, Value>,
    ) -> Result<SqlActionProgram, SqlError> {
        Ok(SqlActionProgram {
            stmts: parser::parse_action(text, params)?,
        })
    }

    /// Applies the statements to `msg`. On error `msg` is left unchanged.
    pub fn apply(&self, msg: &mut Message) -> Result<(), SqlError> {
        self.apply_within(msg, &EvalBudget::per_message())
    }

    /// [`SqlActionProgram::apply`] spending `budget`, shared by every rule a message meets.
    pub fn apply_within(&self, msg: &mut Message, budget: &EvalBudget) -> Result<(), SqlError> {
        if self.stmts.is_empty() {
            return Ok(());
        }
        // Work on a copy so a failing statement changes nothing: the copy shares the content
        // until a statement changes it (`Message::edit_content`).
        let mut work = msg.clone();
        action::run(&self.stmts, &mut work, budget)?;
        *msg = work;
        Ok(())
    }
}
