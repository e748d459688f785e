//! LIKE patterns compiled once to an anchored regular expression, so that matching is
//! linear in the text (the `regex` crate's guarantee), instead of backtracking at every `%`.

use regex::{Regex, RegexBuilder};

/// The largest automaton a LIKE pattern may compile to. A constant pattern is at most
/// 1024 characters (the service's expression limit) and stays far below this; a pattern
/// computed at evaluation time from message data over it is an evaluation error.
const MAX_AUTOMATON_BYTES: usize = 1 << 20;

/// A compiled LIKE pattern: `%` is `.*`, `_` is `.`, everything else (and every escaped
/// character) literal, anchored at both ends (a leading or trailing `%` instead leaves that
/// end unanchored); `(?s)` so `%` and `_` match line breaks.
#[derive(Debug, Clone)]
pub(super) struct LikeRegex {
    re: Regex,
    wildcards: usize,
}

impl PartialEq for LikeRegex {
    fn eq(&self, other: &Self) -> bool {
        self.re.as_str() == other.re.as_str()
    }
}

impl LikeRegex {
    /// Does the whole of `text` match the pattern? Linear in `text`.
    pub(super) fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }

    /// The budget a match against `text` is charged: its length times one more than the
    /// number of wildcards. The automaton usually scans each byte once, but the engine's
    /// guarantee is O(pattern × text), and the pattern's size that matters is its wildcards
    /// (literal runs are found by substring search).
    pub(super) fn cost(&self, text: &str) -> usize {
        text.len().saturating_mul(1 + self.wildcards)
    }
}

#[cfg(test)]
thread_local! {
    /// How many patterns this thread compiled (tests check constant patterns compile once).
    static COMPILED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many LIKE patterns this thread has compiled so far.
#[cfg(test)]
pub(super) fn compiled_count() -> usize {
    COMPILED.with(|c| c.get())
}

/// Compiles a LIKE pattern with an optional ESCAPE character (which makes the next
/// character literal, `%` and `_` included).
pub(super) fn compile(pattern: &str, esc: Option<char>) -> Result<LikeRegex, String> {
    #[cfg(test)]
    COMPILED.with(|c| c.set(c.get() + 1));
    let mut body = String::with_capacity(pattern.len() + 8);
    let mut buf = [0u8; 4];
    // Whether the pattern starts and ends with `%`: then that end needs no anchor, which
    // lets the regex engine search from the other end or for a literal (no `.*` states).
    let (mut leading_many, mut trailing_many) = (false, false);
    let mut wildcards = 0;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let many = c == '%' && Some(c) != esc;
        if Some(c) == esc {
            match chars.next() {
                Some(n) => body.push_str(&regex::escape(n.encode_utf8(&mut buf))),
                None => return Err("LIKE pattern ends with the escape character".to_string()),
            }
        } else if many {
            if body.is_empty() {
                leading_many = true;
            } else if !trailing_many {
                // `%%` is the same as `%`; one `.*` keeps the automaton small.
                body.push_str(".*");
                wildcards += 1;
            }
        } else if c == '_' {
            body.push('.');
            wildcards += 1;
        } else {
            body.push_str(&regex::escape(c.encode_utf8(&mut buf)));
        }
        trailing_many = many;
    }
    if trailing_many {
        if let Some(stripped) = body.strip_suffix(".*") {
            body.truncate(stripped.len());
        }
    }
    let mut re = String::with_capacity(body.len() + 10);
    re.push_str("(?s)");
    if !leading_many {
        re.push_str(r"\A");
    }
    re.push_str(&body);
    if !trailing_many {
        re.push_str(r"\z");
    }
    RegexBuilder::new(&re)
        .size_limit(MAX_AUTOMATON_BYTES)
        .build()
        .map(|re| LikeRegex { re, wildcards })
        .map_err(|e| format!("LIKE pattern is too complex: {e}"))
}

#[cfg(test)]
mod tests {
    use super::compile;

    fn m(p: &str, esc: Option<char>, text: &str) -> bool {
        compile(p, esc).unwrap().is_match(text)
    }

    #[test]
    fn wildcards_literals_and_escapes() {
        assert!(m("%off", None, "50%off"));
        assert!(m("a_c", None, "abc") && !m("a_c", None, "abbc"));
        assert!(m("a%", None, "a\nb"), "% spans line breaks");
        assert!(m("_", None, "é") && !m("_", None, "ab"));
        assert!(m("50!%%", Some('!'), "50%off") && !m("50!%%", Some('!'), "50off"));
        assert!(m("a!_b", Some('!'), "a_b") && !m("a!_b", Some('!'), "axb"));
        assert!(m("1.5*(x)", None, "1.5*(x)") && !m("1.5", None, "105"));
        assert!(m("%%", Some('%'), "%") && !m("%%", Some('%'), "x"));
        assert!(m("", None, "") && !m("", None, "x"));
        assert!(m("%", None, "") && m("%%", None, "xy") && m("%b%", None, "abc"));
        assert!(m("a%", None, "ab") && !m("a%", None, "ba") && !m("%a", None, "ab"));
        assert!(m("%a%b", None, "xaxb") && !m("%a%b", None, "xbxa"));
        assert!(compile("ab!", Some('!')).is_err());
    }
}
