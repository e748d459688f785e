//! Recursive-descent parser producing [`Expr`] trees and action [`Stmt`]s.
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, predicates (comparison, `IS [NOT] NULL`,
//! `[NOT] IN`, `[NOT] LIKE`, `EXISTS`), `+ -`, `* / %`, unary `+ -`, primaries.

use super::ast::{ArithOp, CmpOp, Expr, LikePattern, PropRef, Stmt, SysProp};
use super::lexer::{tokenize, Kw, Sym, Tok, Token};
use super::like;
use super::{SqlError, MAX_DEPTH};
use crate::broker::value::Value;
use std::collections::BTreeMap;

/// What a sub-expression is statically known to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A predicate (TRUE/FALSE/unknown).
    Bool,
    /// A constant or operator result that is certainly not boolean.
    NonBool,
    /// Known only at evaluation time (properties, NULL).
    Any,
}

const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
/// Operand of prefix `NOT`: binds tighter than AND/OR, looser than predicates.
const PREC_NOT: u8 = 3;
const PREC_PRED: u8 = 4;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;
/// Operand of unary `+`/`-`.
const PREC_UNARY: u8 = 7;

/// An infix (or postfix predicate) operator.
#[derive(Debug, Clone, Copy)]
enum Infix {
    Or,
    And,
    Cmp(CmpOp),
    Is,
    In,
    Like,
    /// `NOT IN` / `NOT LIKE`.
    NotInOrLike,
    Arith(ArithOp),
}

impl Infix {
    fn prec(self) -> u8 {
        match self {
            Infix::Or => PREC_OR,
            Infix::And => PREC_AND,
            Infix::Cmp(_) | Infix::Is | Infix::In | Infix::Like | Infix::NotInOrLike => PREC_PRED,
            Infix::Arith(ArithOp::Add | ArithOp::Sub) => PREC_ADD,
            Infix::Arith(_) => PREC_MUL,
        }
    }
}

/// A parsed sub-expression with its tree depth, static kind and first token.
struct P {
    e: Expr,
    depth: usize,
    kind: Kind,
    pos: usize,
    text: String,
}

struct Parser<'a> {
    toks: Vec<Token>,
    i: usize,
    params: &'a BTreeMap<String, Value>,
    nesting: usize,
}

fn err(pos: usize, token: impl Into<String>, message: impl Into<String>) -> SqlError {
    SqlError {
        position: pos,
        token: token.into(),
        message: message.into(),
    }
}

/// Parses a filter predicate.
pub(super) fn parse_filter(text: &str, params: &BTreeMap<String, Value>) -> Result<Expr, SqlError> {
    let mut p = Parser::new(text, params)?;
    if p.at(&Tok::Eof) {
        return Err(p.unexpected("empty filter expression"));
    }
    let root = p.parse_expr(0)?;
    if !p.at(&Tok::Eof) {
        return Err(p.unexpected("unexpected token after the end of the expression"));
    }
    p.require_bool(root)
}

/// Parses a sequence of `SET`/`REMOVE` statements, optionally separated by `;`.
pub(super) fn parse_action(
    text: &str,
    params: &BTreeMap<String, Value>,
) -> Result<Vec<Stmt>, SqlError> {
    let mut p = Parser::new(text, params)?;
    let mut out = Vec::new();
    loop {
        while p.eat_sym(Sym::Semicolon) {}
        if p.at(&Tok::Eof) {
            break;
        }
        let verb = match &p.peek().tok {
            Tok::Ident(w) if w.eq_ignore_ascii_case("SET") => "SET",
            Tok::Ident(w) if w.eq_ignore_ascii_case("REMOVE") => "REMOVE",
            _ => return Err(p.unexpected("expected SET or REMOVE")),
        };
        p.bump();
        let target = p.parse_property_ref()?;
        // The property name just consumed (after any `sys.` scope).
        let target_tok = p.toks[p.i.saturating_sub(1)].clone();
        if let PropRef::Sys(s) = target {
            let ok = if verb == "SET" {
                s.settable()
            } else {
                s.removable()
            };
            if !ok {
                return Err(err(
                    target_tok.pos,
                    target_tok.text,
                    format!("system property {s:?} cannot be changed by {verb}"),
                ));
            }
        }
        if verb == "SET" {
            let eq = p.peek().clone();
            if !p.eat_sym(Sym::Eq) {
                return Err(p.unexpected("expected '=' after the SET target"));
            }
            let value = p.parse_expr(0)?;
            out.push(Stmt::Set {
                target,
                value: value.e,
                pos: eq.pos,
            });
        } else {
            out.push(Stmt::Remove(target));
        }
    }
    Ok(out)
}

