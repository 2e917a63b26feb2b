//! Type-check a parsed condition against the schema and compile it into the
//! typed IR of [`super::ir`]. Every error carries the span of the offending
//! node, so the loader can point at file:line:col.

use super::ir::{ArithOp, BoolIr, CmpOp, FloatIr, IntIr, StrIr, Sym};
use super::lexer::Span;
use super::parser::{Ast, AstKind, BinOp, UnOp};
use super::ParseError;
use crate::base::util::did_you_mean;
use crate::base::AttrType;
use crate::context::schema::{Schema, Symbols};

/// What a condition may refer to: the schema's attributes and the symbol
/// table that string literals are interned into.
pub(crate) struct Scope<'a> {
    pub attrs: &'a Schema,
    pub symbols: &'a mut Symbols,
}

/// The built-in name for the request's channel.
pub(crate) const CHANNEL: &str = "channel";

/// `channel` compared with a literal that is not a declared channel would
/// silently never match: reject it.
fn check_channel(sym: Sym, text: &str, at: Span, scope: &Scope<'_>) -> Result<(), ParseError> {
    let declared = &scope.symbols.channels;
    if declared.is_empty() || declared.contains(&sym) {
        return Ok(());
    }
    Err(ParseError::new(
        at,
        format!("`{text}` is not a declared channel; declare it under [channels]"),
    ))
}

/// A closed attribute (a string or string_set with declared `values`)
/// compared with a literal outside them would be decided before any
/// customer is seen (`==` and `in` never hold, `!=` always does): almost
/// always a typo. Reject it, with the closest declared value.
fn check_value(slot: u16, text: &str, at: Span, scope: &Scope<'_>) -> Result<(), ParseError> {
    let attr = &scope.attrs.attrs[slot as usize];
    let Some(values) = &attr.values else {
        return Ok(());
    };
    if values.iter().any(|v| v == text) {
        return Ok(());
    }
    let hint = did_you_mean(crate::base::util::closest(
        text,
        values.iter().map(String::as_str),
    ));
    Err(ParseError::new(
        at,
        format!(
            "`{text}` is not one of the values of `{}` ({}){hint}; fix the value or add it to the attribute's `values`",
            attr.name,
            crate::base::util::list(values)
        ),
    ))
}

/// The functions conditions may call.
pub(crate) const FUNCTIONS: &[&str] = &["len", "days_since", "hours_since", "min", "max", "abs"];

enum Typed {
    Bool(BoolIr),
    Int(IntIr),
    Float(FloatIr),
    Str(StrIr),
    Set(u16),
    Time(u16),
}

impl Typed {
    fn name(&self) -> &'static str {
        match self {
            Typed::Bool(_) => "a bool",
            Typed::Int(_) => "an int",
            Typed::Float(_) => "a float",
            Typed::Str(_) => "a string",
            Typed::Set(_) => "a string_set",
            Typed::Time(_) => "a timestamp",
        }
    }

    fn into_float(self) -> Option<FloatIr> {
        match self {
            Typed::Float(f) => Some(f),
            Typed::Int(IntIr::Const(k)) => Some(FloatIr::Const(k as f64)),
            Typed::Int(i) => Some(FloatIr::FromInt(Box::new(i))),
            _ => None,
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Typed::Int(_) | Typed::Float(_))
    }
}

/// Compile a condition (must be a bool).
pub(crate) fn compile_bool(ast: &Ast, scope: &mut Scope<'_>) -> Result<BoolIr, ParseError> {
    match check(ast, scope)? {
        Typed::Bool(b) => Ok(b),
        other => Err(ParseError::new(
            ast.span,
            format!(
                "a condition must be true or false, but this is {}; compare it, e.g. `x > 0`",
                other.name()
            ),
        )),
    }
}

/// Compile a numeric expression (a value expression); ints are promoted.
pub(crate) fn compile_number(ast: &Ast, scope: &mut Scope<'_>) -> Result<FloatIr, ParseError> {
    let t = check(ast, scope)?;
    let name = t.name();
    t.into_float().ok_or_else(|| {
        ParseError::new(
            ast.span,
            format!("a value expression must be a number, but this is {name}"),
        )
    })
}

