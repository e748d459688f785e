//! The SQL filter and rule-action language (src/broker/filter/sql): compile the text as a
//! filter and as an action, evaluate the filter against a sample message (and an empty one),
//! run the action on a copy, and describe any error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localzure::broker::filter::sql::{SqlActionProgram, SqlExpr};
use localzure::broker::value::Value;
use localzure_fuzz::sample_message;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut params = BTreeMap::new();
    params.insert("@p".to_string(), Value::String("red".into()));
    params.insert("n".to_string(), Value::Int(10));
    params.insert("@flag".to_string(), Value::Bool(true));
    params.insert("@d".to_string(), Value::Double(2.5));
    params.insert("@t".to_string(), Value::DateTime(0));
    params.insert("@null".to_string(), Value::Null);
    let msg = sample_message();
    let mut empty = sample_message();
    empty.content = Default::default();
    match SqlExpr::compile(text, &params) {
        Ok(expr) => {
            for m in [&msg, &empty] {
                if let Err(e) = expr.evaluate(m) {
                    let _ = e.describe(text);
                }
            }
        }
        Err(e) => {
            let _ = e.describe(text);
        }
    }
    match SqlActionProgram::compile(text, &params) {
        Ok(action) => {
            for mut m in [msg, empty] {
                match action.apply(&mut m) {
                    Ok(()) => {}
                    Err(e) => {
                        let _ = e.describe(text);
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.describe(text);
        }
    }
});