impl<'a> Parser<'a> {
    fn new(text: &str, params: &'a BTreeMap<String, Value>) -> Result<Parser<'a>, SqlError> {
        Ok(Parser {
            toks: tokenize(text)?,
            i: 0,
            params,
            nesting: 0,
        })
    }

    fn peek(&self) -> &Token {
        // `tokenize` always ends with Eof and `bump` never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek2(&self) -> &Token {
        &self.toks[(self.i + 1).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn at(&self, t: &Tok) -> bool {
        &self.peek().tok == t
    }

    fn at_kw(&self, kw: Kw) -> bool {
        self.peek().tok == Tok::Keyword(kw)
    }

    fn eat_kw(&mut self, kw: Kw) -> bool {
        if self.at_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat_sym(&mut self, s: Sym) -> bool {
        if self.peek().tok == Tok::Sym(s) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: Sym, what: &str) -> Result<Token, SqlError> {
        if self.peek().tok == Tok::Sym(s) {
            Ok(self.bump())
        } else {
            Err(self.unexpected(&format!("expected {what}")))
        }
    }

    /// An error at the current token.
    fn unexpected(&self, message: &str) -> SqlError {
        let t = self.peek();
        if t.tok == Tok::Eof {
            err(
                t.pos,
                "",
                format!("{message} (reached the end of the expression)"),
            )
        } else {
            err(t.pos, t.text.clone(), message)
        }
    }

    /// Tracks recursion so deeply nested input fails cleanly instead of overflowing the stack.
    fn enter(&mut self) -> Result<(), SqlError> {
        self.nesting += 1;
        // A nesting level can take two calls (a binary operand holding a parenthesis).
        if self.nesting > 2 * MAX_DEPTH {
            let t = self.peek();
            return Err(err(
                t.pos,
                t.text.clone(),
                format!("expression is nested too deeply (limit {MAX_DEPTH})"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    /// Builds a node, enforcing the tree-depth limit (evaluation recurses over the tree).
    fn node(
        &self,
        e: Expr,
        depth: usize,
        kind: Kind,
        pos: usize,
        text: String,
    ) -> Result<P, SqlError> {
        if depth > MAX_DEPTH {
            return Err(err(
                pos,
                text,
                format!("expression is nested too deeply (limit {MAX_DEPTH})"),
            ));
        }
        Ok(P {
            e,
            depth,
            kind,
            pos,
            text,
        })
    }

    /// A predicate position (AND/OR/NOT operand, whole filter) must not be a non-boolean.
    fn require_bool(&self, p: P) -> Result<Expr, SqlError> {
        if p.kind == Kind::NonBool {
            return Err(err(p.pos, p.text, "expected a boolean expression"));
        }
        Ok(p.e)
    }

    /// Parses an expression whose infix operators all bind at least as tightly as `min`
    /// (precedence climbing). Kept small: every nesting level costs a few stack frames.
    fn parse_expr(&mut self, min: u8) -> Result<P, SqlError> {
        self.enter()?;
        let r = self.parse_expr_loop(min);
        self.leave();
        r
    }

    fn parse_expr_loop(&mut self, min: u8) -> Result<P, SqlError> {
        // Precedence of the operator that built `lhs` (primaries bind tightest).
        let mut lhs_prec = if self.at_kw(Kw::Not) {
            PREC_NOT
        } else {
            u8::MAX
        };
        let mut lhs = self.parse_prefix()?;
        while let Some(op) = self.infix_op() {
            let prec = op.prec();
            if prec < min {
                break;
            }
            // Predicates don't chain: `a = b = c` and `NOT a = b = c` are errors (parenthesise).
            if prec == PREC_PRED && lhs_prec <= PREC_PRED {
                break;
            }
            lhs = self.parse_infix(lhs, op)?;
            lhs_prec = prec;
        }
        Ok(lhs)
    }

    fn infix_op(&self) -> Option<Infix> {
        Some(match self.peek().tok {
            Tok::Keyword(Kw::Or) => Infix::Or,
            Tok::Keyword(Kw::And) => Infix::And,
            Tok::Sym(Sym::Eq) => Infix::Cmp(CmpOp::Eq),
            Tok::Sym(Sym::Ne) => Infix::Cmp(CmpOp::Ne),
            Tok::Sym(Sym::Lt) => Infix::Cmp(CmpOp::Lt),
            Tok::Sym(Sym::Le) => Infix::Cmp(CmpOp::Le),
            Tok::Sym(Sym::Gt) => Infix::Cmp(CmpOp::Gt),
            Tok::Sym(Sym::Ge) => Infix::Cmp(CmpOp::Ge),
            Tok::Keyword(Kw::Is) => Infix::Is,
            Tok::Keyword(Kw::In) => Infix::In,
            Tok::Keyword(Kw::Like) => Infix::Like,
            Tok::Keyword(Kw::Not)
                if matches!(
                    self.peek2().tok,
                    Tok::Keyword(Kw::In) | Tok::Keyword(Kw::Like)
                ) =>
            {
                Infix::NotInOrLike
            }
            Tok::Sym(Sym::Plus) => Infix::Arith(ArithOp::Add),
            Tok::Sym(Sym::Minus) => Infix::Arith(ArithOp::Sub),
            Tok::Sym(Sym::Star) => Infix::Arith(ArithOp::Mul),
            Tok::Sym(Sym::Slash) => Infix::Arith(ArithOp::Div),
            Tok::Sym(Sym::Percent) => Infix::Arith(ArithOp::Mod),
            _ => return None,
        })
    }

    #[inline(never)]
    fn parse_infix(&mut self, lhs: P, op: Infix) -> Result<P, SqlError> {
        match op {
            Infix::Or => self.parse_logic(lhs, Kw::Or),
            Infix::And => self.parse_logic(lhs, Kw::And),
            Infix::Cmp(c) => self.parse_cmp(lhs, c),
            Infix::Is => self.parse_is(lhs),
            Infix::In => {
                self.bump();
                self.parse_in(lhs, false)
            }
            Infix::Like => self.parse_like(lhs, false),
            Infix::NotInOrLike => {
                self.bump();
                if self.eat_kw(Kw::In) {
                    self.parse_in(lhs, true)
                } else {
                    self.parse_like(lhs, true)
                }
            }
            Infix::Arith(a) => self.parse_arith(lhs, a),
        }
    }

    /// A flattened `AND`/`OR` chain.
    #[inline(never)]
    fn parse_logic(&mut self, first: P, kw: Kw) -> Result<P, SqlError> {
        let prec = if kw == Kw::Or { PREC_OR } else { PREC_AND };
        let (pos, text, mut depth) = (first.pos, first.text.clone(), first.depth);
        let op_pos = self.peek().pos;
        let mut items = vec![self.require_bool(first)?];
        while self.eat_kw(kw) {
            let p = self.parse_expr(prec + 1)?;
            depth = depth.max(p.depth);
            items.push(self.require_bool(p)?);
        }
        let e = if kw == Kw::Or {
            Expr::Or { items, pos: op_pos }
        } else {
            Expr::And { items, pos: op_pos }
        };
        self.node(e, depth + 1, Kind::Bool, pos, text)
    }

    #[inline(never)]
    fn parse_cmp(&mut self, left: P, op: CmpOp) -> Result<P, SqlError> {
        self.bump();
        let right = self.parse_expr(PREC_PRED + 1)?;
        let depth = left.depth.max(right.depth) + 1;
        self.node(
            Expr::Cmp {
                op,
                left: Box::new(left.e),
                right: Box::new(right.e),
            },
            depth,
            Kind::Bool,
            left.pos,
            left.text,
        )
    }

    #[inline(never)]
    fn parse_is(&mut self, left: P) -> Result<P, SqlError> {
        self.bump();
        let negated = self.eat_kw(Kw::Not);
        if !self.eat_kw(Kw::Null) {
            return Err(self.unexpected("expected NULL after IS"));
        }
        self.node(
            Expr::IsNull {
                expr: Box::new(left.e),
                negated,
            },
            left.depth + 1,
            Kind::Bool,
            left.pos,
            left.text,
        )
    }

    #[inline(never)]
    fn parse_arith(&mut self, left: P, op: ArithOp) -> Result<P, SqlError> {
        let t = self.bump();
        let prec = Infix::Arith(op).prec();
        let right = self.parse_expr(prec + 1)?;
        let depth = left.depth.max(right.depth) + 1;
        self.node(
            Expr::Arith {
                op,
                left: Box::new(left.e),
                right: Box::new(right.e),
                pos: t.pos,
            },
            depth,
            Kind::NonBool,
            left.pos,
            left.text,
        )
    }

    #[inline(never)]
    fn parse_in(&mut self, left: P, negated: bool) -> Result<P, SqlError> {
        self.expect_sym(Sym::LParen, "'(' after IN")?;
        if self.at(&Tok::Sym(Sym::RParen)) {
            return Err(self.unexpected("IN list must not be empty"));
        }
        let mut depth = left.depth;
        let mut list = Vec::new();
        loop {
            let item = self.parse_expr(PREC_ADD)?;
            depth = depth.max(item.depth);
            list.push(item.e);
            if !self.eat_sym(Sym::Comma) {
                break;
            }
        }
        self.expect_sym(Sym::RParen, "',' or ')' in IN list")?;
        self.node(
            Expr::In {
                expr: Box::new(left.e),
                list,
                negated,
            },
            depth + 1,
            Kind::Bool,
            left.pos,
            left.text,
        )
    }

    #[inline(never)]
    fn parse_like(&mut self, left: P, negated: bool) -> Result<P, SqlError> {
        let like = self.bump();
        let pat_tok = self.peek().clone();
        let pattern = self.parse_expr(PREC_ADD)?;
        let mut depth = left.depth.max(pattern.depth);
        let escape = if self.at_kw(Kw::Escape) {
            self.bump();
            let esc_tok = self.peek().clone();
            let e = self.parse_expr(PREC_ADD)?;
            depth = depth.max(e.depth);
            Some((e, esc_tok))
        } else {
            None
        };
        let static_escape = match &escape {
            None => Some(None),
            Some((p, t)) => match &p.e {
                Expr::Const(Value::String(s)) => {
                    let mut cs = s.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => Some(Some(c)),
                        _ => {
                            return Err(err(
                                t.pos,
                                t.text.clone(),
                                "ESCAPE must be a single character",
                            ))
                        }
                    }
                }
                Expr::Const(Value::Null) => None,
                Expr::Const(_) => {
                    return Err(err(
                        t.pos,
                        t.text.clone(),
                        "ESCAPE must be a single-character string",
                    ))
                }
                _ => None,
            },
        };
        let pattern = match (&pattern.e, static_escape) {
            (Expr::Const(Value::String(s)), Some(esc)) => LikePattern::Static(
                like::compile(s, esc).map_err(|m| err(pat_tok.pos, pat_tok.text.clone(), m))?,
            ),
            (Expr::Const(Value::Null), _) => LikePattern::Dynamic {
                pattern: Box::new(pattern.e),
                escape: escape.map(|(p, _)| Box::new(p.e)),
            },
            (Expr::Const(_), _) => {
                return Err(err(
                    pat_tok.pos,
                    pat_tok.text,
                    "LIKE pattern must be a string",
                ));
            }
            _ => LikePattern::Dynamic {
                pattern: Box::new(pattern.e),
                escape: escape.map(|(p, _)| Box::new(p.e)),
            },
        };
        self.node(
            Expr::Like {
                expr: Box::new(left.e),
                pattern,
                negated,
                pos: like.pos,
            },
            depth + 1,
            Kind::Bool,
            left.pos,
            left.text,
        )
    }

    /// Prefix position: `NOT`, unary `+`/`-`, `EXISTS`, parentheses or a primary.
    fn parse_prefix(&mut self) -> Result<P, SqlError> {
        match self.peek().tok {
            Tok::Keyword(Kw::Not) => self.parse_not(),
            Tok::Sym(Sym::Minus) | Tok::Sym(Sym::Plus) => self.parse_unary(),
            Tok::Sym(Sym::LParen) => self.parse_paren(),
            Tok::Ident(_) if self.peek2().tok == Tok::Sym(Sym::LParen) => self.parse_function(),
            _ => self.parse_primary(),
        }
    }

    #[inline(never)]
    fn parse_not(&mut self) -> Result<P, SqlError> {
        let t = self.bump();
        let inner = self.parse_expr(PREC_NOT)?;
        let depth = inner.depth + 1;
        let e = self.require_bool(inner)?;
        self.node(
            Expr::Not {
                expr: Box::new(e),
                pos: t.pos,
            },
            depth,
            Kind::Bool,
            t.pos,
            t.text,
        )
    }

    #[inline(never)]
    fn parse_paren(&mut self) -> Result<P, SqlError> {
        let t = self.bump();
        let inner = self.parse_expr(0)?;
        self.expect_sym(Sym::RParen, "')'")?;
        // A parenthesis is a nesting level, as README's cap of 128 counts it.
        self.node(inner.e, inner.depth + 1, inner.kind, t.pos, t.text)
    }

    #[inline(never)]
    fn parse_unary(&mut self) -> Result<P, SqlError> {
        let t = self.bump();
        let minus = t.tok == Tok::Sym(Sym::Minus);
        // `-9223372036854775808` is only representable as a negated literal.
        if minus {
            if let Tok::Int(v) = self.peek().tok {
                self.bump();
                let n = i64::try_from(-i128::from(v))
                    .map_err(|_| err(t.pos, t.text.clone(), "integer constant is out of range"))?;
                return self.node(Expr::Const(Value::Int(n)), 1, Kind::NonBool, t.pos, t.text);
            }
        }
        let inner = self.parse_expr(PREC_UNARY)?;
        let depth = inner.depth + 1;
        let expr = Box::new(inner.e);
        let e = if minus {
            Expr::Neg { expr, pos: t.pos }
        } else {
            Expr::Plus { expr, pos: t.pos }
        };
        self.node(e, depth, Kind::NonBool, t.pos, t.text)
    }

    #[inline(never)]
    fn parse_primary(&mut self) -> Result<P, SqlError> {
        let t = self.peek().clone();
        let constant = |v: Value| {
            let kind = match v {
                Value::Bool(_) => Kind::Bool,
                Value::Null => Kind::Any,
                _ => Kind::NonBool,
            };
            (Expr::Const(v), kind)
        };
        let (e, kind) = match &t.tok {
            Tok::Int(v) => {
                let n = i64::try_from(*v)
                    .map_err(|_| err(t.pos, t.text.clone(), "integer constant is out of range"))?;
                constant(Value::Int(n))
            }
            Tok::Double(d) => constant(Value::Double(*d)),
            Tok::Str(s) => constant(Value::String(s.clone())),
            Tok::Keyword(Kw::True) => constant(Value::Bool(true)),
            Tok::Keyword(Kw::False) => constant(Value::Bool(false)),
            Tok::Keyword(Kw::Null) => constant(Value::Null),
            Tok::Keyword(Kw::Exists) => return self.parse_exists(),
            Tok::Param(name) => match self.lookup_param(name) {
                Some(v) => constant(v.clone()),
                None => {
                    return Err(err(
                        t.pos,
                        t.text.clone(),
                        format!("parameter @{name} is not defined"),
                    ))
                }
            },
            Tok::Ident(_) | Tok::Delimited(_) => {
                let prop = self.parse_property_ref()?;
                return self.node(Expr::Prop(prop), 1, Kind::Any, t.pos, t.text);
            }
            Tok::Eof => return Err(self.unexpected("expected an expression")),
            _ => return Err(self.unexpected("unexpected token; expected an expression")),
        };
        self.bump();
        self.node(e, 1, kind, t.pos, t.text)
    }

    fn parse_exists(&mut self) -> Result<P, SqlError> {
        let t = self.bump();
        self.expect_sym(Sym::LParen, "'(' after EXISTS")?;
        let prop = self.parse_property_ref()?;
        self.expect_sym(Sym::RParen, "')'")?;
        self.node(Expr::Exists(prop), 1, Kind::Bool, t.pos, t.text)
    }

    #[inline(never)]
    fn parse_function(&mut self) -> Result<P, SqlError> {
        let t = self.bump();
        let name = t.text.clone();
        self.expect_sym(Sym::LParen, "'('")?;
        if name.eq_ignore_ascii_case("newid") {
            self.expect_sym(Sym::RParen, "')' (newid takes no arguments)")?;
            return self.node(Expr::NewId, 1, Kind::NonBool, t.pos, t.text);
        }
        if name.eq_ignore_ascii_case("property") || name.eq_ignore_ascii_case("p") {
            let arg = self.parse_expr(PREC_ADD)?;
            self.expect_sym(Sym::RParen, "')'")?;
            return self.node(
                Expr::PropertyFn {
                    name: Box::new(arg.e),
                    pos: t.pos,
                },
                arg.depth + 1,
                Kind::Any,
                t.pos,
                t.text,
            );
        }
        Err(err(t.pos, t.text, format!("unknown function '{name}'")))
    }

    fn lookup_param(&self, name: &str) -> Option<&Value> {
        let at = format!("@{name}");
        self.params
            .get(&at)
            .or_else(|| self.params.get(name))
            .or_else(|| {
                self.params
                    .iter()
                    .find(|(k, _)| {
                        let k = k.strip_prefix('@').unwrap_or(k);
                        super::eval::names_equal_ci(k, name)
                    })
                    .map(|(_, v)| v)
            })
    }

    /// `[sys. | user.] name`, where name is a regular, `[delimited]` or `"quoted"` identifier.
    fn parse_property_ref(&mut self) -> Result<PropRef, SqlError> {
        let t = self.peek().clone();
        let name = match &t.tok {
            Tok::Ident(n) | Tok::Delimited(n) => n.clone(),
            _ => return Err(self.unexpected("expected a property name")),
        };
        self.bump();
        if self.peek().tok != Tok::Sym(Sym::Dot) {
            return Ok(PropRef::User(name));
        }
        let is_sys = matches!(&t.tok, Tok::Ident(n) if n.eq_ignore_ascii_case("sys"));
        let is_user = matches!(&t.tok, Tok::Ident(n) if n.eq_ignore_ascii_case("user"));
        if !is_sys && !is_user {
            return Err(err(
                t.pos,
                t.text,
                "invalid property scope; expected 'sys' or 'user'",
            ));
        }
        self.bump();
        let nt = self.peek().clone();
        let prop = match &nt.tok {
            Tok::Ident(n) | Tok::Delimited(n) => n.clone(),
            // After a scope a keyword can only be a name: `user.in` is the property "in".
            Tok::Keyword(_) => nt.text.clone(),
            _ => return Err(self.unexpected("expected a property name after the scope")),
        };
        self.bump();
        if is_user {
            return Ok(PropRef::User(prop));
        }
        match SysProp::from_name(&prop) {
            Some(s) => Ok(PropRef::Sys(s)),
            None => Err(err(
                nt.pos,
                nt.text,
                format!("unknown system property '{prop}'"),
            )),
        }
    }
}