fn check(ast: &Ast, scope: &mut Scope<'_>) -> Result<Typed, ParseError> {
    let err = |m: String| ParseError::new(ast.span, m);
    Ok(match &ast.kind {
        AstKind::Int(v) => Typed::Int(IntIr::Const(*v)),
        AstKind::Float(v) => Typed::Float(FloatIr::Const(*v)),
        AstKind::Bool(v) => Typed::Bool(BoolIr::Const(*v)),
        AstKind::Str(s) => {
            let sym = scope.symbols.intern(s);
            Typed::Str(StrIr::Const(sym, s.as_str().into()))
        }
        AstKind::List(_) => {
            return Err(err(
                "a list may only appear on the right of `in`, e.g. `segment in [\"gold\", \"platinum\"]`".into(),
            ))
        }
        AstKind::Attr(name) if name == CHANNEL && scope.attrs.slot(name).is_none() => {
            Typed::Str(StrIr::Channel)
        }
        AstKind::Attr(name) => {
            let Some(slot) = scope.attrs.slot(name) else {
                let hint = did_you_mean(scope.attrs.suggest(name));
                return Err(err(format!(
                    "unknown attribute `{name}`{hint}; declare it under [schema]"
                )));
            };
            match scope.attrs.attrs[slot as usize].ty {
                AttrType::Int => Typed::Int(IntIr::Attr(slot)),
                AttrType::Float => Typed::Float(FloatIr::Attr(slot)),
                AttrType::Bool => Typed::Bool(BoolIr::Attr(slot)),
                AttrType::String => Typed::Str(StrIr::Attr(slot)),
                AttrType::StringSet => Typed::Set(slot),
                AttrType::Timestamp => Typed::Time(slot),
            }
        }
        AstKind::Unary(op, inner) => {
            let t = check(inner, scope)?;
            match (op, t) {
                (UnOp::Not, Typed::Bool(b)) => Typed::Bool(BoolIr::Not(Box::new(b))),
                (UnOp::Neg, Typed::Int(i)) => Typed::Int(IntIr::Neg(Box::new(i))),
                (UnOp::Neg, Typed::Float(FloatIr::Const(f))) => Typed::Float(FloatIr::Const(-f)),
                (UnOp::Neg, Typed::Float(f)) => Typed::Float(FloatIr::Neg(Box::new(f))),
                (UnOp::Not, t) => {
                    return Err(err(format!("`!` needs a bool, but this is {}", t.name())))
                }
                (UnOp::Neg, t) => {
                    return Err(err(format!("`-` needs a number, but this is {}", t.name())))
                }
            }
        }
        AstKind::Binary(op, l, r) => binary(*op, l, r, ast, scope)?,
        AstKind::Call(f, args) => call(f, args, ast, scope)?,
    })
}

