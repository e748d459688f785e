//! Cost cases for attacker-controlled input (issue 18 items 2 and 3): LIKE matching and
//! parsing stay linear in their input, and nesting stops at exactly [`MAX_DEPTH`].

use super::tests::msg;
use super::*;
use std::time::{Duration, Instant};

/// A message whose `big` property is `n` times `a` (the attack text).
fn msg_with_big(n: usize) -> Message {
    let mut m = msg();
    m.edit_content(|c| {
        c.properties
            .insert("big".to_string(), Value::String("a".repeat(n)))
    });
    m
}

/// The pattern: `LIKE '%' + 'a'×1000 + 'b'`, which never matches `a…a`.
fn attack_filter() -> SqlExpr {
    let text = format!("big LIKE '%{}b'", "a".repeat(1000));
    SqlExpr::compile(&text, &BTreeMap::new()).unwrap()
}

/// The fastest of five runs of `f` after a warm-up run (less noise from other work on the
/// machine and from first-touch page faults).
fn best_of_5(mut f: impl FnMut()) -> Duration {
    f();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn like_attack_on_twenty_subscriptions_is_fast() {
    let filters: Vec<SqlExpr> = (0..20).map(|_| attack_filter()).collect();
    let m = msg_with_big(60_000);
    // One budget for the message, as a topic's fan-out has: the attack stays within it.
    let budget = EvalBudget::per_message();
    let t = Instant::now();
    for f in &filters {
        assert!(!f.evaluate_within(&m, &budget).unwrap());
    }
    let took = t.elapsed();
    eprintln!("LIKE attack, 20 subscriptions x 60,000 characters: {took:?}");
    assert!(!budget.is_exhausted());
    // Before the fix this took 1.25 s in release builds (backtracking at every '%').
    assert!(
        took < Duration::from_millis(200),
        "20 evaluations took {took:?}"
    );
}

#[test]
fn like_time_is_linear_in_the_text() {
    let f = attack_filter();
    let (small, large) = (msg_with_big(20_000), msg_with_big(200_000));
    let t_small = best_of_5(|| assert!(!f.evaluate(&small).unwrap()));
    let t_large = best_of_5(|| assert!(!f.evaluate(&large).unwrap()));
    // 10× the text may cost at most 40× the time: a quadratic cost would be 100×, and the
    // margin absorbs a loaded machine (tests run in parallel threads).
    assert!(
        t_large < t_small * 40 + Duration::from_millis(2),
        "10x text: {t_small:?} -> {t_large:?}"
    );
}

#[test]
fn parse_time_is_linear_in_the_text() {
    let chain = |n: usize| vec!["color = 'red'"; n].join(" OR ");
    let (small, large) = (chain(4_000), chain(40_000));
    let t_small = best_of_5(|| drop(SqlExpr::compile(&small, &BTreeMap::new()).unwrap()));
    let t_large = best_of_5(|| drop(SqlExpr::compile(&large, &BTreeMap::new()).unwrap()));
    assert!(
        t_large < t_small * 40 + Duration::from_millis(2),
        "10x text: {t_small:?} -> {t_large:?}"
    );
}

#[test]
fn nesting_stops_at_exactly_max_depth() {
    // `TRUE` is depth 1 and every parenthesis or NOT adds one level.
    let parens = |n: usize| format!("{}TRUE{}", "(".repeat(n), ")".repeat(n));
    let nots = |n: usize| format!("{}TRUE", "NOT ".repeat(n));
    for text in [parens(MAX_DEPTH - 1), nots(MAX_DEPTH - 1)] {
        assert!(SqlExpr::compile(&text, &BTreeMap::new()).is_ok(), "{text}");
    }
    for text in [parens(MAX_DEPTH), nots(MAX_DEPTH)] {
        let e = SqlExpr::compile(&text, &BTreeMap::new()).unwrap_err();
        assert!(e.message.contains("nested too deeply (limit 128)"), "{e}");
    }
}

#[test]
fn constant_like_patterns_compile_once() {
    let before = like::compiled_count();
    let f = attack_filter();
    assert_eq!(like::compiled_count(), before + 1);
    let m = msg_with_big(1_000);
    for _ in 0..10 {
        assert!(!f.evaluate(&m).unwrap());
    }
    assert_eq!(
        like::compiled_count(),
        before + 1,
        "evaluation compiled again"
    );
}

#[test]
fn one_budget_bounds_all_the_filters_a_message_meets() {
    let filters: Vec<SqlExpr> = (0..20).map(|_| attack_filter()).collect();
    let m = msg_with_big(60_000);
    // Each evaluation costs the property copy plus the LIKE scan: ~120,000 units.
    let budget = EvalBudget::new(250_000);
    let results: Vec<_> = filters
        .iter()
        .map(|f| f.evaluate_within(&m, &budget))
        .collect();
    assert!(results[..2].iter().all(|r| r == &Ok(false)), "{results:?}");
    for r in &results[2..] {
        let e = r.as_ref().unwrap_err();
        assert!(e.message.contains("work limit of 250000 units"), "{e}");
    }
    assert!(budget.is_exhausted());
}

#[test]
fn string_concatenation_is_bounded_by_the_budget() {
    // 100 concatenations of a 60,000-character property copy ~300 MB without a bound.
    let text = format!("({}big) = 'x'", "big + ".repeat(99));
    let f = SqlExpr::compile(&text, &BTreeMap::new()).unwrap();
    let m = msg_with_big(60_000);
    let t = Instant::now();
    let e = f.evaluate(&m).unwrap_err();
    let took = t.elapsed();
    assert!(e.message.contains("work limit"), "{e}");
    assert!(took < Duration::from_millis(200), "took {took:?}");
}
