//! Parse condition text into an untyped syntax tree with spans.
//!
//! Precedence and associativity are rhai's (`Token::precedence` in rhai's
//! tokenizer), so a condition means the same thing here and in a strategy
//! script: `||` 30, `&&` 60, `== !=` 90, `in` 110, `< <= > >=` 130,
//! `+ -` 150, `* / %` 180, all left-associative; unary operators bind
//! tightest.

use super::lexer::{tokenize, Span, Tok};
use super::ParseError;

/// Deepest nesting accepted; keeps recursion bounded on hostile input.
pub(crate) const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    In,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::In => "in",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }

    fn from_tok(t: &Tok) -> Option<(BinOp, u8)> {
        Some(match t {
            Tok::OrOr => (BinOp::Or, 30),
            Tok::AndAnd => (BinOp::And, 60),
            Tok::EqEq => (BinOp::Eq, 90),
            Tok::NotEq => (BinOp::Ne, 90),
            Tok::In => (BinOp::In, 110),
            Tok::Lt => (BinOp::Lt, 130),
            Tok::Le => (BinOp::Le, 130),
            Tok::Gt => (BinOp::Gt, 130),
            Tok::Ge => (BinOp::Ge, 130),
            Tok::Plus => (BinOp::Add, 150),
            Tok::Minus => (BinOp::Sub, 150),
            Tok::Star => (BinOp::Mul, 180),
            Tok::Slash => (BinOp::Div, 180),
            Tok::Percent => (BinOp::Rem, 180),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UnOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AstKind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    List(Vec<Ast>),
    Attr(String),
    Unary(UnOp, Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    Call(String, Vec<Ast>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ast {
    pub kind: AstKind,
    pub span: Span,
}

impl Ast {
    /// A fully parenthesised rendering: equal for conditions that differ
    /// only in spacing or redundant parentheses, so shared conditions are
    /// recognised and evaluated once per decision.
    pub(crate) fn canonical(&self) -> String {
        let mut s = String::new();
        self.write_canonical(&mut s);
        s
    }

    fn write_canonical(&self, s: &mut String) {
        use std::fmt::Write;
        match &self.kind {
            AstKind::Int(v) => {
                let _ = write!(s, "{v}");
            }
            AstKind::Float(v) => {
                let _ = write!(s, "{v:?}f");
            }
            AstKind::Str(v) => {
                let _ = write!(s, "{v:?}");
            }
            AstKind::Bool(v) => {
                let _ = write!(s, "{v}");
            }
            AstKind::Attr(a) => s.push_str(a),
            AstKind::List(items) => {
                s.push('[');
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    it.write_canonical(s);
                }
                s.push(']');
            }
            AstKind::Unary(op, e) => {
                s.push_str(if *op == UnOp::Not { "!(" } else { "-(" });
                e.write_canonical(s);
                s.push(')');
            }
            AstKind::Binary(op, l, r) => {
                s.push('(');
                l.write_canonical(s);
                s.push_str(op.symbol());
                r.write_canonical(s);
                s.push(')');
            }
            AstKind::Call(f, args) => {
                s.push_str(f);
                s.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    a.write_canonical(s);
                }
                s.push(')');
            }
        }
    }
}

pub(crate) fn parse(src: &str) -> Result<Ast, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0 };
    if p.peek() == &Tok::Eof {
        return Err(ParseError::new(p.span(), "condition is empty"));
    }
    let ast = p.expr(0, 0)?;
    if p.peek() != &Tok::Eof {
        return Err(ParseError::new(
            p.span(),
            format!(
                "expected an operator or the end of the condition, found {}",
                p.peek().describe()
            ),
        ));
    }
    Ok(ast)
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn span(&self) -> Span {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> (Tok, Span) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Span, ParseError> {
        if self.peek() == &want {
            Ok(self.bump().1)
        } else {
            Err(ParseError::new(
                self.span(),
                format!("expected {what}, found {}", self.peek().describe()),
            ))
        }
    }

    fn expr(&mut self, min_prec: u8, depth: usize) -> Result<Ast, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.span(),
                format!("condition is nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let mut lhs = self.unary(depth + 1)?;
        while let Some((op, prec)) = BinOp::from_tok(self.peek()) {
            if prec <= min_prec {
                break;
            }
            self.bump();
            let rhs = self.expr(prec, depth + 1)?;
            let span = lhs.span.to(rhs.span);
            lhs = Ast {
                kind: AstKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self, depth: usize) -> Result<Ast, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.span(),
                format!("condition is nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let (tok, span) = (self.peek().clone(), self.span());
        match tok {
            Tok::Bang | Tok::Minus | Tok::Plus => {
                self.bump();
                // `-9223372036854775808` is a literal in rhai, not a negation.
                if tok == Tok::Minus {
                    if let Tok::Int(v) = *self.peek() {
                        let lit = self.span();
                        self.bump();
                        let n = (v as i128).wrapping_neg() as i64;
                        return Ok(Ast {
                            kind: AstKind::Int(n),
                            span: span.to(lit),
                        });
                    }
                }
                let inner = self.unary(depth + 1)?;
                let full = span.to(inner.span);
                Ok(match tok {
                    Tok::Plus => Ast {
                        kind: inner.kind,
                        span: full,
                    },
                    Tok::Bang => Ast {
                        kind: AstKind::Unary(UnOp::Not, Box::new(inner)),
                        span: full,
                    },
                    _ => Ast {
                        kind: AstKind::Unary(UnOp::Neg, Box::new(inner)),
                        span: full,
                    },
                })
            }
            _ => self.primary(depth),
        }
    }

    fn primary(&mut self, depth: usize) -> Result<Ast, ParseError> {
        let (tok, span) = self.bump();
        let kind = match tok {
            Tok::Int(v) => {
                if v > i64::MAX as u64 {
                    return Err(ParseError::new(
                        span,
                        format!("integer literal is out of range (at most {})", i64::MAX),
                    ));
                }
                AstKind::Int(v as i64)
            }
            Tok::Float(v) => AstKind::Float(v),
            Tok::Str(s) => AstKind::Str(s),
            Tok::True => AstKind::Bool(true),
            Tok::False => AstKind::Bool(false),
            Tok::LParen => {
                let inner = self.expr(0, depth + 1)?;
                let end = self.expect(Tok::RParen, "`)`")?;
                return Ok(Ast {
                    kind: inner.kind,
                    span: span.to(end),
                });
            }
            Tok::LBracket => {
                let mut items = Vec::new();
                if self.peek() != &Tok::RBracket {
                    loop {
                        items.push(self.expr(0, depth + 1)?);
                        if self.peek() == &Tok::Comma {
                            self.bump();
                            if self.peek() == &Tok::RBracket {
                                break;
                            }
                        } else {
                            break;
                        }
                    }
                }
                let end = self.expect(Tok::RBracket, "`,` or `]`")?;
                return Ok(Ast {
                    kind: AstKind::List(items),
                    span: span.to(end),
                });
            }
            Tok::Ident(name) => {
                if self.peek() == &Tok::LParen {
                    self.bump();
                    let mut args = Vec::new();
                    if self.peek() != &Tok::RParen {
                        loop {
                            args.push(self.expr(0, depth + 1)?);
                            if self.peek() == &Tok::Comma {
                                self.bump();
                            } else {
                                break;
                            }
                        }
                    }
                    let end = self.expect(Tok::RParen, "`,` or `)`")?;
                    return Ok(Ast {
                        kind: AstKind::Call(name, args),
                        span: span.to(end),
                    });
                }
                AstKind::Attr(name)
            }
            other => {
                return Err(ParseError::new(
                    span,
                    format!("expected a value, found {}", other.describe()),
                ))
            }
        };
        Ok(Ast { kind, span })
    }
}