fn binary(
    op: BinOp,
    l: &Ast,
    r: &Ast,
    ast: &Ast,
    scope: &mut Scope<'_>,
) -> Result<Typed, ParseError> {
    let err = |m: String| ParseError::new(ast.span, m);
    if op == BinOp::In {
        return in_list(l, r, ast, scope);
    }
    let a = check(l, scope)?;
    let b = check(r, scope)?;
    let sym = op.symbol();
    let cmp = match op {
        BinOp::Eq => Some(CmpOp::Eq),
        BinOp::Ne => Some(CmpOp::Ne),
        BinOp::Lt => Some(CmpOp::Lt),
        BinOp::Le => Some(CmpOp::Le),
        BinOp::Gt => Some(CmpOp::Gt),
        BinOp::Ge => Some(CmpOp::Ge),
        _ => None,
    };
    if let Some(cmp) = cmp {
        let equality = matches!(cmp, CmpOp::Eq | CmpOp::Ne);
        return Ok(Typed::Bool(match (a, b) {
            (Typed::Int(IntIr::Attr(s)), Typed::Int(IntIr::Const(k))) => BoolIr::CmpIntConst(cmp, s, k),
            (Typed::Int(IntIr::Const(k)), Typed::Int(IntIr::Attr(s))) => BoolIr::CmpIntConst(flip(cmp), s, k),
            (Typed::Float(FloatIr::Attr(s)), b @ (Typed::Float(FloatIr::Const(_)) | Typed::Int(IntIr::Const(_)))) => {
                match b.into_float() {
                    Some(FloatIr::Const(k)) => BoolIr::CmpFloatConst(cmp, s, k),
                    _ => unreachable_const(),
                }
            }
            (a @ (Typed::Float(FloatIr::Const(_)) | Typed::Int(IntIr::Const(_))), Typed::Float(FloatIr::Attr(s))) => {
                match a.into_float() {
                    Some(FloatIr::Const(k)) => BoolIr::CmpFloatConst(flip(cmp), s, k),
                    _ => unreachable_const(),
                }
            }
            (Typed::Int(x), Typed::Int(y)) => BoolIr::CmpInt(cmp, Box::new((x, y))),
            (a, b) if a.is_number() && b.is_number() => {
                let (x, y) = (a.into_float(), b.into_float());
                match (x, y) {
                    (Some(x), Some(y)) => BoolIr::CmpFloat(cmp, Box::new((x, y))),
                    _ => unreachable_const(),
                }
            }
            (Typed::Time(x), Typed::Time(y)) => {
                BoolIr::CmpInt(cmp, Box::new((IntIr::Time(x), IntIr::Time(y))))
            }
            (Typed::Bool(x), Typed::Bool(y)) if equality => BoolIr::CmpBool(cmp, Box::new((x, y))),
            (Typed::Str(x), Typed::Str(y)) if equality => {
                for (side, other, other_at) in [(&x, &y, r.span), (&y, &x, l.span)] {
                    match (side, other) {
                        (StrIr::Channel, StrIr::Const(sym, text)) => {
                            check_channel(*sym, text, ast.span, scope)?
                        }
                        (StrIr::Attr(slot), StrIr::Const(_, text)) => {
                            check_value(*slot, text, other_at, scope)?
                        }
                        _ => {}
                    }
                }
                BoolIr::StrEq(cmp == CmpOp::Ne, Box::new((x, y)))
            }
            (Typed::Str(_), Typed::Str(_)) | (Typed::Bool(_), Typed::Bool(_)) => {
                return Err(err(format!("`{sym}` cannot order strings or bools; only `==` and `!=` compare them")))
            }
            (Typed::Time(_), b) | (b, Typed::Time(_)) if b.is_number() => {
                return Err(err(format!(
                    "`{sym}` compares a timestamp with a number; use `days_since(t)` or `hours_since(t)` to get a number of days or hours"
                )))
            }
            (a, b) => {
                return Err(err(format!(
                    "`{sym}` cannot compare {} with {}",
                    a.name(),
                    b.name()
                )))
            }
        }));
    }
    match op {
        BinOp::And | BinOp::Or => match (a, b) {
            (Typed::Bool(x), Typed::Bool(y)) => Ok(Typed::Bool(if op == BinOp::And {
                BoolIr::And(Box::new((x, y)))
            } else {
                BoolIr::Or(Box::new((x, y)))
            })),
            (a, b) => Err(err(format!(
                "`{sym}` needs bools on both sides, but has {} and {}",
                a.name(),
                b.name()
            ))),
        },
        _ => {
            let aop = match op {
                BinOp::Add => ArithOp::Add,
                BinOp::Sub => ArithOp::Sub,
                BinOp::Mul => ArithOp::Mul,
                BinOp::Div => ArithOp::Div,
                _ => ArithOp::Rem,
            };
            match (a, b) {
                (Typed::Int(x), Typed::Int(y)) => {
                    Ok(Typed::Int(IntIr::Arith(aop, Box::new((x, y)))))
                }
                (a, b) if a.is_number() && b.is_number() => {
                    match (a.into_float(), b.into_float()) {
                        (Some(x), Some(y)) => {
                            Ok(Typed::Float(FloatIr::Arith(aop, Box::new((x, y)))))
                        }
                        _ => unreachable_const(),
                    }
                }
                (a, b) => Err(err(format!(
                    "`{sym}` needs numbers on both sides, but has {} and {}",
                    a.name(),
                    b.name()
                ))),
            }
        }
    }
}

