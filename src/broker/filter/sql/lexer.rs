//! Tokenizer for the SQL filter / action language.
//!
//! Positions are 0-based character (Unicode scalar) offsets into the source text.

use super::SqlError;

/// Reserved keywords (case-insensitive). `SET` and `REMOVE` are contextual and only
/// recognised at the start of an action statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    And,
    Or,
    Not,
    Is,
    Null,
    In,
    Like,
    Escape,
    Exists,
    True,
    False,
}

impl Kw {
    fn from_ident(s: &str) -> Option<Kw> {
        const TABLE: [(&str, Kw); 11] = [
            ("AND", Kw::And),
            ("OR", Kw::Or),
            ("NOT", Kw::Not),
            ("IS", Kw::Is),
            ("NULL", Kw::Null),
            ("IN", Kw::In),
            ("LIKE", Kw::Like),
            ("ESCAPE", Kw::Escape),
            ("EXISTS", Kw::Exists),
            ("TRUE", Kw::True),
            ("FALSE", Kw::False),
        ];
        TABLE
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, kw)| *kw)
    }
}

/// Punctuation and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sym {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    LParen,
    RParen,
    Comma,
    Dot,
    Semicolon,
}

/// A token kind with its payload.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// A regular identifier that is not a reserved keyword.
    Ident(String),
    /// A `[delimited]` or `"quoted"` identifier (never a keyword).
    Delimited(String),
    Keyword(Kw),
    /// A `'string'` constant, with `''` unescaped.
    Str(String),
    /// An integer constant. Values up to 2^63 are lexed so that `-9223372036854775808`
    /// can be written; the parser range-checks.
    Int(u64),
    Double(f64),
    /// `@name`, without the `@`.
    Param(String),
    Sym(Sym),
    Eof,
}

/// A token, its start position (characters) and its source text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub pos: usize,
    pub text: String,
}

fn err(pos: usize, token: impl Into<String>, message: impl Into<String>) -> SqlError {
    SqlError {
        position: pos,
        token: token.into(),
        message: message.into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits `text` into tokens, always ending with [`Tok::Eof`].
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, SqlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let slice = |a: usize, b: usize| -> String { chars[a..b].iter().collect() };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = if is_ident_start(c) {
            while i < chars.len() && is_ident_continue(chars[i]) {
                i += 1;
            }
            let word = slice(start, i);
            match Kw::from_ident(&word) {
                Some(kw) => Tok::Keyword(kw),
                None => Tok::Ident(word),
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            lex_number(&chars, &mut i)?
        } else {
            match c {
                '\'' => Tok::Str(lex_quoted(&chars, &mut i, '\'', '\'', "string constant")?),
                '[' => Tok::Delimited(lex_quoted(
                    &chars,
                    &mut i,
                    '[',
                    ']',
                    "delimited identifier",
                )?),
                '"' => Tok::Delimited(lex_quoted(&chars, &mut i, '"', '"', "quoted identifier")?),
                '@' => {
                    i += 1;
                    let name_start = i;
                    while i < chars.len() && is_ident_continue(chars[i]) {
                        i += 1;
                    }
                    if i == name_start {
                        return Err(err(start, "@", "expected a parameter name after '@'"));
                    }
                    Tok::Param(slice(name_start, i))
                }
                _ => {
                    let next = chars.get(i + 1).copied();
                    let (sym, len) = match (c, next) {
                        ('<', Some('>')) => (Sym::Ne, 2),
                        ('!', Some('=')) => (Sym::Ne, 2),
                        ('<', Some('=')) => (Sym::Le, 2),
                        ('>', Some('=')) => (Sym::Ge, 2),
                        ('=', _) => (Sym::Eq, 1),
                        ('<', _) => (Sym::Lt, 1),
                        ('>', _) => (Sym::Gt, 1),
                        ('+', _) => (Sym::Plus, 1),
                        ('-', _) => (Sym::Minus, 1),
                        ('*', _) => (Sym::Star, 1),
                        ('/', _) => (Sym::Slash, 1),
                        ('%', _) => (Sym::Percent, 1),
                        ('(', _) => (Sym::LParen, 1),
                        (')', _) => (Sym::RParen, 1),
                        (',', _) => (Sym::Comma, 1),
                        ('.', _) => (Sym::Dot, 1),
                        (';', _) => (Sym::Semicolon, 1),
                        _ => {
                            return Err(err(start, c.to_string(), "unexpected character"));
                        }
                    };
                    i += len;
                    Tok::Sym(sym)
                }
            }
        };
        out.push(Token {
            tok,
            pos: start,
            text: slice(start, i),
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len(),
        text: String::new(),
    });
    Ok(out)
}

/// Lexes `open ... close` with the closing character doubled as its escape; `i` points at
/// `open` on entry and after `close` on exit.
fn lex_quoted(
    chars: &[char],
    i: &mut usize,
    open: char,
    close: char,
    what: &str,
) -> Result<String, SqlError> {
    let start = *i;
    *i += 1;
    let mut s = String::new();
    loop {
        match chars.get(*i) {
            None => return Err(err(start, open.to_string(), format!("unterminated {what}"))),
            Some(&c) if c == close => {
                if chars.get(*i + 1) == Some(&close) {
                    s.push(close);
                    *i += 2;
                } else {
                    *i += 1;
                    return Ok(s);
                }
            }
            Some(&c) => {
                s.push(c);
                *i += 1;
            }
        }
    }
}

/// Lexes an integer, decimal (`1.5`, `.5`, `2.`) or approximate (`1E5`, `0.5e-2`) constant.
fn lex_number(chars: &[char], i: &mut usize) -> Result<Tok, SqlError> {
    let start = *i;
    let digits = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(i);
    let mut is_double = false;
    if chars.get(*i) == Some(&'.') {
        is_double = true;
        *i += 1;
        digits(i);
    }
    if matches!(chars.get(*i), Some('e') | Some('E')) {
        let mut j = *i + 1;
        if matches!(chars.get(j), Some('+') | Some('-')) {
            j += 1;
        }
        if chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
            is_double = true;
            *i = j;
            digits(i);
        } else {
            let text: String = chars[start..(j).min(chars.len())].iter().collect();
            return Err(err(start, text, "malformed exponent in numeric constant"));
        }
    }
    let text: String = chars[start..*i].iter().collect();
    if is_double {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Tok::Double(v)),
            _ => Err(err(
                start,
                text,
                "numeric constant is malformed or out of range",
            )),
        }
    } else {
        match text.parse::<u64>() {
            Ok(v) if v <= (i64::MAX as u64) + 1 => Ok(Tok::Int(v)),
            _ => Err(err(
                start,
                text,
                "integer constant is out of range for a 64-bit integer",
            )),
        }
    }
}
