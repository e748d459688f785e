//! Property values carried by messages and compared by filters.
//!
//! Azure Service Bus application properties are typed (string, integer, double, boolean,
//! date-time, null). The REST wire carries them as headers (quoted = string, bare = number or
//! boolean) and AMQP carries them natively; both map into this one enum so filters and
//! persistence see a single representation.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A typed property value, as stored on a message and seen by rule filters and actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
    /// Milliseconds since the UNIX epoch, UTC.
    DateTime(i64),
}

impl Value {
    /// Parses a REST custom-property header value: a quoted value is a string, a bare one a
    /// number or boolean (the REST reference's rule); anything else bare is kept as a string.
    pub fn from_header(raw: &str) -> Value {
        let t = raw.trim();
        if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
            return Value::String(t[1..t.len() - 1].replace("\\\"", "\""));
        }
        if t.eq_ignore_ascii_case("true") {
            return Value::Bool(true);
        }
        if t.eq_ignore_ascii_case("false") {
            return Value::Bool(false);
        }
        if let Ok(i) = t.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = t.parse::<f64>() {
            if f.is_finite() {
                return Value::Double(f);
            }
        }
        Value::String(t.to_string())
    }

    /// Renders the value the way the REST API returns a custom property header.
    pub fn to_header(&self) -> String {
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::String(s) => format!("\"{}\"", s.replace('"', "\\\"")),
            Value::DateTime(ms) => format!("\"{}\"", crate::time::rfc1123(*ms)),
        }
    }

    /// Converts a JSON value (batch send `UserProperties`) into a property value.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Double(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        }
    }

    /// The JSON form used in batch bodies and exports.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::DateTime(ms) => serde_json::Value::String(crate::time::rfc1123(*ms)),
        }
    }

    /// Approximate size in bytes, for SizeInBytes accounting.
    pub fn size(&self) -> usize {
        match self {
            Value::String(s) => s.len(),
            _ => 8,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::String(s) => write!(f, "{s}"),
            Value::DateTime(ms) => write!(f, "{}", crate::time::rfc1123(*ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_follow_the_rest_typing_rule() {
        assert_eq!(Value::from_header("\"abc\""), Value::String("abc".into()));
        assert_eq!(Value::from_header("12"), Value::Int(12));
        assert_eq!(Value::from_header("1.5"), Value::Double(1.5));
        assert_eq!(Value::from_header("true"), Value::Bool(true));
        assert_eq!(Value::from_header("abc"), Value::String("abc".into()));
        assert_eq!(Value::from_header("\"12\""), Value::String("12".into()));
        assert_eq!(Value::String("x".into()).to_header(), "\"x\"");
    }
}
