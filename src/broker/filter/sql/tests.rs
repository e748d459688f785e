use super::*;
use crate::broker::message::{Message, MessageState, NewMessage};
use crate::time::TimeSpan;
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;

fn props() -> BTreeMap<String, Value> {
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        p.insert(k.to_string(), v);
    };
    put("color", Value::String("red".into()));
    put("Quantity", Value::Int(10));
    put("price", Value::Double(2.5));
    put("active", Value::Bool(true));
    put("nothing", Value::Null);
    put("my prop", Value::String("spaced".into()));
    put("HR-EmployeeID", Value::Int(7));
    put("text", Value::String("50%off".into()));
    put("under_score", Value::String("a_b".into()));
    put("unicode", Value::String("héllo wörld".into()));
    put("big", Value::Int(i64::MAX));
    put("when", Value::DateTime(T0));
    put("num_str", Value::String("10".into()));
    put("In", Value::String("kw".into()));
    put("StoreId", Value::String("Store1".into()));
    put("quote\"d", Value::String("q".into()));
    put("br]acket", Value::String("b".into()));
    p
}

pub(super) fn msg() -> Message {
    Message {
        sequence_number: 42,
        content: NewMessage {
            message_id: "msg-1".into(),
            body: b"hello".to_vec(),
            correlation_id: Some("corr-1".into()),
            session_id: None,
            label: Some("Red bus".into()),
            to: Some("Store5".into()),
            reply_to: Some("replies".into()),
            reply_to_session_id: None,
            content_type: Some("application/json".into()),
            partition_key: None,
            time_to_live: Some(TimeSpan::from_secs(60)),
            scheduled_enqueue_time: None,
            properties: props(),
            body_section: None,
        }
        .into(),
        enqueued_time: T0,
        expires_at: T0 + 60_000,
        ttl: TimeSpan::from_secs(60),
        delivery_count: 3,
        state: MessageState::Active,
        lock: None,
        dead_letter_source: None,
        enqueued_sequence_number: 41,
    }
}

