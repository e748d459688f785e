//! Value conversions: booleans, integers, xsd:durations, dates, entity addresses and the typed
//! `KeyValueOfstringanyType` values, read from elements and written back.

use std::collections::BTreeMap;

use super::read::{clip, Node};
use super::write::{el, esc};
use super::{err, AtomError, XSD_NS};
use crate::broker::value::Value;
use crate::time::{iso8601, parse_date, Millis, TimeSpan};

/// Longest duration text accepted (the longest real one, TimeSpan.MaxValue, has 26 chars).
pub(super) const MAX_DURATION_LEN: usize = 64;
/// Durations at or above this many ticks mean "infinite": .NET's TimeSpan.MaxValue is
/// `P10675199DT2H48M5.4775807S`, and Python sends `P10675199DT2H48M5.477539S` for it.
pub(super) const INFINITE_THRESHOLD_TICKS: i64 =
    10_675_199 * 86_400 * crate::constants::TICKS_PER_SECOND;
/// What the service reports for a time that never happened (e.g. AccessedAt of an unused queue).
pub(super) const NEVER: &str = "0001-01-01T00:00:00Z";

pub(super) fn bad_value<T>(el: &Node, what: &str) -> Result<T, AtomError> {
    err(format!(
        "invalid value for {}: '{}' is not {what}",
        el.name,
        clip(el.text.trim())
    ))
}

pub(super) fn parse_bool_text(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

pub(super) fn boolean(el: &Node) -> Result<bool, AtomError> {
    match parse_bool_text(&el.text) {
        Some(b) => Ok(b),
        None => bad_value(el, "a boolean (true or false)"),
    }
}

pub(super) fn int64(el: &Node) -> Result<i64, AtomError> {
    match el.text.trim().parse::<i64>() {
        Ok(v) => Ok(v),
        Err(_) => bad_value(el, "an integer"),
    }
}

pub(super) fn int32(el: &Node) -> Result<i32, AtomError> {
    match el.text.trim().parse::<i32>() {
        Ok(v) => Ok(v),
        Err(_) => bad_value(el, "a 32-bit integer"),
    }
}

/// Parses an xsd:duration, guarding against inputs that could overflow the parser and mapping
/// anything at or above TimeSpan.MaxValue's day count to [`TimeSpan::MAX`].
pub(super) fn parse_duration_text(s: &str) -> Option<TimeSpan> {
    let t = s.trim();
    if t.is_empty() || t.len() > MAX_DURATION_LEN {
        return None;
    }
    let mut run = 0usize;
    for c in t.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run > 18 {
                return None;
            }
        } else {
            run = 0;
        }
    }
    let ts = TimeSpan::parse_xsd(t)?;
    if ts.0 >= INFINITE_THRESHOLD_TICKS {
        Some(TimeSpan::MAX)
    } else {
        Some(ts)
    }
}

pub(super) fn duration(el: &Node) -> Result<TimeSpan, AtomError> {
    match parse_duration_text(&el.text) {
        Some(d) => Ok(d),
        None => bad_value(el, "an xsd:duration such as PT1M or P14D"),
    }
}

