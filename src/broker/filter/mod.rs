//! Subscription rule filters and actions: correlation filters here, the SQL language in [`sql`].
//!
//! Filters are compiled once when a rule is created ([`CompiledRule`]); fan-out evaluates the
//! compiled form against each message.

pub mod sql;

pub use sql::EvalBudget;

use super::entity::{CorrelationFilter, Filter, Rule};
use super::error::BrokerError;
use super::message::Message;
use super::value::Value;

/// A rule with its filter and action compiled, ready for fan-out.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: Rule,
    filter: CompiledFilter,
    action: Option<sql::SqlActionProgram>,
}

#[derive(Debug, Clone)]
enum CompiledFilter {
    True,
    False,
    Correlation(Box<CorrelationFilter>),
    Sql(sql::SqlExpr),
}

impl CompiledRule {
    /// Compiles a rule being created or updated: the service's length limit on filter and
    /// action text, then [`CompiledRule::compile`].
    pub fn create(rule: Rule) -> Result<CompiledRule, BrokerError> {
        let too_long = |what: &str, text: &str| {
            let n = text.chars().count();
            if n > sql::MAX_EXPRESSION_CHARS {
                Err(BrokerError::FilterSyntax(format!(
                    "The length of the {what} statement is {n}, which exceeds the maximum \
                     length of {}.",
                    sql::MAX_EXPRESSION_CHARS
                )))
            } else {
                Ok(())
            }
        };
        if let Filter::Sql(def) = &rule.filter {
            too_long("filter", &def.expression)?;
        }
        if let Some(a) = &rule.action {
            too_long("action", &a.expression)?;
        }
        Self::compile(rule)
    }

    /// Compiles a rule; a SQL syntax error is a [`BrokerError::FilterSyntax`] (400 on the wire)
    /// whose message gives the line, column, offset and offending token. Restoring stored
    /// rules uses this directly (no length check, so a stored rule always comes back).
    pub fn compile(rule: Rule) -> Result<CompiledRule, BrokerError> {
        let filter = match &rule.filter {
            Filter::True => CompiledFilter::True,
            Filter::False => CompiledFilter::False,
            Filter::Correlation(c) => CompiledFilter::Correlation(Box::new(c.clone())),
            Filter::Sql(def) => CompiledFilter::Sql(
                sql::SqlExpr::compile(&def.expression, &def.parameters)
                    .map_err(|e| BrokerError::FilterSyntax(e.describe(&def.expression)))?,
            ),
        };
        let action = match &rule.action {
            Some(a) if !a.expression.trim().is_empty() => Some(
                sql::SqlActionProgram::compile(&a.expression, &a.parameters)
                    .map_err(|e| BrokerError::FilterSyntax(e.describe(&a.expression)))?,
            ),
            _ => None,
        };
        Ok(CompiledRule {
            rule,
            filter,
            action,
        })
    }

    /// Does the message match? A filter that fails to evaluate does not match (the caller may
    /// dead-letter per DeadLetteringOnFilterEvaluationExceptions).
    pub fn matches(&self, msg: &Message) -> Result<bool, String> {
        self.matches_within(msg, &EvalBudget::per_message())
    }

    /// [`CompiledRule::matches`] spending `budget`: one budget per message, shared by all the
    /// rules of all the topic's subscriptions, bounds what one send can cost.
    pub fn matches_within(&self, msg: &Message, budget: &EvalBudget) -> Result<bool, String> {
        match &self.filter {
            CompiledFilter::True => Ok(true),
            CompiledFilter::False => Ok(false),
            CompiledFilter::Correlation(c) => Ok(correlation_matches(c, msg)),
            CompiledFilter::Sql(e) => e.evaluate_within(msg, budget).map_err(|e| e.to_string()),
        }
    }

    /// Applies the rule action to the copy delivered to this subscription.
    pub fn apply_action(&self, msg: &mut Message) -> Result<(), String> {
        self.apply_action_within(msg, &EvalBudget::per_message())
    }

    /// [`CompiledRule::apply_action`] spending `budget` (see [`CompiledRule::matches_within`]).
    pub fn apply_action_within(
        &self,
        msg: &mut Message,
        budget: &EvalBudget,
    ) -> Result<(), String> {
        match &self.action {
            Some(a) => a.apply_within(msg, budget).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    pub fn has_action(&self) -> bool {
        self.action.is_some()
    }
}

fn eq_opt(want: &Option<String>, have: Option<&str>) -> bool {
    match want {
        None => true,
        Some(w) => have == Some(w.as_str()),
    }
}

/// CorrelationFilter semantics: every field that is set must be equal (ordinal, case-sensitive);
/// every listed user property must be present with an equal value.
pub fn correlation_matches(c: &CorrelationFilter, msg: &Message) -> bool {
    let m = &msg.content;
    eq_opt(&c.correlation_id, m.correlation_id())
        && (c.message_id.is_none() || c.message_id.as_deref() == Some(m.message_id()))
        && eq_opt(&c.to, m.to())
        && eq_opt(&c.reply_to, m.reply_to())
        && eq_opt(&c.label, m.label())
        && eq_opt(&c.session_id, m.session_id())
        && eq_opt(&c.reply_to_session_id, m.reply_to_session_id())
        && eq_opt(&c.content_type, m.content_type())
        && c.properties
            .iter()
            .all(|(k, v)| match m.properties().get(k) {
                Some(have) => values_equal(v, have),
                None => false,
            })
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Double(y)) | (Value::Double(y), Value::Int(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}