fn params() -> BTreeMap<String, Value> {
    let mut p = BTreeMap::new();
    p.insert("@p".to_string(), Value::String("red".into()));
    p.insert("n".to_string(), Value::Int(10));
    p.insert("@flag".to_string(), Value::Bool(true));
    p.insert("@Mixed".to_string(), Value::Double(2.5));
    p
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum X {
    /// Matches.
    T,
    /// Compiles and evaluates, doesn't match.
    F,
    /// Compiles, evaluation error.
    EvalErr,
    /// Compile (syntax/semantic) error.
    CompileErr,
}
use X::*;

const TABLE: &[(&str, X)] = &[
    // trivial filters
    ("1=1", T),
    ("1 = 0", F),
    ("TRUE", T),
    ("FALSE", F),
    ("NULL", F),
    ("NOT FALSE", T),
    // user properties, case-insensitive names, ordinal values
    ("color = 'red'", T),
    ("color = 'Red'", F),
    ("COLOR = 'red'", T),
    ("user.color = 'red'", T),
    ("User.Color = 'red'", T),
    ("quantity = 10", T),
    ("color <> 'blue'", T),
    ("color != 'red'", F),
    // numbers and promotion
    ("quantity > 5", T),
    ("quantity >= 10", T),
    ("quantity < 10", F),
    ("quantity <= 10.0", T),
    ("quantity = 10.0", T),
    ("price = 2.5", T),
    ("price > 2", T),
    ("price < 2", F),
    ("0.5E-2 = 0.005", T),
    ("101.5E5 = 10150000", T),
    (".5 = 0.5", T),
    ("2. = 2", T),
    ("big = 9223372036854775807", T),
    ("-9223372036854775808 < 0", T),
    ("9223372036854775808 > 0", CompileErr),
    ("99999999999999999999 > 0", CompileErr),
    ("1e400 > 0", CompileErr),
    ("1e = 1", CompileErr),
    // arithmetic
    ("price * 2 = 5", T),
    ("quantity + 1 = 11", T),
    ("quantity - 20 = -10", T),
    ("quantity / 3 = 3", T),
    ("quantity / 4.0 = 2.5", T),
    ("quantity % 3 = 1", T),
    ("price % 1 = 0.5", T),
    ("-quantity = -10", T),
    ("+quantity = 10", T),
    ("- -quantity = 10", T),
    ("2 + 3 * 4 = 14", T),
    ("(2 + 3) * 4 = 20", T),
    ("10 - 2 - 3 = 5", T),
    ("100 / 10 / 5 = 2", T),
    ("quantity / 0 = 1", EvalErr),
    ("quantity % 0 = 1", EvalErr),
    ("price / 0 > 1000", T),
    ("big + 1 > 0", EvalErr),
    ("-(-9223372036854775808) > 0", EvalErr),
    ("TRUE + 1 = 2", EvalErr),
    ("-color = 1", EvalErr),
    ("+color = 1", EvalErr),
    ("color * 2 = 1", EvalErr),
    ("color + '!' = 'red!'", T),
    ("'n' + quantity = 'n10'", T),
    ("'it''s' = 'it' + '''s'", T),
    ("'' = ''", T),
    // NULL / unknown
    ("missing = 1", F),
    ("NOT (missing = 1)", F),
    ("missing <> 1", F),
    ("missing IS NULL", T),
    ("missing IS NOT NULL", F),
    ("nothing IS NULL", T),
    ("color IS NOT NULL", T),
    ("missing + 1 = 2", F),
    ("missing + 1 IS NULL", T),
    ("-missing IS NULL", T),
    ("NULL = NULL", F),
    ("NOT (NULL = NULL)", F),
    ("missing = 1 OR color = 'red'", T),
    ("color = 'red' OR missing = 1", T),
    ("missing = 1 AND color = 'red'", F),
    ("missing = 1 AND color = 'blue'", F),
    ("NOT (missing = 1 AND color = 'blue')", T),
    ("NOT (missing = 1 OR color = 'blue')", F),
    ("NOT (missing = 1 OR color = 'red')", F),
    ("missing IS NULL AND NOT EXISTS(Missing)", T),
    // EXISTS
    ("EXISTS(nothing)", T),
    ("EXISTS(missing)", F),
    ("NOT EXISTS(missing)", T),
    ("EXISTS(color)", T),
    ("EXISTS(COLOR)", T),
    ("EXISTS([my prop])", T),
    ("EXISTS(user.color)", T),
    ("EXISTS(sys.SessionId)", F),
    ("EXISTS(sys.Label)", T),
    ("EXISTS(1)", CompileErr),
    ("EXISTS color", CompileErr),
    // IN
    ("color IN ('red', 'green')", T),
    ("color IN ('blue', 'green')", F),
    ("color NOT IN ('blue', 'green')", T),
    ("color NOT IN ('red')", F),
    ("missing IN ('a')", F),
    ("missing NOT IN ('a')", F),
    ("quantity IN (1, 10.0, 'x')", T),
    ("quantity IN (5 + 5)", T),
    ("color IN (NULL, 'red')", T),
    ("color NOT IN (NULL, 'x')", T),
    ("StoreId IN('Store1', 'Store2', 'Store3')", T),
    ("sys.To IN ('Store5','Store6','Store7') OR StoreId = 'Store8'", T),
    (
        "sys.To NOT IN ('Store1','Store2','Store3','Store4','Store5') OR StoreId NOT IN ('Store1','Store2')",
        F,
    ),
    ("color IN ()", CompileErr),
    ("color IN 'red'", CompileErr),
    ("color IN ('red'", CompileErr),
    // LIKE
    ("sys.Label LIKE '%bus%'", T),
    ("sys.Label LIKE 'Red%'", T),
    ("sys.Label LIKE 'red%'", F),
    ("sys.Label LIKE 'Red _us'", T),
    ("sys.Label LIKE 'Red _s'", F),
    ("sys.Label LIKE '%'", T),
    ("sys.Label LIKE '%%%s'", T),
    ("sys.Label LIKE '%b%u%s%'", T),
    ("sys.Label LIKE '_'", F),
    ("sys.Label NOT LIKE '%car%'", T),
    ("sys.SessionId LIKE '%'", F),
    ("text LIKE '50\\%off' ESCAPE '\\'", T),
    ("text LIKE '50!%%' ESCAPE '!'", T),
    ("color LIKE '50!%%' ESCAPE '!'", F),
    ("under_score LIKE 'a!_b' ESCAPE '!'", T),
    ("color LIKE 'r!_d' ESCAPE '!'", F),
    ("color LIKE 'r_d'", T),
    ("color LIKE 'r%' ESCAPE 'r'", F),
    ("missing LIKE '%'", F),
    ("NOT (missing LIKE '%')", F),
    ("quantity LIKE '1%'", F),
    ("color LIKE color", T),
    ("color LIKE 'r' + '%'", T),
    ("color LIKE quantity", EvalErr),
    ("color LIKE 'x' ESCAPE 'ab'", CompileErr),
    ("color LIKE 'x' ESCAPE 1", CompileErr),
    ("color LIKE 'ab!' ESCAPE '!'", CompileErr),
    ("color LIKE 5", CompileErr),
    ("unicode LIKE 'h_llo%'", T),
    ("unicode = 'héllo wörld'", T),
    // quoted / delimited identifiers, keyword names
    ("[my prop] = 'spaced'", T),
    ("\"my prop\" = 'spaced'", T),
    ("user.[my prop] = 'spaced'", T),
    ("[HR-EmployeeID] = 7", T),
    ("[In] = 'kw'", T),
    ("\"quote\"\"d\" = 'q'", T),
    ("[br]]acket] = 'b'", T),
    ("In = 'kw'", CompileErr),
    ("user.In = 'kw'", T),
    ("user.in = 'kw'", T),
    ("[my prop = 'x'", CompileErr),
    // system properties
    ("sys.MessageId = 'msg-1'", T),
    ("sys.messageid = 'msg-1'", T),
    ("SYS.CorrelationId = 'corr-1'", T),
    ("sys.Subject = 'Red bus'", T),
    ("sys.Label = 'Red bus'", T),
    ("sys.ContentType = 'application/json'", T),
    ("sys.ReplyTo = 'replies'", T),
    ("sys.SessionId IS NULL", T),
    ("sys.ReplyToSessionId = 'x'", F),
    ("sys.SequenceNumber = 42", T),
    ("sys.EnqueuedSequenceNumber = 41", T),
    ("sys.DeliveryCount = 3", T),
    ("sys.DeliveryCount + 1 = 4", T),
    ("sys.ScheduledEnqueueTimeUtc IS NULL", T),
    ("sys.EnqueuedTimeUtc = when", T),
    ("sys.ExpiresAtUtc > sys.EnqueuedTimeUtc", T),
    ("sys.EnqueuedTimeUtc > '2020-01-01'", F),
    ("sys.TimeToLive = 60000", T),
    ("sys.Size > 0", T),
    ("sys.PartitionKey IS NULL", T),
    ("sys.DeadLetterSource IS NULL", T),
    ("sys.Foo = 1", CompileErr),
    ("sys.[Label] = 'Red bus'", T),
    ("foo.bar = 1", CompileErr),
    ("sys = 1", F),
    // type mismatch and strings
    ("num_str = 10", F),
    ("NOT (num_str = 10)", F),
    ("num_str = '10'", T),
    ("'abc' < 'abd'", T),
    ("'B' < 'a'", T),
    ("'b' >= 'a'", T),
    ("active = TRUE", T),
    ("active", T),
    ("NOT active", F),
    ("active AND color = 'red'", T),
    ("active > FALSE", F),
    ("quantity", EvalErr),
    ("NOT quantity", EvalErr),
    ("color = 'red' AND quantity", EvalErr),
    // parameters
    ("color = @p", T),
    ("quantity = @n", T),
    ("@flag", T),
    ("price = @mixed", T),
    ("color = @undefined", CompileErr),
    ("color = @", CompileErr),
    // functions
    ("property('color') = 'red'", T),
    ("p('sys.Label') = 'Red bus'", T),
    ("PROPERTY('user.Quantity') = 10", T),
    ("property('nope') IS NULL", T),
    ("property(NULL) IS NULL", T),
    ("property(1) = 1", EvalErr),
    ("property('sys.Nope') = 1", EvalErr),
    ("newid() <> newid()", T),
    ("newid() IS NOT NULL", T),
    ("newid(1) IS NULL", CompileErr),
    ("nosuchfn() = 1", CompileErr),
    // keywords are case-insensitive; structure
    ("cOLoR = 'red' aNd NoT quantity iN (1,2)", T),
    ("color = 'red' or quantity = 1", T),
    ("(((color = 'red')))", T),
    ("NOT NOT color = 'red'", T),
    ("color = 'red' AND (quantity = 1 OR price = 2.5)", T),
    ("color = 'red' AND quantity = 1 OR price = 2.5", T),
    ("NOT color = 'red' OR TRUE", T),
    ("(color = 'blue') = FALSE", T),
    ("(color = 'blue') = (quantity = 1)", T),
    ("color IS NULL IS NULL", CompileErr),
    ("a = 1 AND b = 2 = 3", CompileErr),
    ("NOT a = 1 = 2", CompileErr),
    ("active = NOT FALSE", T),
    // syntax errors
    ("", CompileErr),
    ("   ", CompileErr),
    ("1", CompileErr),
    ("'abc'", CompileErr),
    ("1 + 1", CompileErr),
    ("color = ", CompileErr),
    ("1 = 1 AND", CompileErr),
    ("1 = 1 AND 5", CompileErr),
    ("NOT 'x'", CompileErr),
    ("a = 1 = 1", CompileErr),
    ("quantity BETWEEN 1 AND 20", CompileErr),
    ("color = 'red';", CompileErr),
    ("color = 'red' # x", CompileErr),
    ("(color = 'red'", CompileErr),
    ("color = 'red')", CompileErr),
    ("color IS 'x'", CompileErr),
    ("color = 'abc", CompileErr),
];

#[test]
fn expression_table() {
    assert!(TABLE.len() >= 80);
    let m = msg();
    let params = params();
    let mut failures = Vec::new();
    for (text, want) in TABLE {
        let got = match SqlExpr::compile(text, &params) {
            Err(_) => CompileErr,
            Ok(e) => match e.evaluate(&m) {
                Ok(true) => T,
                Ok(false) => F,
                Err(_) => EvalErr,
            },
        };
        if got != *want {
            failures.push(format!("{text:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn compile_err(text: &str) -> SqlError {
    match SqlExpr::compile(text, &params()) {
        Ok(e) => panic!("{text:?} compiled: {e:?}"),
        Err(e) => e,
    }
}

#[test]
fn syntax_errors_report_position_and_token() {
    let cases: &[(&str, usize, &str)] = &[
        ("color = 'red' AND", 17, ""),
        ("color = = 1", 8, "="),
        ("color = 'abc", 8, "'"),
        ("a = 1 # 2", 6, "#"),
        ("sys.Nope = 1", 4, "Nope"),
        ("héllo = $", 8, "$"),
        ("x IN ()", 6, ")"),
        ("[unterminated", 0, "["),
        ("x = @missing", 4, "@missing"),
        ("1 + 1", 0, "1"),
        ("(1) = 1 extra", 8, "extra"),
        ("color = 'red' AND 42", 18, "42"),
        ("x LIKE 'a' ESCAPE 'ab'", 18, "'ab'"),
        ("x = 99999999999999999999", 4, "99999999999999999999"),
        ("foo.bar = 1", 0, "foo"),
        ("x IS 1", 5, "1"),
        ("über.x = 1", 0, "über"),
        ("newid(", 6, ""),
    ];
    for (text, pos, tok) in cases {
        let e = compile_err(text);
        assert_eq!(
            (e.position, e.token.as_str()),
            (*pos, *tok),
            "{text:?}: {e}"
        );
        assert!(!e.message.is_empty());
    }
}

#[test]
fn error_display_mentions_position_and_token() {
    let e = compile_err("color = = 1");
    let s = e.to_string();
    assert!(s.contains("position 8"), "{s}");
    assert!(s.contains("'='"), "{s}");
}

#[test]
fn evaluation_errors_carry_the_operator_position() {
    let e = SqlExpr::compile("quantity / 0 = 1", &BTreeMap::new()).unwrap();
    let err = e.evaluate(&msg()).unwrap_err();
    assert_eq!((err.position, err.token.as_str()), (9, "/"));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}1=1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(compile_err(&deep).message.contains("nested"));
    let nots = format!("{}TRUE", "NOT ".repeat(10_000));
    assert!(compile_err(&nots).message.contains("nested"));
    let negs = format!("{}1 = 1", "-".repeat(10_000));
    assert!(compile_err(&negs).message.contains("nested"));
    let sum = format!("{}1 = 0", "1 + ".repeat(10_000));
    assert!(compile_err(&sum).message.contains("nested"));
    let calls = format!("{}'x'{} IS NULL", "p(".repeat(10_000), ")".repeat(10_000));
    assert!(compile_err(&calls).message.contains("nested"));
}

#[test]
fn moderate_nesting_works() {
    let n = 100;
    let text = format!("{}color = 'red'{}", "(".repeat(n), ")".repeat(n));
    let e = SqlExpr::compile(&text, &BTreeMap::new()).unwrap();
    assert!(e.evaluate(&msg()).unwrap());
    let nots = format!("{}TRUE", "NOT ".repeat(100));
    let e = SqlExpr::compile(&nots, &BTreeMap::new()).unwrap();
    assert!(e.evaluate(&msg()).unwrap());
}

#[test]
fn nesting_just_under_the_limit_fits_a_small_stack() {
    // Debug builds use a few KiB of stack per nesting level; 1 MiB must be plenty (tokio
    // workers and test threads get 2 MiB).
    let n = MAX_DEPTH - 4;
    let texts = [
        format!("{}color = 'red'{}", "(".repeat(n), ")".repeat(n)),
        format!("{}TRUE", "NOT ".repeat(n)),
        format!("{}1{} = 1", "-(".repeat(n / 2), ")".repeat(n / 2)),
        format!("{}'color'{} = 'red'", "p(".repeat(n), ")".repeat(n)),
        format!("{}1{} > 0", "(1 + ".repeat(n / 2), ")".repeat(n / 2)),
        format!("{}TRUE{}", "(TRUE AND ".repeat(n / 2), ")".repeat(n / 2)),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            texts
                .iter()
                .map(|t| match SqlExpr::compile(t, &BTreeMap::new()) {
                    Ok(e) => e.evaluate(&msg()).map_err(|e| format!("{t}: {e}")),
                    Err(e) => Err(format!("{t}: {e}")),
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    for r in handle.join().unwrap() {
        assert!(r.is_ok(), "{r:?}");
    }
}

#[test]
fn long_or_chains_are_flat() {
    let text = (0..5000)
        .map(|i| format!("quantity = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let e = SqlExpr::compile(&text, &BTreeMap::new()).unwrap();
    assert!(e.evaluate(&msg()).unwrap());
    let text = (0..5000)
        .map(|_| "color = 'red'".to_string())
        .collect::<Vec<_>>()
        .join(" AND ");
    let e = SqlExpr::compile(&text, &BTreeMap::new()).unwrap();
    assert!(e.evaluate(&msg()).unwrap());
}

#[test]
fn parameter_keys_with_and_without_at() {
    let mut p = BTreeMap::new();
    p.insert("@a".to_string(), Value::Int(1));
    p.insert("b".to_string(), Value::String("x".into()));
    let e = SqlExpr::compile("@a = 1 AND @b = 'x'", &p).unwrap();
    assert!(e.evaluate(&msg()).unwrap());
    // the documented example
    let mut p = BTreeMap::new();
    p.insert("@stringParam".to_string(), Value::String("orders".into()));
    let e = SqlExpr::compile("source = @stringParam", &p).unwrap();
    let mut m = msg();
    assert!(!e.evaluate(&m).unwrap());
    m.edit_content(|c| {
        c.properties
            .insert("source".into(), Value::String("orders".into()))
    });
    assert!(e.evaluate(&m).unwrap());
}

#[test]
fn exact_name_wins_over_case_insensitive_match() {
    let mut m = msg();
    m.edit_content(|c| {
        c.properties
            .insert("Color".into(), Value::String("blue".into()))
    });
    let e = SqlExpr::compile("Color = 'blue' AND color = 'red'", &BTreeMap::new()).unwrap();
    assert!(e.evaluate(&m).unwrap());
}

#[test]
fn scheduled_and_session_properties() {
    let mut m = msg();
    m.edit_content(|c| {
        c.session_id = Some("s1".into());
        c.scheduled_enqueue_time = Some(T0 + 5);
    });
    let e = SqlExpr::compile(
        "sys.SessionId = 's1' AND sys.ScheduledEnqueueTimeUtc > sys.EnqueuedTimeUtc",
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(e.evaluate(&m).unwrap());
}

#[test]
fn compiled_forms_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<SqlExpr>();
    check::<SqlActionProgram>();
    check::<SqlError>();
}

// ---- actions ----

fn act(text: &str) -> SqlActionProgram {
    match SqlActionProgram::compile(text, &params()) {
        Ok(a) => a,
        Err(e) => panic!("{text:?}: {e}"),
    }
}

fn applied(text: &str) -> Message {
    let mut m = msg();
    act(text).apply(&mut m).unwrap();
    m
}

#[test]
fn set_user_property() {
    let m = applied("SET color = 'blue'");
    assert_eq!(
        m.content.properties()["color"],
        Value::String("blue".into())
    );
    // the documented example
    let m = applied("SET source='routedOrders'");
    assert_eq!(
        m.content.properties()["source"],
        Value::String("routedOrders".into())
    );
}

#[test]
fn set_updates_existing_key_case_insensitively() {
    let m = applied("SET COLOR = 'blue'");
    assert_eq!(
        m.content.properties()["color"],
        Value::String("blue".into())
    );
    assert!(!m.content.properties().contains_key("COLOR"));
}

#[test]
fn set_with_expressions_and_parameters() {
    let m = applied("SET doubled = quantity * 2; SET tag = @p + '-' + sys.Label; SET f = @flag");
    assert_eq!(m.content.properties()["doubled"], Value::Int(20));
    assert_eq!(
        m.content.properties()["tag"],
        Value::String("red-Red bus".into())
    );
    assert_eq!(m.content.properties()["f"], Value::Bool(true));
    let m = applied("SET isRed = color = 'red'");
    assert_eq!(m.content.properties()["isRed"], Value::Bool(true));
    let m = applied("SET [new prop] = NULL");
    assert_eq!(m.content.properties()["new prop"], Value::Null);
    let m = applied("SET x = missing + 1");
    assert_eq!(m.content.properties()["x"], Value::Null);
}

#[test]
fn statements_run_in_order_with_or_without_semicolons() {
    let m = applied("SET a = 1 SET b = a + 1; SET c = b * 10;;");
    assert_eq!(m.content.properties()["b"], Value::Int(2));
    assert_eq!(m.content.properties()["c"], Value::Int(20));
    let m = applied("set a = 1; remove a");
    assert!(!m.content.properties().contains_key("a"));
}

#[test]
fn remove_user_property() {
    let m = applied("REMOVE color; REMOVE user.Quantity; REMOVE missing");
    assert!(!m.content.properties().contains_key("color"));
    assert!(!m.content.properties().contains_key("Quantity"));
    assert!(m.content.properties().contains_key("price"));
}

#[test]
fn set_and_remove_system_properties() {
    let m = applied("SET sys.Label = 'x'; SET sys.To = sys.Label + '-to'; REMOVE sys.ReplyTo");
    assert_eq!(m.content.label(), Some("x"));
    assert_eq!(m.content.to(), Some("x-to"));
    assert_eq!(m.content.reply_to(), None);
    let m =
        applied("SET sys.Subject = 'y'; SET sys.CorrelationId = NULL; SET sys.MessageId = 'new'");
    assert_eq!(m.content.label(), Some("y"));
    assert_eq!(m.content.correlation_id(), None);
    assert_eq!(m.content.message_id(), "new");
    let m = applied(
        "SET sys.SessionId = 's'; SET sys.ReplyToSessionId = 'r'; SET sys.ContentType = 'text/plain'; SET sys.PartitionKey = 'pk'",
    );
    assert_eq!(m.content.session_id(), Some("s"));
    assert_eq!(m.content.reply_to_session_id(), Some("r"));
    assert_eq!(m.content.content_type(), Some("text/plain"));
    assert_eq!(m.content.partition_key(), Some("pk"));
    assert_eq!(m.content.body(), b"hello");
}

#[test]
fn read_only_system_properties_are_compile_errors() {
    for (text, pos, tok) in [
        ("SET sys.SequenceNumber = 1", 8, "SequenceNumber"),
        ("SET sys.EnqueuedTimeUtc = 1", 8, "EnqueuedTimeUtc"),
        ("SET sys.DeliveryCount = 1", 8, "DeliveryCount"),
        ("REMOVE sys.MessageId", 11, "MessageId"),
        ("SET sys.Nope = 1", 8, "Nope"),
    ] {
        let e = SqlActionProgram::compile(text, &BTreeMap::new()).unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (pos, tok), "{text}: {e}");
    }
}

#[test]
fn action_syntax_errors() {
    for (text, pos, tok) in [
        ("SET", 3, ""),
        ("SET x 1", 6, "1"),
        ("DELETE x", 0, "DELETE"),
        ("SET x = ", 8, ""),
        ("SET x = 1 y", 10, "y"),
        ("SET x = @nope", 8, "@nope"),
        ("REMOVE 1", 7, "1"),
    ] {
        let e = SqlActionProgram::compile(text, &BTreeMap::new()).unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (pos, tok), "{text}: {e}");
    }
}

#[test]
fn empty_action_is_a_no_op() {
    assert_eq!(applied(""), msg());
    assert_eq!(applied(" ; ; "), msg());
}

#[test]
fn failing_action_leaves_the_message_unchanged() {
    let mut m = msg();
    let a = act("SET x = 1; SET sys.Label = 'changed'; SET y = 1 / 0");
    assert!(a.apply(&mut m).is_err());
    assert_eq!(m, msg());
    let a = act("SET sys.Label = 1");
    let e = a.apply(&mut m).unwrap_err();
    assert_eq!(e.position, 14);
    assert_eq!(m, msg());
    assert!(act("SET sys.MessageId = NULL").apply(&mut m).is_err());
    assert_eq!(m, msg());
}

// ---- robustness ----

const FRAGMENTS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "IN",
    "LIKE",
    "ESCAPE",
    "EXISTS",
    "TRUE",
    "FALSE",
    "SET",
    "REMOVE",
    "(",
    ")",
    ",",
    ".",
    ";",
    "=",
    "<>",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "sys",
    "user",
    "sys.Label",
    "sys.Nope",
    "color",
    "quantity",
    "price",
    "missing",
    "[my prop]",
    "\"q\"",
    "'red'",
    "'%'",
    "'!'",
    "''",
    "'",
    "[",
    "]",
    "0",
    "1",
    "10",
    "2.5",
    "1e5",
    "9223372036854775807",
    "9223372036854775808",
    "@p",
    "@n",
    "@nope",
    "@",
    "newid",
    "property",
    "p",
    "é",
    "\u{1F600}",
    "'\u{1F600}'",
    "big",
    "active",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|v| v.join(" "))
}

fn exercise(text: &str) {
    let p = params();
    let m = msg();
    if let Ok(e) = SqlExpr::compile(text, &p) {
        let _ = e.evaluate(&m);
    }
    if let Ok(a) = SqlActionProgram::compile(text, &p) {
        let mut m2 = m.clone();
        let _ = a.apply(&mut m2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_strings_never_panic(s in any::<String>()) {
        exercise(&s);
    }

    #[test]
    fn sql_looking_strings_never_panic(s in "[a-zA-Z0-9 '\\[\\]\"@%_().,;=<>!+*/-]{0,64}") {
        exercise(&s);
    }

    #[test]
    fn token_soups_never_panic(s in soup()) {
        exercise(&s);
    }

    #[test]
    fn filter_prefixed_soups_never_panic(s in soup()) {
        exercise(&format!("color = 'red' AND {s}"));
        exercise(&format!("SET x = {s}"));
    }
}