#[cold]
fn unreachable_const() -> ! {
    // into_float only fails for non-numbers, which the arms above exclude.
    unreachable!("numeric operand did not convert to float")
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

fn in_list(l: &Ast, r: &Ast, ast: &Ast, scope: &mut Scope<'_>) -> Result<Typed, ParseError> {
    let err = |m: String| ParseError::new(ast.span, m);
    let lhs = check(l, scope)?;
    let items = match &r.kind {
        AstKind::List(items) => items,
        _ => {
            return match (check(r, scope)?, lhs) {
                (Typed::Set(slot), Typed::Str(s)) => {
                    if let StrIr::Const(_, text) = &s {
                        check_value(slot, text, l.span, scope)?;
                    }
                    Ok(Typed::Bool(BoolIr::SetContains(slot, s)))
                }
                (Typed::Set(_), other) => Err(err(format!(
                    "only strings can be members of a string_set, but this is {}",
                    other.name()
                ))),
                (other, _) => Err(ParseError::new(
                    r.span,
                    format!(
                        "the right of `in` must be a list literal `[...]` or a string_set attribute, but this is {}",
                        other.name()
                    ),
                )),
            }
        }
    };
    let mut consts = Vec::with_capacity(items.len());
    for it in items {
        match check(it, scope)? {
            t @ (Typed::Int(IntIr::Const(_))
            | Typed::Float(FloatIr::Const(_))
            | Typed::Str(StrIr::Const(..))
            | Typed::Bool(BoolIr::Const(_))) => consts.push((t, it.span)),
            _ => {
                return Err(ParseError::new(
                    it.span,
                    "list elements must be literals (numbers, strings, true or false)",
                ))
            }
        }
    }
    let mismatch = |span, want: &str, got: &Typed| {
        ParseError::new(
            span,
            format!(
                "list element is {} but the left of `in` is {want}",
                got.name()
            ),
        )
    };
    Ok(Typed::Bool(match lhs {
        Typed::Str(s) => {
            let mut syms = Vec::new();
            for (t, span) in consts {
                match t {
                    Typed::Str(StrIr::Const(sym, text)) => {
                        match s {
                            StrIr::Channel => check_channel(sym, &text, span, scope)?,
                            StrIr::Attr(slot) => check_value(slot, &text, span, scope)?,
                            StrIr::Const(..) => {}
                        }
                        syms.push(sym)
                    }
                    t => return Err(mismatch(span, "a string", &t)),
                }
            }
            BoolIr::StrInList(s, syms.into())
        }
        Typed::Int(i) if consts.iter().all(|(t, _)| matches!(t, Typed::Int(_))) => {
            let ks = consts
                .into_iter()
                .map(|(t, _)| match t {
                    Typed::Int(IntIr::Const(k)) => k,
                    _ => 0,
                })
                .collect();
            BoolIr::IntInList(i, ks)
        }
        Typed::Int(i) => {
            // Ints and floats: like rhai, an int element compares exactly
            // and a float element as a float.
            let (mut ints, mut floats) = (Vec::new(), Vec::new());
            for (t, span) in consts {
                match t {
                    Typed::Int(IntIr::Const(k)) => ints.push(k),
                    Typed::Float(FloatIr::Const(k)) => floats.push(k),
                    _ => {
                        return Err(ParseError::new(
                            span,
                            "list element is not a number but the left of `in` is a number",
                        ))
                    }
                }
            }
            BoolIr::IntInMixedList(i, Box::new((ints.into(), floats.into())))
        }
        lhs @ Typed::Float(_) => {
            let mut ks = Vec::new();
            for (t, span) in consts {
                match t.into_float() {
                    Some(FloatIr::Const(k)) => ks.push(k),
                    _ => {
                        return Err(ParseError::new(
                            span,
                            "list element is not a number but the left of `in` is a number",
                        ))
                    }
                }
            }
            match lhs.into_float() {
                Some(f) => BoolIr::FloatInList(f, ks.into()),
                None => unreachable_const(),
            }
        }
        Typed::Bool(b) => {
            let (mut t, mut f) = (false, false);
            for (c, span) in consts {
                match c {
                    Typed::Bool(BoolIr::Const(v)) => {
                        t |= v;
                        f |= !v;
                    }
                    c => return Err(mismatch(span, "a bool", &c)),
                }
            }
            BoolIr::BoolInList(Box::new(b), t, f)
        }
        other => {
            return Err(ParseError::new(
                l.span,
                format!(
                    "the left of `in` [...] must be a string, number or bool, but this is {}",
                    other.name()
                ),
            ))
        }
    }))
}

fn call(f: &str, args: &[Ast], ast: &Ast, scope: &mut Scope<'_>) -> Result<Typed, ParseError> {
    let err = |m: String| ParseError::new(ast.span, m);
    let arity = match f {
        "len" | "days_since" | "hours_since" | "abs" => 1,
        "min" | "max" => 2,
        _ => {
            let hint = did_you_mean(crate::base::util::closest(f, FUNCTIONS.iter().copied()));
            return Err(err(format!(
                "unknown function `{f}`{hint}; conditions may call {}",
                crate::base::util::list(FUNCTIONS)
            )));
        }
    };
    if args.len() != arity {
        return Err(err(format!(
            "`{f}` takes {arity} argument{}, but {} {} given",
            if arity == 1 { "" } else { "s" },
            args.len(),
            if args.len() == 1 { "was" } else { "were" }
        )));
    }
    let a = check(&args[0], scope)?;
    let arg_err = |t: &Typed, want: &str| {
        ParseError::new(
            args[0].span,
            format!("`{f}` needs {want}, but this is {}", t.name()),
        )
    };
    Ok(match f {
        "len" => match a {
            Typed::Str(s) => Typed::Int(IntIr::LenStr(Box::new(s))),
            Typed::Set(slot) => Typed::Int(IntIr::LenSet(slot)),
            t => return Err(arg_err(&t, "a string or a string_set")),
        },
        "days_since" | "hours_since" => match a {
            Typed::Time(slot) if f == "days_since" => Typed::Int(IntIr::DaysSince(slot)),
            Typed::Time(slot) => Typed::Int(IntIr::HoursSince(slot)),
            t => return Err(arg_err(&t, "a timestamp attribute")),
        },
        "abs" => match a {
            Typed::Int(i) => Typed::Int(IntIr::Abs(Box::new(i))),
            Typed::Float(x) => Typed::Float(FloatIr::Abs(Box::new(x))),
            t => return Err(arg_err(&t, "a number")),
        },
        _ => {
            let b = check(&args[1], scope)?;
            let is_min = f == "min";
            match (a, b) {
                (Typed::Int(x), Typed::Int(y)) => Typed::Int(if is_min {
                    IntIr::Min(Box::new((x, y)))
                } else {
                    IntIr::Max(Box::new((x, y)))
                }),
                (a, b) if a.is_number() && b.is_number() => {
                    match (a.into_float(), b.into_float()) {
                        (Some(x), Some(y)) => Typed::Float(if is_min {
                            FloatIr::Min(Box::new((x, y)))
                        } else {
                            FloatIr::Max(Box::new((x, y)))
                        }),
                        _ => unreachable_const(),
                    }
                }
                (a, b) => {
                    return Err(err(format!(
                        "`{f}` needs two numbers, but has {} and {}",
                        a.name(),
                        b.name()
                    )))
                }
            }
        }
    })
}