/// Reduces a `ForwardTo` value to an entity path: the SDKs send absolute addresses
/// (`sb://ns.servicebus.windows.net/queue`, `https://host/queue`) or bare names.
pub(super) fn forward_target(el: &Node) -> Result<Option<String>, AtomError> {
    let raw = el.text.trim();
    if raw.is_empty() || el.is_nil() {
        return Ok(None);
    }
    let path = match raw.find("://") {
        Some(i) => {
            let after = &raw[i + 3..];
            match after.find('/') {
                Some(j) => &after[j + 1..],
                None => "",
            }
        }
        None => raw,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_matches('/');
    if path.is_empty() {
        return bad_value(el, "an entity name or address with an entity path");
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| path.to_string());
    Ok(Some(decoded))
}

pub(super) fn parse_double_text(s: &str) -> Option<f64> {
    match s.trim() {
        "INF" => Some(f64::INFINITY),
        "-INF" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse::<f64>().ok(),
    }
}

/// Parses a typed `Value` element of a `KeyValueOfstringanyType` item.
pub(super) fn typed_value(el: &Node, key: &str) -> Result<Value, AtomError> {
    if el.is_nil() {
        return Ok(Value::Null);
    }
    let text = el.text.as_str();
    let bad = |ty: &str| {
        AtomError(format!(
            "invalid value for property '{}': '{}' is not a valid {ty}",
            clip(key),
            clip(text.trim())
        ))
    };
    match el.xsi_type() {
        None => Ok(Value::String(text.to_string())),
        Some(
            ty @ ("int" | "long" | "short" | "byte" | "unsignedByte" | "unsignedShort"
            | "unsignedInt" | "unsignedLong" | "integer"),
        ) => text
            .trim()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| bad(ty)),
        Some(ty @ ("double" | "float" | "decimal")) => parse_double_text(text)
            .map(Value::Double)
            .ok_or_else(|| bad(ty)),
        Some("boolean") => parse_bool_text(text)
            .map(Value::Bool)
            .ok_or_else(|| bad("boolean")),
        Some("dateTime") => parse_date(text)
            .map(Value::DateTime)
            .ok_or_else(|| bad("dateTime")),
        // string, char, guid, anyURI, duration (no duration Value exists; the xsd text is kept)
        // and anything else the SDKs might send are kept as text, as the .NET SDK does.
        Some(_) => Ok(Value::String(text.to_string())),
    }
}

/// Parses a `Parameters` / `Properties` list of `KeyValueOfstringanyType` items.
pub(super) fn key_values(el: &Node) -> Result<BTreeMap<String, Value>, AtomError> {
    let mut out = BTreeMap::new();
    for item in el
        .children
        .iter()
        .filter(|c| c.name == "KeyValueOfstringanyType")
    {
        let key = match item.child("Key") {
            Some(k) if !k.text.is_empty() => k.text.clone(),
            _ => {
                return err(format!(
                    "invalid {}: a KeyValueOfstringanyType item has no Key",
                    el.name
                ))
            }
        };
        let value = match item.child("Value") {
            Some(v) => typed_value(v, &key)?,
            None => Value::Null,
        };
        out.insert(key, value);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Entity parsing.

/// ISO 8601 with 7 fractional digits; times at or before the epoch render as the service's
/// "never" value.
pub(super) fn date_or_never(ms: Millis) -> String {
    if ms <= 0 {
        NEVER.to_string()
    } else {
        iso8601(ms)
    }
}

/// ISO 8601 to the second, as the Atom `<published>` / `<updated>` elements carry dates.
pub(super) fn atom_date(ms: Millis) -> String {
    let full = iso8601(ms.max(0));
    match full.find('.') {
        Some(i) => format!("{}Z", &full[..i]),
        None => full,
    }
}

pub(super) fn typed_value_xml(out: &mut String, v: &Value) {
    let (ty, text) = match v {
        Value::Null => {
            out.push_str("<Value i:nil=\"true\"/>");
            return;
        }
        Value::String(s) => ("string", s.clone()),
        Value::Int(i) if i32::try_from(*i).is_ok() => ("int", i.to_string()),
        Value::Int(i) => ("long", i.to_string()),
        Value::Double(d) => (
            "double",
            if d.is_nan() {
                "NaN".to_string()
            } else if d.is_infinite() {
                if *d > 0.0 { "INF" } else { "-INF" }.to_string()
            } else {
                d.to_string()
            },
        ),
        Value::Bool(b) => ("boolean", b.to_string()),
        Value::DateTime(ms) => ("dateTime", iso8601(*ms)),
    };
    out.push_str(&format!(
        "<Value i:type=\"d6p1:{ty}\" xmlns:d6p1=\"{XSD_NS}\">{}</Value>",
        esc(&text)
    ));
}

pub(super) fn key_values_xml(out: &mut String, tag: &str, items: &BTreeMap<String, Value>) {
    if items.is_empty() {
        out.push_str(&format!("<{tag}/>"));
        return;
    }
    out.push_str(&format!("<{tag}>"));
    for (k, v) in items {
        out.push_str("<KeyValueOfstringanyType>");
        el(out, "Key", k);
        typed_value_xml(out, v);
        out.push_str("</KeyValueOfstringanyType>");
    }
    out.push_str(&format!("</{tag}>"));
}
