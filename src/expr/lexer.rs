//! Tokens of the condition language.
//!
//! The lexer accepts exactly the tokens of the rhai subset that conditions
//! use; anything else rhai would accept (assignment, method calls, blocks,
//! closures) is rejected here with its position, so an author learns at load
//! time, not at decision time, that a construct is not allowed.

use super::ParseError;

/// Byte range of a token or node inside the condition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub(crate) fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// An integer literal; `u64` so that `-9223372036854775808` can be negated.
    Int(u64),
    Float(f64),
    Str(String),
    Ident(String),
    True,
    False,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    OrOr,
    AndAnd,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    Eof,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Int(v) => format!("number `{v}`"),
            Tok::Float(v) => format!("number `{v}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::True => "`true`".into(),
            Tok::False => "`false`".into(),
            Tok::In => "`in`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::OrOr => "`||`".into(),
            Tok::AndAnd => "`&&`".into(),
            Tok::EqEq => "`==`".into(),
            Tok::NotEq => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::Percent => "`%`".into(),
            Tok::Bang => "`!`".into(),
            Tok::Eof => "the end of the condition".into(),
        }
    }
}

/// Longest accepted condition, in bytes: a guard against hostile input, far
/// above anything a person writes.
pub(crate) const MAX_CONDITION_LEN: usize = 16 * 1024;

pub(crate) fn tokenize(src: &str) -> Result<Vec<(Tok, Span)>, ParseError> {
    if src.len() > MAX_CONDITION_LEN {
        return Err(ParseError::new(
            Span { start: 0, end: 0 },
            format!(
                "condition is {} bytes long; the limit is {MAX_CONDITION_LEN}",
                src.len()
            ),
        ));
    }
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let one = |t: Tok| {
            (
                t,
                Span {
                    start,
                    end: start + 1,
                },
            )
        };
        let two = |t: Tok| {
            (
                t,
                Span {
                    start,
                    end: start + 2,
                },
            )
        };
        let next = bytes.get(i + 1).copied();
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => one(Tok::LParen),
            b')' => one(Tok::RParen),
            b'[' => one(Tok::LBracket),
            b']' => one(Tok::RBracket),
            b',' => one(Tok::Comma),
            b'+' => one(Tok::Plus),
            b'-' => one(Tok::Minus),
            b'*' => one(Tok::Star),
            b'%' => one(Tok::Percent),
            b'/' if next == Some(b'/') || next == Some(b'*') => {
                return Err(ParseError::new(
                    Span {
                        start,
                        end: start + 2,
                    },
                    "comments are not allowed in conditions",
                ))
            }
            b'/' => one(Tok::Slash),
            b'|' if next == Some(b'|') => two(Tok::OrOr),
            b'&' if next == Some(b'&') => two(Tok::AndAnd),
            b'=' if next == Some(b'=') => two(Tok::EqEq),
            b'!' if next == Some(b'=') => two(Tok::NotEq),
            b'!' => one(Tok::Bang),
            b'<' if next == Some(b'=') => two(Tok::Le),
            b'<' => one(Tok::Lt),
            b'>' if next == Some(b'=') => two(Tok::Ge),
            b'>' => one(Tok::Gt),
            b'=' => {
                return Err(ParseError::new(
                    Span {
                        start,
                        end: start + 1,
                    },
                    "`=` assigns; conditions compare with `==`",
                ))
            }
            b'"' => lex_string(src, start)?,
            b'0'..=b'9' => lex_number(src, start)?,
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let mut j = i;
                while j < bytes.len() && (bytes[j] == b'_' || bytes[j].is_ascii_alphanumeric()) {
                    j += 1;
                }
                let word = &src[i..j];
                let t = match word {
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "in" => Tok::In,
                    _ => Tok::Ident(word.to_string()),
                };
                (t, Span { start, end: j })
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                let hint = match ch {
                    '\'' => " (strings use double quotes)",
                    '.' => " (method calls are not allowed; write `len(x)`, not `x.len()`)",
                    '&' | '|' => " (use `&&` and `||`)",
                    _ => "",
                };
                return Err(ParseError::new(
                    Span {
                        start,
                        end: start + ch.len_utf8(),
                    },
                    format!("unexpected character `{ch}`{hint}"),
                ));
            }
        };
        i = tok.1.end;
        out.push(tok);
    }
    out.push((
        Tok::Eof,
        Span {
            start: bytes.len(),
            end: bytes.len(),
        },
    ));
    Ok(out)
}

fn lex_string(src: &str, start: usize) -> Result<(Tok, Span), ParseError> {
    let mut s = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, ch)) = chars.next() {
        let at = start + 1 + off;
        match ch {
            '"' => return Ok((Tok::Str(s), Span { start, end: at + 1 })),
            '\\' => match chars.next() {
                Some((_, '"')) => s.push('"'),
                Some((_, '\\')) => s.push('\\'),
                Some((_, 'n')) => s.push('\n'),
                Some((_, 't')) => s.push('\t'),
                Some((_, 'r')) => s.push('\r'),
                _ => {
                    return Err(ParseError::new(
                        Span {
                            start: at,
                            end: at + 1,
                        },
                        "unsupported escape in string; use \\\" \\\\ \\n \\t or \\r",
                    ))
                }
            },
            '\n' | '\r' => {
                return Err(ParseError::new(
                    Span { start, end: at },
                    "string is not closed before the end of the line",
                ))
            }
            _ => s.push(ch),
        }
    }
    Err(ParseError::new(
        Span {
            start,
            end: src.len(),
        },
        "string is not closed: add a `\"`",
    ))
}

fn lex_number(src: &str, start: usize) -> Result<(Tok, Span), ParseError> {
    let bytes = src.as_bytes();
    let mut j = start;
    let digits = |j: &mut usize| {
        while *j < bytes.len() && (bytes[*j].is_ascii_digit() || bytes[*j] == b'_') {
            *j += 1;
        }
    };
    digits(&mut j);
    let mut is_float = false;
    if j + 1 < bytes.len() && bytes[j] == b'.' && bytes[j + 1].is_ascii_digit() {
        is_float = true;
        j += 1;
        digits(&mut j);
    }
    if j < bytes.len() && (bytes[j] == b'e' || bytes[j] == b'E') {
        let mut k = j + 1;
        if k < bytes.len() && (bytes[k] == b'+' || bytes[k] == b'-') {
            k += 1;
        }
        if k < bytes.len() && bytes[k].is_ascii_digit() {
            is_float = true;
            j = k;
            digits(&mut j);
        }
    }
    let span = Span { start, end: j };
    if j < bytes.len() && (bytes[j].is_ascii_alphabetic() || bytes[j] == b'.') {
        return Err(ParseError::new(
            Span { start, end: j + 1 },
            "malformed number (write floats as `1.5` or `1.5e3`; hex and suffixes are not allowed)",
        ));
    }
    let text: String = src[start..j].chars().filter(|&c| c != '_').collect();
    if is_float {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok((Tok::Float(v), span)),
            _ => Err(ParseError::new(
                span,
                "float literal is out of range (it must be finite)",
            )),
        }
    } else {
        match text.parse::<u64>() {
            Ok(v) if v <= i64::MAX as u64 + 1 => Ok((Tok::Int(v), span)),
            _ => Err(ParseError::new(
                span,
                format!(
                    "integer literal is out of range ({}..={})",
                    i64::MIN,
                    i64::MAX
                ),
            )),
        }
    }
}
