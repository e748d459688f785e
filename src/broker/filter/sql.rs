//! The Service Bus SQL filter and action language (placeholder until its parser lands).

use crate::broker::message::Message;
use crate::broker::value::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A syntax or evaluation error with the position (0-based character offset) and token.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    pub position: usize,
    pub token: String,
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

/// A compiled SqlFilter expression.
#[derive(Debug, Clone)]
pub struct SqlExpr;

impl SqlExpr {
    pub fn compile(_text: &str, _params: &BTreeMap<String, Value>) -> Result<SqlExpr, SqlError> {
        Err(SqlError {
            position: 0,
            token: String::new(),
            message: "SqlFilter is not supported yet".to_string(),
        })
    }
    pub fn evaluate(&self, _msg: &Message) -> Result<bool, SqlError> {
        Ok(false)
    }
}

/// A compiled SqlRuleAction program.
#[derive(Debug, Clone)]
pub struct SqlActionProgram;

impl SqlActionProgram {
    pub fn compile(
        _text: &str,
        _params: &BTreeMap<String, Value>,
    ) -> Result<SqlActionProgram, SqlError> {
        Err(SqlError {
            position: 0,
            token: String::new(),
            message: "SqlRuleAction is not supported yet".to_string(),
        })
    }
    pub fn apply(&self, _msg: &mut Message) -> Result<(), SqlError> {
        Ok(())
    }
}
