//! Strategy hooks lowered from rhai's syntax tree to a small tree of
//! typed operations that the engine runs itself.
//!
//! rhai runs a hook by walking its AST with every value a `Dynamic` and
//! every operator, getter and function a hashed lookup: about 10,000
//! instructions for a five-line `adjust`, paid once per candidate. The
//! hooks next-best-action specialists write use a small part of the
//! language (locals, `if`, `for` over arrays, arithmetic and
//! comparisons, the customer's and candidate's properties, arrays and maps,
//! `in`, `min`, `max`, `abs`, `len`, `days_since`), so each hook is lowered
//! once at load into [`S`] and [`E`] nodes over resolved local slots and
//! schema slots, and run by [`Hook::run`] on plain values borrowing the
//! rule version's and the context's strings.
//!
//! Lowering never changes what a hook means:
//! - A hook using anything outside that subset is not lowered at all, and
//!   rhai runs it as before ([`Lowered::why`] says which construct).
//! - A lowered hook runs only the success path of each operation. Whatever
//!   would make rhai raise an error or behave in a way the subset does not
//!   model (integer overflow, division by zero, a comparison of arrays, a
//!   property a type lacks, a string operation that builds a new string,
//!   an array or map near its size limit, more than an eighth of the
//!   operations budget) makes the run [`Bail`], and the caller runs that
//!   call in rhai from the start: hooks have no side effects, so the result,
//!   error and diagnostic are rhai's own.
//!
//! `tests/strategy_lowered.rs` holds both paths to the same results on
//! random scripts and on the rule sets' strategies.

use std::cell::Cell;

use rhai::{ASTFlags, Dynamic, Expr, ImmutableString, Stmt, AST};

use super::Limits;
use crate::context::schema::Schema;
use crate::context::{Context, Slot};
use crate::ruleset::RuleSet;

/// This call must run in rhai instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bail;

type R<T> = Result<T, Bail>;

/// The hooks of a script, each lowered or not.
pub(crate) struct Lowered {
    pub derive: Option<Hook>,
    pub adjust: Option<Hook>,
    pub select: Option<Hook>,
    /// For each hook (derive, adjust, select) that the script defines but
    /// that was not lowered: the construct that kept it in rhai.
    pub why: [Option<String>; 3],
}

/// One lowered hook.
pub(crate) struct Hook {
    body: Vec<S>,
    /// Local slots: the parameters first.
    slots: usize,
    limits: Limits,
    /// Expressions that depend only on a candidate's id, group and issue
    /// (and constants), folded out of the body as [`E::PerAction`]: each is
    /// evaluated once per action of the version, on first use.
    statics: Vec<E>,
    tables: std::sync::OnceLock<Vec<Box<[Option<Folded>]>>>,
    /// `adjust` only: for each action of the version, whether a call
    /// leaves its candidate as it is (see [`Run::unchanged`]).
    unchanged: std::sync::OnceLock<Box<[bool]>>,
}

/// How `adjust`'s body ends when it does nothing for one action (see
/// [`Run::unchanged`]): `Some(true)` when it ended by `return`, `None`
/// when it may do something. Its value is the candidate or `()`.
/// A call that would run past `budget` operations (the lowered run's
/// share of rhai's) is not inert: it hands back to rhai, which may fail it.
fn inert(body: &[S], tables: &[Box<[Option<Folded>]>], action: usize, budget: u64) -> Option<bool> {
    let mut walk = Inert {
        tables,
        action,
        known: Vec::new(),
        ops: 0,
    };
    let returned = walk.block(body)?;
    (walk.ops <= budget).then_some(returned)
}

/// The walk of [`inert`]: only statements that run are looked at, so a
/// local set by a `let` of a folded condition keeps its value (no
/// statement that could write it is accepted).
struct Inert<'t> {
    tables: &'t [Box<[Option<Folded>]>],
    action: usize,
    /// Locals holding a folded condition's value for the action.
    known: Vec<(u16, bool)>,
    /// At least the operations the lowered run would count on the path
    /// walked (a statement 1, a folded expression its weight, any other
    /// node 1).
    ops: u64,
}

impl Inert<'_> {
    /// The candidate is local 1; nothing accepted here writes it.
    const CAND: u16 = 1;

    fn block(&mut self, body: &[S]) -> Option<bool> {
        const CAND: u16 = Inert::CAND;
        for s in body {
            self.ops += 1;
            match s {
                S::Expr(E::Local(CAND) | E::Take(CAND) | E::Unit) => {}
                S::Return(None | Some(E::Local(CAND) | E::Take(CAND) | E::Unit)) => {
                    return Some(true)
                }
                S::Let(slot, e) => {
                    let v = self.truth(e)?;
                    self.known.push((*slot, v));
                }
                S::Block(b) => {
                    if self.block(b)? {
                        return Some(true);
                    }
                }
                S::If(cond, then, otherwise) => {
                    let taken = if self.truth(cond)? { then } else { otherwise };
                    if self.block(taken)? {
                        return Some(true);
                    }
                }
                _ => return None,
            }
        }
        Some(false)
    }

    /// A condition's value for the action, when it is known without
    /// evaluating anything that could fail: a folded condition, a local
    /// holding one, or `&&` / `||` decided by such operands before any
    /// other is reached.
    fn truth(&mut self, e: &E) -> Option<bool> {
        self.ops += match e {
            E::PerAction(_, _, weight) => *weight,
            _ => 1,
        };
        match e {
            E::PerAction(Inert::CAND, i, _) => match self.tables.get(*i)?.get(self.action)? {
                Some(Folded::Bool(b)) => Some(*b),
                _ => None,
            },
            E::Local(slot) | E::Take(slot) => self
                .known
                .iter()
                .rev()
                .find(|(s, _)| s == slot)
                .map(|&(_, v)| v),
            E::Bool(b) => Some(*b),
            E::And(xs) | E::Or(xs) => {
                let decides = matches!(e, E::Or(_));
                for x in xs {
                    if self.truth(x)? == decides {
                        return Some(decides);
                    }
                }
                Some(!decides)
            }
            _ => None,
        }
    }
}

/// A folded expression's value for one action (`None`: it hands the call
/// back to rhai).
#[derive(Debug, Clone, Copy)]
enum Folded {
    Bool(bool),
    Int(i64),
    Float(f64),
}

/// A constant.
#[derive(Debug, Clone)]
enum Lit {
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Arr(Vec<Lit>),
    Map(Vec<(Box<str>, Lit)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// An expression.
#[derive(Debug)]
enum E {
    /// An array or map constant.
    Lit(Lit),
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Local(u16),
    /// `local.NAME`.
    LocalProp(u16, Prop),
    /// Static expression number `.1` of the candidate in local `.0`, read
    /// from its action's table; `.2` is what evaluating it costs in
    /// operations (its nodes, a property read as 3).
    PerAction(u16, usize, u64),
    /// `customer.NAME` for an attribute of the schema.
    Attr(u16),
    /// `x.NAME` on a candidate, map, array, string or customer.
    Prop(Box<E>, Prop),
    /// A local read for the last time (`return x`): moved, not copied.
    Take(u16),
    Len(Box<E>),
    /// `len(customer.NAME)`: a set's size counted without building its
    /// array (a string's length in characters).
    AttrLen(u16),
    Bin(Bin, Box<(E, E)>),
    Neg(Box<E>),
    Not(Box<E>),
    And(Vec<E>),
    Or(Vec<E>),
    Coalesce(Vec<E>),
    Min(Box<(E, E)>),
    Max(Box<(E, E)>),
    Abs(Box<E>),
    /// `days_since(t)` (86,400) or `hours_since(t)` (3,600).
    Since(Box<E>, i64),
    /// `needle in haystack`: (haystack, needle).
    Contains(Box<(E, E)>),
    Index(Box<(E, E)>),
    Array(Vec<E>),
    Map(Vec<(Box<str>, E)>),
}

/// A statement.
#[derive(Debug)]
enum S {
    Let(u16, E),
    Set(Place, Option<Bin>, E),
    /// `local.push(x)`.
    Push(u16, E),
    /// `local.exclude(reason)`.
    Exclude(u16, E),
    Expr(E),
    If(E, Vec<S>, Vec<S>),
    For {
        var: u16,
        counter: Option<u16>,
        iter: E,
        /// The array is a local the body never writes: it is read in
        /// place, an element at a time, instead of copied.
        in_place: Option<u16>,
        body: Vec<S>,
    },
    Break,
    Continue,
    Return(Option<E>),
    Block(Vec<S>),
}

/// A property name, resolved when the hook is lowered.
#[derive(Debug)]
struct Prop {
    name: Box<str>,
    /// What the name means on a candidate.
    cand: CandProp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandProp {
    Id,
    Group,
    Issue,
    Priority,
    Excluded,
    /// P, C, V or L (index into [`Cand::s`]).
    Score(usize),
    None,
}

impl Prop {
    fn new(name: &str) -> Prop {
        let cand = match name {
            "id" | "action" => CandProp::Id,
            "group" => CandProp::Group,
            "issue" => CandProp::Issue,
            "priority" => CandProp::Priority,
            "excluded" => CandProp::Excluded,
            n => score_index(n).map_or(CandProp::None, CandProp::Score),
        };
        Prop {
            name: name.into(),
            cand,
        }
    }
}

#[derive(Debug)]
enum Place {
    Local(u16),
    Prop(u16, Prop),
    Index(u16, E),
}

// ---------------------------------------------------------------------------
// Lowering

/// Names the lowered code implements; a script that defines a function
/// under one of them would change what the name means, so nothing is
/// lowered.
const BUILTINS: &[&str] = &[
    "min",
    "max",
    "abs",
    "len",
    "contains",
    "days_since",
    "hours_since",
    "push",
    "exclude",
];

/// The candidate's properties and which score each sets (index into
/// [`Cand::s`]).
fn score_index(name: &str) -> Option<usize> {
    match name {
        "propensity" => Some(0),
        "context_weight" => Some(1),
        "value" => Some(2),
        "lever" => Some(3),
        _ => None,
    }
}

struct Lower<'s> {
    schema: &'s Schema,
    /// Visible locals, innermost last: name, slot, read-only.
    scope: Vec<(ImmutableString, u16, bool)>,
    next: u16,
    max: u16,
}

type L<T> = Result<T, String>;

fn unsupported<T>(what: impl std::fmt::Display, pos: rhai::Position) -> L<T> {
    Err(match pos.line() {
        Some(l) => format!("{what} (line {l})"),
        None => what.to_string(),
    })
}

impl Lowered {
    /// Lower the hooks of `ast`, compiled by `engine` from `text`.
    pub(crate) fn new(
        engine: &rhai::Engine,
        text: &str,
        ast: &AST,
        schema: &Schema,
        limits: &Limits,
    ) -> Lowered {
        let mut out = Lowered {
            derive: None,
            adjust: None,
            select: None,
            why: [None, None, None],
        };
        let shadowed = ast
            .iter_fn_def()
            .find(|f| BUILTINS.contains(&f.name.as_str()));
        for f in ast.iter_fn_def() {
            let i = match f.name.as_str() {
                "derive" if f.params.len() == 1 => 0,
                "adjust" if f.params.len() == 2 => 1,
                "select" if f.params.len() == 2 => 2,
                _ => continue,
            };
            let lowered = match shadowed {
                Some(s) => Err(format!("the script defines its own `{}`", s.name)),
                None => body(engine, text, f.body.start_position(), f.body.end_position())
                    .and_then(|stmts| Hook::lower(&f.params, &stmts, schema, limits, i)),
            };
            match lowered {
                Ok(h) => match i {
                    0 => out.derive = Some(h),
                    1 => out.adjust = Some(h),
                    _ => out.select = Some(h),
                },
                Err(why) => out.why[i] = Some(why),
            }
        }
        out
    }
}

/// The statements of a function's body. rhai does not expose a function's
/// body to other crates, so the body's text (from its `{` to its `}`,
/// everything else blanked so that lines and columns stay the same) is
/// compiled again as a script of its own: a block statement.
fn body(
    engine: &rhai::Engine,
    text: &str,
    start: rhai::Position,
    end: rhai::Position,
) -> L<Vec<Stmt>> {
    let (Some(sl), Some(sc), Some(el), Some(ec)) =
        (start.line(), start.position(), end.line(), end.position())
    else {
        return Err("the body's position is unknown".into());
    };
    let mut blanked = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        let l = i + 1;
        if i > 0 {
            blanked.push('\n');
        }
        for (j, ch) in line.chars().enumerate() {
            let c = j + 1;
            let inside = (l, c) >= (sl, sc) && (l, c) <= (el, ec);
            blanked.push(if inside { ch } else { ' ' });
        }
    }
    let ast = engine
        .compile(&blanked)
        .map_err(|e| format!("the body does not compile alone: {e}"))?;
    let stmts = ast.statements();
    Ok(match stmts {
        [Stmt::Block(b)] => b.statements().to_vec(),
        other => other.to_vec(),
    })
}

impl Hook {
    fn lower(
        params: &[ImmutableString],
        stmts: &[Stmt],
        schema: &Schema,
        limits: &Limits,
        hook: usize,
    ) -> L<Hook> {
        let mut l = Lower {
            schema,
            scope: Vec::new(),
            next: 0,
            max: 0,
        };
        // The customer (always the first parameter) is read-only; the
        // candidate and the ranked list may be changed like any local.
        for (i, p) in params.iter().enumerate() {
            l.declare(p.clone(), i == 0);
        }
        let mut body = l.block(stmts)?;
        // rhai limits the variables in scope (1,024, set on the engine).
        if l.max > 256 {
            return Err("more than 256 variables in scope at once".into());
        }
        // The hook's value is read for the last time: move it out.
        if let Some(S::Expr(e)) = body.last_mut() {
            let last = std::mem::replace(e, E::Unit);
            *e = take(last);
        }
        let mut statics = Vec::new();
        let only = |slot: u16, body: &[S]| !body.iter().any(|s| replaces(s, slot));
        if params.len() == 2 && only(1, &body) {
            if hook == 1 {
                // adjust: the candidate parameter stays a candidate.
                fold_block(&mut body, 1, &mut statics);
            } else if hook == 2 && !body.iter().any(|s| writes(s, 1)) {
                // select: loops over the ranked list (never changed) give
                // candidates, in a loop variable its body never replaces.
                fold_loops(&mut body, &mut statics);
            }
        }
        Ok(Hook {
            body,
            slots: l.max as usize,
            limits: limits.clone(),
            statics,
            tables: std::sync::OnceLock::new(),
            unchanged: std::sync::OnceLock::new(),
        })
    }
}

impl Lower<'_> {
    fn declare(&mut self, name: ImmutableString, read_only: bool) -> u16 {
        let slot = self.next;
        self.next = self.next.saturating_add(1);
        self.max = self.max.max(self.next);
        self.scope.push((name, slot, read_only));
        slot
    }

    fn find(&self, name: &str) -> Option<(u16, bool)> {
        self.scope
            .iter()
            .rev()
            .find(|(n, ..)| n.as_str() == name)
            .map(|&(_, s, ro)| (s, ro))
    }

    /// A statement block with its own scope.
    fn block(&mut self, stmts: &[Stmt]) -> L<Vec<S>> {
        let (depth, next) = (self.scope.len(), self.next);
        let out = stmts.iter().map(|s| self.stmt(s)).collect();
        self.scope.truncate(depth);
        self.next = next;
        out
    }

    fn writable(&self, name: &str, pos: rhai::Position) -> L<u16> {
        match self.find(name) {
            Some((s, false)) => Ok(s),
            Some((_, true)) => unsupported(format!("assignment to `{name}`"), pos),
            None => unsupported(format!("unknown variable `{name}`"), pos),
        }
    }

    fn stmt(&mut self, s: &Stmt) -> L<S> {
        Ok(match s {
            Stmt::Noop(..) => S::Block(Vec::new()),
            Stmt::Var(x, flags, _) => {
                let (ident, expr, _) = &**x;
                let e = self.expr(expr)?;
                let slot = self.declare(ident.name.clone(), flags.contains(ASTFlags::CONSTANT));
                S::Let(slot, e)
            }
            Stmt::Assignment(x) => {
                let (op, bin) = &**x;
                let op = match op.get_op_assignment_info() {
                    None => None,
                    Some((.., syntax)) => {
                        Some(bin_op(syntax).filter(|b| !is_comparison(*b)).map_or_else(
                            || unsupported(format!("`{syntax}=`"), op.position()),
                            Ok,
                        )?)
                    }
                };
                let rhs = self.expr(&bin.rhs)?;
                let place = self.place(&bin.lhs)?;
                S::Set(place, op, rhs)
            }
            Stmt::If(x, _) => {
                let cond = self.expr(&x.expr)?;
                S::If(
                    cond,
                    self.block(x.body.statements())?,
                    self.block(x.branch.statements())?,
                )
            }
            Stmt::For(x, _) => {
                let (var, counter, flow) = &**x;
                // Arrays only: the sandbox has no range iterators.
                let iter = self.expr(&flow.expr)?;
                let (depth, next) = (self.scope.len(), self.next);
                let counter = counter
                    .as_ref()
                    .map(|c| self.declare(c.name.clone(), false));
                let var = self.declare(var.name.clone(), false);
                let body = self.block(flow.body.statements());
                self.scope.truncate(depth);
                self.next = next;
                let body = body?;
                let in_place = match iter {
                    E::Local(slot) if !body.iter().any(|s| writes(s, slot)) => Some(slot),
                    _ => None,
                };
                S::For {
                    var,
                    counter,
                    iter,
                    in_place,
                    body,
                }
            }
            Stmt::BreakLoop(None, flags, _) => {
                if flags.contains(ASTFlags::BREAK) {
                    S::Break
                } else {
                    S::Continue
                }
            }
            Stmt::Return(e, flags, pos) => {
                if flags.contains(ASTFlags::BREAK) {
                    return unsupported("`throw`", *pos);
                }
                S::Return(match e {
                    Some(e) => Some(take(self.expr(e)?)),
                    None => None,
                })
            }
            Stmt::Block(b) => S::Block(self.block(b.statements())?),
            Stmt::Expr(e) => self.expr_stmt(e)?,
            Stmt::FnCall(f, pos) => self.expr_stmt(&Expr::FnCall(f.clone(), *pos))?,
            other => return unsupported(stmt_name(other), other.position()),
        })
    }

    /// An expression statement: a mutating method call on a local, or any
    /// expression.
    fn expr_stmt(&mut self, e: &Expr) -> L<S> {
        if let Expr::Dot(x, _, pos) = e {
            if let (Expr::Variable(v, ..), Expr::MethodCall(m, _)) = (&x.lhs, &x.rhs) {
                let name = m.name.as_str();
                if matches!(name, "push" | "exclude") {
                    if m.args.len() != 1 {
                        return unsupported(
                            format!("`{name}` with {} arguments", m.args.len()),
                            *pos,
                        );
                    }
                    let slot = self.writable(v.1.as_str(), *pos)?;
                    let arg = self.expr(&m.args[0])?;
                    return Ok(if name == "push" {
                        S::Push(slot, arg)
                    } else {
                        S::Exclude(slot, arg)
                    });
                }
            }
        }
        Ok(S::Expr(self.expr(e)?))
    }

    fn place(&mut self, lhs: &Expr) -> L<Place> {
        match lhs {
            Expr::Variable(v, _, pos) => Ok(Place::Local(self.writable(v.1.as_str(), *pos)?)),
            Expr::Dot(x, _, pos) => match (&x.lhs, &x.rhs) {
                (Expr::Variable(v, ..), Expr::Property(p, _)) => {
                    let slot = self.writable(v.1.as_str(), *pos)?;
                    Ok(Place::Prop(slot, Prop::new(p.2.as_str())))
                }
                _ => unsupported("assignment to a nested property", *pos),
            },
            Expr::Index(x, flags, pos) if *flags != ASTFlags::BREAK => {
                unsupported("an index chain or `?[`", *pos)
            }
            Expr::Index(x, _, pos) => match &x.lhs {
                Expr::Variable(v, ..) => {
                    let slot = self.writable(v.1.as_str(), *pos)?;
                    Ok(Place::Index(slot, self.expr(&x.rhs)?))
                }
                _ => unsupported("assignment to a nested index", *pos),
            },
            other => unsupported("this assignment", other.position()),
        }
    }

    fn exprs(&mut self, es: &[Expr]) -> L<Vec<E>> {
        es.iter().map(|e| self.expr(e)).collect()
    }

    fn expr(&mut self, e: &Expr) -> L<E> {
        Ok(match e {
            Expr::DynamicConstant(d, pos) => constant(lit(d).map_or_else(
                || unsupported(format!("a constant of type {}", d.type_name()), *pos),
                Ok,
            )?),
            Expr::BoolConstant(b, _) => E::Bool(*b),
            Expr::IntegerConstant(i, _) => E::Int(*i),
            Expr::FloatConstant(f, _) => E::Float(**f),
            Expr::StringConstant(s, _) => E::Str(s.as_str().into()),
            Expr::Unit(_) => E::Unit,
            Expr::Array(items, _) => E::Array(self.exprs(items)?),
            Expr::Map(x, _) => E::Map(
                x.0.iter()
                    .map(|(k, v)| Ok((k.name.as_str().into(), self.expr(v)?)))
                    .collect::<L<_>>()?,
            ),
            Expr::Variable(v, _, pos) => match self.find(v.1.as_str()) {
                Some((slot, _)) => E::Local(slot),
                None => return unsupported(format!("unknown variable `{}`", v.1), *pos),
            },
            Expr::Dot(_, flags, pos) if flags.contains(ASTFlags::NEGATED) => {
                return unsupported("`?.`", *pos)
            }
            Expr::Dot(x, _, _) => {
                let base = self.expr(&x.lhs)?;
                self.chain(base, &x.rhs)?
            }
            // rhai right-binds what follows an index (`a[i].m()` is
            // `Index(a, Dot(i, m()))`, evaluated as `(a[i]).m()`): only a
            // plain index that ends its chain is lowered.
            Expr::Index(_, flags, pos) if *flags != ASTFlags::BREAK => {
                return unsupported("an index chain or `?[`", *pos)
            }
            Expr::Index(x, _, _) => E::Index(Box::new((self.expr(&x.lhs)?, self.expr(&x.rhs)?))),
            Expr::And(x, _) => E::And(self.exprs(x)?),
            Expr::Or(x, _) => E::Or(self.exprs(x)?),
            Expr::Coalesce(x, _) => E::Coalesce(self.exprs(x)?),
            Expr::FnCall(f, pos) => {
                let mut args = self.exprs(&f.args)?;
                let name = f.name.as_str();
                let two = |args: &mut Vec<E>| {
                    let b = args.pop().unwrap_or(E::Unit);
                    let a = args.pop().unwrap_or(E::Unit);
                    Box::new((a, b))
                };
                match (name, args.len()) {
                    ("-", 1) => E::Neg(Box::new(args.remove(0))),
                    ("!", 1) => E::Not(Box::new(args.remove(0))),
                    ("abs", 1) => E::Abs(Box::new(args.remove(0))),
                    ("len", 1) => len(args.remove(0)),
                    ("days_since", 1) => E::Since(Box::new(args.remove(0)), 86_400),
                    ("hours_since", 1) => E::Since(Box::new(args.remove(0)), 3_600),
                    ("min", 2) => E::Min(two(&mut args)),
                    ("max", 2) => E::Max(two(&mut args)),
                    ("contains", 2) => E::Contains(two(&mut args)),
                    (op, 2) if bin_op(op).is_some() => {
                        E::Bin(bin_op(op).unwrap_or(Bin::Add), two(&mut args))
                    }
                    _ => return unsupported(format!("function `{name}`"), *pos),
                }
            }
            other => return unsupported(expr_name(other), other.position()),
        })
    }

    /// The right side of a `.` chain (`a.b.c()` is `a . (b . c())`).
    fn chain(&mut self, base: E, rhs: &Expr) -> L<E> {
        match rhs {
            Expr::Property(p, _) => Ok(self.prop(base, p.2.as_str())),
            Expr::MethodCall(m, pos) => self.method(base, m, *pos),
            Expr::Dot(_, flags, pos) if flags.contains(ASTFlags::NEGATED) => {
                unsupported("`?.`", *pos)
            }
            Expr::Dot(x, _, _) => {
                let inner = self.chain(base, &x.lhs)?;
                self.chain(inner, &x.rhs)
            }
            other => unsupported(
                format!("{} in a property chain", expr_name(other)),
                other.position(),
            ),
        }
    }

    fn prop(&self, base: E, name: &str) -> E {
        // Slot 0 is the customer parameter: read-only, and never reused
        // (slots are reused only when a scope ends, and the parameters'
        // never does), so its attributes resolve to schema slots now.
        if let (E::Local(0), Some(slot)) = (&base, self.schema.slot(name)) {
            return E::Attr(slot);
        }
        match base {
            E::Local(slot) => E::LocalProp(slot, Prop::new(name)),
            base => E::Prop(Box::new(base), Prop::new(name)),
        }
    }

    fn method(&mut self, base: E, m: &rhai::FnCallExpr, pos: rhai::Position) -> L<E> {
        let mut args = self.exprs(&m.args)?;
        Ok(match (m.name.as_str(), args.len()) {
            ("len", 0) => len(base),
            ("contains", 1) => E::Contains(Box::new((base, args.remove(0)))),
            ("abs", 0) => E::Abs(Box::new(base)),
            ("min", 1) => E::Min(Box::new((base, args.remove(0)))),
            ("max", 1) => E::Max(Box::new((base, args.remove(0)))),
            (name, n) => return unsupported(format!("method `{name}` with {n} argument(s)"), pos),
        })
    }
}

/// `len(x)`.
fn len(x: E) -> E {
    match x {
        E::Attr(slot) => E::AttrLen(slot),
        x => E::Len(Box::new(x)),
    }
}

/// Whether `s` may change local `slot` (or move it out).
fn writes(s: &S, slot: u16) -> bool {
    let any = |b: &[S]| b.iter().any(|s| writes(s, slot));
    match s {
        S::Set(Place::Local(x) | Place::Prop(x, _) | Place::Index(x, _), ..)
        | S::Push(x, _)
        | S::Exclude(x, _) => *x == slot || takes(s, slot),
        S::If(_, a, b) => any(a) || any(b) || takes(s, slot),
        S::For { body, .. } => any(body) || takes(s, slot),
        S::Block(b) => any(b),
        S::Let(..) | S::Expr(_) | S::Return(_) | S::Break | S::Continue => takes(s, slot),
    }
}

/// Whether a statement's own expressions move `slot` out (`return x`).
fn takes(s: &S, slot: u16) -> bool {
    matches!(s, S::Return(Some(E::Take(x))) | S::Expr(E::Take(x)) if *x == slot)
}

/// Whether `s` may give local `slot` a new value (not just change one of
/// its properties).
fn replaces(s: &S, slot: u16) -> bool {
    let any = |b: &[S]| b.iter().any(|s| replaces(s, slot));
    match s {
        S::Set(Place::Local(x), ..) | S::Let(x, _) => *x == slot,
        S::For {
            var, counter, body, ..
        } => *var == slot || *counter == Some(slot) || any(body),
        S::If(_, a, b) => any(a) || any(b),
        S::Block(b) => any(b),
        _ => false,
    }
}

/// Fold the candidate-static expressions of local `slot` in `body`.
fn fold_block(body: &mut [S], slot: u16, statics: &mut Vec<E>) {
    for s in body {
        match s {
            S::Let(_, e) | S::Set(_, _, e) | S::Push(_, e) | S::Exclude(_, e) | S::Expr(e) => {
                fold(e, slot, statics)
            }
            S::Return(Some(e)) => fold(e, slot, statics),
            S::If(c, a, b) => {
                fold(c, slot, statics);
                fold_block(a, slot, statics);
                fold_block(b, slot, statics);
            }
            S::For { iter, body, .. } => {
                fold(iter, slot, statics);
                fold_block(body, slot, statics);
            }
            S::Block(b) => fold_block(b, slot, statics),
            S::Return(None) | S::Break | S::Continue => {}
        }
    }
}

/// In `select`: fold in the bodies of `for c in ranked` loops.
fn fold_loops(body: &mut [S], statics: &mut Vec<E>) {
    for s in body {
        match s {
            S::For {
                var,
                in_place: Some(1),
                body,
                ..
            } if !body.iter().any(|s| replaces(s, *var)) => {
                let var = *var;
                fold_block(body, var, statics);
                fold_loops(body, statics);
            }
            S::For { body, .. } | S::Block(body) => fold_loops(body, statics),
            S::If(_, a, b) => {
                fold_loops(a, statics);
                fold_loops(b, statics);
            }
            _ => {}
        }
    }
}

/// Whether `e` depends only on constants and the id, group and issue of
/// the candidate in `slot`; and whether it reads the candidate at all.
fn is_static(e: &E, slot: u16) -> Option<bool> {
    let all = |es: &[&E]| {
        es.iter()
            .map(|e| is_static(e, slot))
            .try_fold(false, |acc, r| r.map(|r| acc || r))
    };
    match e {
        E::Unit | E::Bool(_) | E::Int(_) | E::Float(_) | E::Str(_) | E::Lit(_) => Some(false),
        E::LocalProp(s, p)
            if *s == slot && matches!(p.cand, CandProp::Id | CandProp::Group | CandProp::Issue) =>
        {
            Some(true)
        }
        E::Bin(_, x) | E::Contains(x) | E::Min(x) | E::Max(x) => all(&[&x.0, &x.1]),
        E::Not(x) | E::Neg(x) | E::Abs(x) | E::Len(x) => all(&[x]),
        E::And(xs) | E::Or(xs) | E::Coalesce(xs) => all(&xs.iter().collect::<Vec<_>>()),
        _ => None,
    }
}

/// Replace the largest candidate-static subexpressions of `e` (those that
/// read the candidate and are more than one property) by table reads.
fn fold(e: &mut E, slot: u16, statics: &mut Vec<E>) {
    if !matches!(e, E::LocalProp(..)) && is_static(e, slot) == Some(true) {
        let static_e = std::mem::replace(e, E::Unit);
        let weight = nodes(&static_e);
        statics.push(static_e);
        *e = E::PerAction(slot, statics.len() - 1, weight);
        return;
    }
    match e {
        E::Prop(x, _) | E::Len(x) | E::Neg(x) | E::Not(x) | E::Abs(x) | E::Since(x, _) => {
            fold(x, slot, statics)
        }
        E::Bin(_, x) | E::Min(x) | E::Max(x) | E::Contains(x) | E::Index(x) => {
            fold(&mut x.0, slot, statics);
            fold(&mut x.1, slot, statics);
        }
        E::And(xs) | E::Or(xs) | E::Coalesce(xs) | E::Array(xs) => {
            xs.iter_mut().for_each(|x| fold(x, slot, statics))
        }
        E::Map(xs) => xs.iter_mut().for_each(|(_, x)| fold(x, slot, statics)),
        _ => {}
    }
}

/// The operations a folded expression stands for: one per node, three per
/// property read.
fn nodes(e: &E) -> u64 {
    match e {
        E::LocalProp(..) => 3,
        E::Bin(_, x) | E::Contains(x) | E::Min(x) | E::Max(x) => 1 + nodes(&x.0) + nodes(&x.1),
        E::Not(x) | E::Neg(x) | E::Abs(x) | E::Len(x) => 1 + nodes(x),
        E::AttrLen(_) => 2,
        E::And(xs) | E::Or(xs) | E::Coalesce(xs) => 1 + xs.iter().map(nodes).sum::<u64>(),
        _ => 1,
    }
}

/// A constant as an expression: scalars inline.
fn constant(l: Lit) -> E {
    match l {
        Lit::Unit => E::Unit,
        Lit::Bool(b) => E::Bool(b),
        Lit::Int(i) => E::Int(i),
        Lit::Float(f) => E::Float(f),
        Lit::Str(s) => E::Str(s),
        l => E::Lit(l),
    }
}

/// `x` read for the last time is moved out of its slot.
fn take(e: E) -> E {
    match e {
        E::Local(slot) => E::Take(slot),
        e => e,
    }
}

fn bin_op(op: &str) -> Option<Bin> {
    Some(match op {
        "+" => Bin::Add,
        "-" => Bin::Sub,
        "*" => Bin::Mul,
        "/" => Bin::Div,
        "%" => Bin::Rem,
        "**" => Bin::Pow,
        "==" => Bin::Eq,
        "!=" => Bin::Ne,
        "<" => Bin::Lt,
        "<=" => Bin::Le,
        ">" => Bin::Gt,
        ">=" => Bin::Ge,
        _ => return None,
    })
}

fn is_comparison(b: Bin) -> bool {
    matches!(b, Bin::Eq | Bin::Ne | Bin::Lt | Bin::Le | Bin::Gt | Bin::Ge)
}

fn lit(d: &Dynamic) -> Option<Lit> {
    if d.is_unit() {
        Some(Lit::Unit)
    } else if let Ok(b) = d.as_bool() {
        Some(Lit::Bool(b))
    } else if let Ok(i) = d.as_int() {
        Some(Lit::Int(i))
    } else if let Ok(f) = d.as_float() {
        Some(Lit::Float(f))
    } else if d.is_string() {
        Some(Lit::Str(
            d.clone().into_immutable_string().ok()?.as_str().into(),
        ))
    } else if d.is_array() {
        let a = d.read_lock::<rhai::Array>()?;
        Some(Lit::Arr(a.iter().map(lit).collect::<Option<_>>()?))
    } else if d.is_map() {
        let m = d.read_lock::<rhai::Map>()?;
        Some(Lit::Map(
            m.iter()
                .map(|(k, v)| Some((k.as_str().into(), lit(v)?)))
                .collect::<Option<_>>()?,
        ))
    } else {
        None
    }
}

fn stmt_name(s: &Stmt) -> &'static str {
    match s {
        Stmt::While(..) => "`while` or `loop`",
        Stmt::Do(..) => "`do`",
        Stmt::Switch(..) => "`switch`",
        Stmt::TryCatch(..) => "`try`",
        Stmt::BreakLoop(..) => "`break` with a value",
        _ => "this statement",
    }
}

fn expr_name(e: &Expr) -> &'static str {
    match e {
        Expr::CharConstant(..) => "a character",
        Expr::InterpolatedString(..) => "an interpolated string",
        Expr::Stmt(..) => "a statement block as an expression",
        Expr::ThisPtr(..) => "`this`",
        _ => "this expression",
    }
}

// ---------------------------------------------------------------------------
// Running

/// A candidate as lowered hooks see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand<'a> {
    pub action: u32,
    /// P, C, V and L.
    pub s: [f64; 4],
    pub excluded: Option<&'a str>,
}

/// A value. Candidates, arrays and maps live in the run's arenas and are
/// named by index, so a value is a plain copy. rhai's values are copied on
/// assignment; here a copy shares the arena entry, and a write to an
/// entry that may be shared copies it first ([`Run::own_arr`]).
// The tag a whole word, so that copying a value (every `?` on its
// `Result` does) is three word moves, not a copy of each byte a variant
// may use.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum V<'a> {
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Cand(u32),
    Arr(u32),
    Map(u32),
    Customer,
}

/// What lowered hooks read: the rule version (names) and the context.
pub(crate) struct Env<'a> {
    pub rules: &'a RuleSet,
    pub ctx: &'a Context,
    /// The decision time, epoch seconds.
    pub now: i64,
}

enum Flow<'a> {
    Normal(V<'a>),
    Break,
    Continue,
    Return(V<'a>),
}

/// An arena entry and whether another value may name it.
struct Entry<T> {
    items: T,
    shared: bool,
}

/// The state of a hook's runs in one decision.
pub(crate) struct Run<'a, 'e> {
    hook: &'a Hook,
    /// Where the buffers go back when the run ends.
    home: &'e mut Spare,
    env: &'e Env<'a>,
    locals: Vec<V<'a>>,
    cands: Vec<Cand<'a>>,
    arrs: Vec<Entry<Vec<V<'a>>>>,
    maps: Vec<Entry<Vec<(&'a str, V<'a>)>>>,
    /// Emptied arrays' and maps' buffers, for the next ones.
    spare_arrs: Vec<Vec<V<'a>>>,
    spare_maps: Vec<Vec<(&'a str, V<'a>)>>,
    ops: u64,
    max_ops: u64,
    limits: &'a Limits,
    /// The longest string read so far (bounds arrays' string totals).
    longest: Cell<usize>,
}

/// At most this many spare array (and map) buffers are kept, each of at
/// most this capacity: a hostile script's huge arrays are freed.
const SPARE_BUFFERS: usize = 16;
const SPARE_CAPACITY: usize = 1024;

/// The buffers a finished run leaves for the next run of the same caller
/// (a decision's three hooks, then the next decision's), emptied and with
/// their lifetimes erased ([`relife`]). The caller owns them (see
/// `HookScratch`).
#[derive(Default)]
pub(crate) struct Spare {
    locals: Vec<V<'static>>,
    cands: Vec<Cand<'static>>,
    arrs: Vec<Entry<Vec<V<'static>>>>,
    maps: Vec<Entry<Vec<(&'static str, V<'static>)>>>,
    arrs_items: Vec<Vec<V<'static>>>,
    maps_items: Vec<Vec<(&'static str, V<'static>)>>,
}

/// `v` emptied, as a vector of `U`: the same type under other lifetimes,
/// so its allocation is kept (collecting a vector's own iterator into a
/// vector of a type with the same layout reuses the allocation).
fn relife<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// `v`, emptied, among `spares` (unless there are enough, or it is large).
fn give_back<T>(spares: &mut Vec<Vec<T>>, mut v: Vec<T>) {
    if spares.len() < SPARE_BUFFERS && v.capacity() <= SPARE_CAPACITY {
        v.clear();
        spares.push(v);
    }
}

/// An empty buffer with room for `capacity`, a spare when there is one.
fn take_spare<T>(spares: &mut Vec<Vec<T>>, capacity: usize) -> Vec<T> {
    match spares.pop() {
        Some(mut v) => {
            v.reserve(capacity);
            v
        }
        None => Vec::with_capacity(capacity),
    }
}

/// `v`'s buffer for [`Spare`], unless a run grew it past
/// [`SPARE_CAPACITY`] (a script that used a lot once does not keep it).
fn kept<T, U>(v: &mut Vec<T>) -> Vec<U> {
    if v.capacity() <= SPARE_CAPACITY {
        relife(std::mem::take(v))
    } else {
        Vec::new()
    }
}

impl Drop for Run<'_, '_> {
    fn drop(&mut self) {
        self.recycle();
        let spare = Spare {
            locals: kept(&mut self.locals),
            cands: kept(&mut self.cands),
            arrs: kept(&mut self.arrs),
            maps: kept(&mut self.maps),
            arrs_items: std::mem::take(&mut self.spare_arrs)
                .into_iter()
                .map(relife)
                .collect(),
            maps_items: std::mem::take(&mut self.spare_maps)
                .into_iter()
                .map(relife)
                .collect(),
        };
        *self.home = spare;
    }
}

impl Hook {
    /// A runner for calling the hook in one decision (its locals and
    /// arenas are allocated once).
    pub(crate) fn runner<'a, 'e>(&'a self, env: &'e Env<'a>, home: &'e mut Spare) -> Run<'a, 'e> {
        let spare = std::mem::take(home);
        Run {
            hook: self,
            home,
            env,
            locals: relife(spare.locals),
            cands: relife(spare.cands),
            arrs: relife(spare.arrs),
            maps: relife(spare.maps),
            spare_arrs: spare.arrs_items.into_iter().map(relife).collect(),
            spare_maps: spare.maps_items.into_iter().map(relife).collect(),
            ops: 0,
            // rhai counts a few operations per node (about 3 for a
            // property read): leave it every run that comes within 8x of
            // its budget.
            max_ops: self.limits.max_operations / 8,
            limits: &self.limits,
            longest: Cell::new(0),
        }
    }
}

impl<'a> Run<'a, '_> {
    /// Forget the previous call's values.
    fn reset(&mut self) {
        self.cands.clear();
        self.recycle();
        self.ops = 0;
        if self.locals.is_empty() {
            self.locals.resize(self.hook.slots.max(2), V::Unit);
        }
    }

    /// Empty the arenas, keeping the arrays' and maps' buffers (a few,
    /// none of them large) for the next values.
    fn recycle(&mut self) {
        self.arrs
            .drain(..)
            .for_each(|e| give_back(&mut self.spare_arrs, e.items));
        self.maps
            .drain(..)
            .for_each(|e| give_back(&mut self.spare_maps, e.items));
    }

    /// An empty array buffer, from the spares when there is one.
    fn arr_buf(&mut self, capacity: usize) -> Vec<V<'a>> {
        // Room to grow: `let out = [];` is pushed to in a loop.
        take_spare(&mut self.spare_arrs, capacity.max(8))
    }

    /// [`Run::arr_buf`] for a map.
    fn map_buf(&mut self, capacity: usize) -> Vec<(&'a str, V<'a>)> {
        take_spare(&mut self.spare_maps, capacity.max(4))
    }

    /// Run the hook with `args` as its parameters; the value it returns.
    /// Slots past the parameters are always written (`let`) before they
    /// are read: only the parameters are set.
    fn call(&mut self, args: [V<'a>; 2]) -> R<V<'a>> {
        let [a, b] = args;
        self.locals[0] = a;
        self.locals[1] = b;
        match self.block(&self.hook.body)? {
            Flow::Normal(v) | Flow::Return(v) => Ok(v),
            Flow::Break | Flow::Continue => Err(Bail),
        }
    }

    /// `derive(customer)`: the map it returns, as rhai's (`Ok(None)` for
    /// `()`).
    pub(crate) fn derive(&mut self) -> R<Option<rhai::Map>> {
        self.reset();
        match self.call([V::Customer, V::Unit])? {
            V::Unit => Ok(None),
            V::Map(h) => {
                let mut out = rhai::Map::new();
                for (k, v) in &self.maps[h as usize].items {
                    out.insert((*k).into(), self.to_dynamic(*v)?);
                }
                Ok(Some(out))
            }
            _ => Err(Bail),
        }
    }

    /// `adjust(customer, candidate)`: the candidate it returns (`None` for
    /// `()`).
    pub(crate) fn adjust(&mut self, c: Cand<'a>) -> R<Option<Cand<'a>>> {
        self.reset();
        self.cands.push(c);
        match self.call([V::Customer, V::Cand(0)])? {
            V::Unit => Ok(None),
            V::Cand(h) => Ok(Some(self.cands[h as usize])),
            _ => Err(Bail),
        }
    }

    /// `select(customer, ranked)`: the list it returns, each entry a
    /// candidate's action or an action id.
    pub(crate) fn select(&mut self, ranked: impl Iterator<Item = Cand<'a>>) -> R<Vec<super::Pick>> {
        use super::Pick;
        self.reset();
        self.cands.extend(ranked);
        let mut items = self.arr_buf(self.cands.len());
        items.extend((0..self.cands.len() as u32).map(V::Cand));
        let ranked = add(&mut self.arrs, items);
        let V::Arr(h) = self.call([V::Customer, V::Arr(ranked)])? else {
            return Err(Bail);
        };
        let list = &self.arrs[h as usize].items;
        let mut picks = Vec::with_capacity(list.len());
        for v in list {
            picks.push(match *v {
                V::Cand(c) => Pick::Action(self.cands[c as usize].action),
                V::Str(s) => Pick::Id(s.to_string()),
                _ => return Err(Bail),
            });
        }
        Ok(picks)
    }

    fn to_dynamic(&self, v: V<'a>) -> R<Dynamic> {
        Ok(match v {
            V::Unit => Dynamic::UNIT,
            V::Bool(b) => b.into(),
            V::Int(i) => i.into(),
            V::Float(f) => f.into(),
            V::Str(s) => s.into(),
            V::Arr(h) => Dynamic::from_array(
                self.arrs[h as usize]
                    .items
                    .iter()
                    .map(|v| self.to_dynamic(*v))
                    .collect::<R<_>>()?,
            ),
            V::Cand(_) | V::Map(_) | V::Customer => return Err(Bail),
        })
    }

    fn tick(&mut self) -> R<()> {
        self.ops += 1;
        if self.ops > self.max_ops {
            return Err(Bail);
        }
        Ok(())
    }

    fn new_arr(&mut self, items: Vec<V<'a>>) -> R<V<'a>> {
        self.check_items(items.iter(), self.limits.max_array_size)?;
        Ok(V::Arr(add(&mut self.arrs, items)))
    }

    fn new_map(&mut self, items: Vec<(&'a str, V<'a>)>) -> R<V<'a>> {
        self.check_items(items.iter().map(|(_, v)| v), self.limits.max_map_size)?;
        Ok(V::Map(add(&mut self.maps, items)))
    }

    /// The array in local `slot`, made its own (copied if another value
    /// may name it) so that it can be written.
    fn own_arr(&mut self, slot: u16) -> R<usize> {
        let V::Arr(h) = self.locals[slot as usize] else {
            return Err(Bail);
        };
        let h = own(&mut self.arrs, h);
        self.locals[slot as usize] = V::Arr(h);
        Ok(h as usize)
    }

    /// [`Run::own_arr`] for a map.
    fn own_map(&mut self, slot: u16) -> R<usize> {
        let V::Map(h) = self.locals[slot as usize] else {
            return Err(Bail);
        };
        let h = own(&mut self.maps, h);
        self.locals[slot as usize] = V::Map(h);
        Ok(h as usize)
    }

    /// The candidate in local `slot`, copied so that it can be written
    /// (candidates are small: every write copies).
    fn own_cand(&mut self, slot: u16) -> R<usize> {
        let V::Cand(h) = self.locals[slot as usize] else {
            return Err(Bail);
        };
        let c = self.cands[h as usize];
        self.cands.push(c);
        let h = self.cands.len() - 1;
        self.locals[slot as usize] = V::Cand(h as u32);
        Ok(h)
    }

    /// A value copied out of a local: arrays and maps become shared.
    fn read(&mut self, slot: u16) -> V<'a> {
        let v = self.locals[slot as usize];
        match v {
            V::Arr(h) => self.arrs[h as usize].shared = true,
            V::Map(h) => self.maps[h as usize].shared = true,
            _ => {}
        }
        v
    }

    fn block(&mut self, stmts: &'a [S]) -> R<Flow<'a>> {
        let mut last = V::Unit;
        for s in stmts {
            match self.stmt(s)? {
                Flow::Normal(v) => last = v,
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Normal(last))
    }

    /// A string a hook reads, unless it is longer than rhai allows.
    fn text(&self, s: &'a str) -> R<V<'a>> {
        if s.len() > self.limits.max_string_size {
            return Err(Bail);
        }
        self.longest.set(self.longest.get().max(s.len()));
        Ok(V::Str(s))
    }

    /// Arrays and maps hold only scalars, strings and candidates, within
    /// rhai's size limits (strings count toward the string limit).
    fn check_items<'v>(&self, items: impl Iterator<Item = &'v V<'a>>, limit: usize) -> R<()>
    where
        'a: 'v,
    {
        let (mut n, mut bytes) = (0usize, 0usize);
        for v in items {
            n += 1;
            match v {
                V::Str(s) => bytes += s.len(),
                V::Arr(_) | V::Map(_) | V::Customer => return Err(Bail),
                _ => {}
            }
        }
        if n > limit || bytes > self.limits.max_string_size {
            return Err(Bail);
        }
        Ok(())
    }

    /// Map `h`'s limits after `v` was set in it (`added`: under a new
    /// key). Every map is within them before a write, so only a string
    /// (more bytes) or a new key (one more entry) can take it past one.
    fn check_set_map(&self, h: usize, added: bool, v: V<'a>) -> R<()> {
        let m = &self.maps[h].items;
        if matches!(v, V::Str(_)) {
            self.check_items(m.iter().map(|(_, v)| v), self.limits.max_map_size)
        } else if added && m.len() > self.limits.max_map_size {
            Err(Bail)
        } else {
            Ok(())
        }
    }

    /// A value that may go into an array or map.
    fn element(v: V<'a>) -> R<V<'a>> {
        match v {
            V::Arr(_) | V::Map(_) | V::Customer => Err(Bail),
            v => Ok(v),
        }
    }

    fn stmt(&mut self, s: &'a S) -> R<Flow<'a>> {
        self.tick()?;
        match s {
            S::Let(slot, e) => {
                let v = self.expr(e)?;
                self.locals[*slot as usize] = v;
            }
            S::Set(place, op, e) => {
                let rhs = self.expr(e)?;
                self.set(place, *op, rhs)?;
            }
            S::Push(slot, e) => {
                let v = Self::element(self.expr(e)?)?;
                let h = self.own_arr(*slot)?;
                let max = self.limits.max_array_size;
                let a = &mut self.arrs[h].items;
                if a.len() >= max {
                    return Err(Bail);
                }
                a.push(v);
                // Scan for the strings' total only when it could be over
                // the limit.
                if matches!(v, V::Str(_))
                    && a.len().saturating_mul(self.longest.get()) > self.limits.max_string_size
                {
                    let a = &self.arrs[h].items;
                    self.check_items(a.iter(), max)?;
                }
            }
            S::Exclude(slot, e) => {
                let V::Str(reason) = self.expr(e)? else {
                    return Err(Bail);
                };
                let h = self.own_cand(*slot)?;
                self.cands[h].excluded = Some(reason);
            }
            S::Expr(e) => return Ok(Flow::Normal(self.expr(e)?)),
            S::If(cond, then, other) => {
                let branch = if self.bool(cond)? { then } else { other };
                if branch.is_empty() {
                    return Ok(Flow::Normal(V::Unit));
                }
                return self.block(branch);
            }
            S::For {
                var,
                counter,
                iter,
                in_place,
                body,
            } => {
                // An array nobody writes during the loop: a local the body
                // never writes, or a value marked shared (a write copies
                // it), or a new one the body cannot name.
                let h = match in_place {
                    Some(slot) => match self.locals[*slot as usize] {
                        V::Arr(h) => h as usize,
                        _ => return Err(Bail),
                    },
                    None => match self.expr(iter)? {
                        V::Arr(h) => h as usize,
                        _ => return Err(Bail),
                    },
                };
                let n = self.arrs[h].items.len();
                for i in 0..n {
                    self.tick()?;
                    if let Some(c) = counter {
                        self.locals[*c as usize] = V::Int(i as i64);
                    }
                    self.locals[*var as usize] = self.arrs[h].items[i];
                    match self.block(body)? {
                        Flow::Break => break,
                        Flow::Normal(_) | Flow::Continue => {}
                        ret @ Flow::Return(_) => return Ok(ret),
                    }
                }
            }
            S::Break => return Ok(Flow::Break),
            S::Continue => return Ok(Flow::Continue),
            S::Return(e) => {
                let v = match e {
                    Some(e) => self.expr(e)?,
                    None => V::Unit,
                };
                return Ok(Flow::Return(v));
            }
            S::Block(b) => return self.block(b),
        }
        Ok(Flow::Normal(V::Unit))
    }

    fn set(&mut self, place: &'a Place, op: Option<Bin>, rhs: V<'a>) -> R<()> {
        match place {
            Place::Local(slot) => {
                let v = match op {
                    Some(op) => {
                        let old = self.locals[*slot as usize];
                        self.arith(op, old, rhs)?
                    }
                    None => rhs,
                };
                self.locals[*slot as usize] = v;
            }
            Place::Prop(slot, name) => {
                let new = match op {
                    Some(op) => {
                        let old = self.prop(self.locals[*slot as usize], name)?;
                        self.arith(op, old, rhs)?
                    }
                    None => rhs,
                };
                match self.locals[*slot as usize] {
                    V::Cand(_) => {
                        let CandProp::Score(i) = name.cand else {
                            return Err(Bail);
                        };
                        let x = number(new)?;
                        let h = self.own_cand(*slot)?;
                        self.cands[h].s[i] = x;
                    }
                    V::Map(_) => {
                        let new = Self::element(new)?;
                        let h = self.own_map(*slot)?;
                        let added = map_set(&mut self.maps[h].items, &name.name, new);
                        self.check_set_map(h, added, new)?;
                    }
                    _ => return Err(Bail),
                }
            }
            Place::Index(slot, key) => {
                let key = self.expr(key)?;
                let new = match op {
                    Some(op) => {
                        let old = self.index(self.locals[*slot as usize], key)?;
                        self.arith(op, old, rhs)?
                    }
                    None => rhs,
                };
                let new = Self::element(new)?;
                match (self.locals[*slot as usize], key) {
                    (V::Map(_), V::Str(k)) => {
                        let h = self.own_map(*slot)?;
                        let added = map_set(&mut self.maps[h].items, k, new);
                        self.check_set_map(h, added, new)?;
                    }
                    (V::Arr(_), V::Int(i)) => {
                        let h = self.own_arr(*slot)?;
                        let a = &mut self.arrs[h].items;
                        let i = array_index(a.len(), i)?;
                        a[i] = new;
                        // Only a string can take the array past a limit
                        // (every array a hook builds is within them before
                        // a write; select's `ranked`, which it is given, is
                        // not checked by rhai either).
                        if matches!(new, V::Str(_)) {
                            let a = &self.arrs[h].items;
                            self.check_items(a.iter(), self.limits.max_array_size)?;
                        }
                    }
                    _ => return Err(Bail),
                }
            }
        }
        Ok(())
    }

    fn attr(&mut self, slot: u16) -> R<V<'a>> {
        let (raw, texts, items) = self.env.ctx.raw(slot);
        Ok(match *raw {
            Slot::Missing => V::Unit,
            Slot::Int(v) | Slot::Time(v) => V::Int(v),
            Slot::Float(v) => V::Float(v),
            Slot::Bool(v) => V::Bool(v),
            Slot::Str(_, t) => self.text(texts.get(t))?,
            Slot::Set(start, len, _) => {
                let mut v = self.arr_buf(len as usize);
                for &(_, t) in &items[start as usize..(start + len) as usize] {
                    v.push(self.text(texts.get(t))?);
                }
                self.new_arr(v)?
            }
        })
    }

    /// The size of the set in attribute `slot` (`None` if it holds no
    /// set), with the checks [`Run::attr`] makes building its array.
    fn set_len(&mut self, slot: u16) -> R<Option<usize>> {
        let (raw, texts, items) = self.env.ctx.raw(slot);
        let Slot::Set(start, len, _) = *raw else {
            return Ok(None);
        };
        let (mut bytes, mut longest) = (0usize, 0usize);
        for &(_, t) in &items[start as usize..(start + len) as usize] {
            let n = texts.get(t).len();
            bytes += n;
            longest = longest.max(n);
        }
        if longest > self.limits.max_string_size
            || len as usize > self.limits.max_array_size
            || bytes > self.limits.max_string_size
        {
            return Err(Bail);
        }
        self.longest.set(self.longest.get().max(longest));
        Ok(Some(len as usize))
    }

    fn prop(&mut self, base: V<'a>, p: &Prop) -> R<V<'a>> {
        Ok(match base {
            V::Cand(h) => {
                let c = &self.cands[h as usize];
                let rs = self.env.rules;
                match p.cand {
                    CandProp::Score(i) => V::Float(c.s[i]),
                    CandProp::Group => {
                        let a = &rs.actions[c.action as usize];
                        self.text(&rs.groups[a.group as usize].name)?
                    }
                    CandProp::Issue => {
                        let a = &rs.actions[c.action as usize];
                        self.text(&rs.issues[a.issue as usize].name)?
                    }
                    CandProp::Id => self.text(&rs.actions[c.action as usize].id)?,
                    CandProp::Priority => V::Float(c.s[0] * c.s[1] * c.s[2] * c.s[3]),
                    CandProp::Excluded => V::Bool(c.excluded.is_some()),
                    CandProp::None => return Err(Bail),
                }
            }
            V::Map(h) => self.maps[h as usize]
                .items
                .iter()
                .find(|(k, _)| str_eq(k, &p.name))
                .map_or(V::Unit, |(_, v)| *v),
            V::Arr(h) if &*p.name == "len" => V::Int(self.arrs[h as usize].items.len() as i64),
            V::Str(s) if &*p.name == "len" => V::Int(s.chars().count() as i64),
            V::Customer => self.attr(self.env.ctx.schema.slot(&p.name).ok_or(Bail)?)?,
            _ => return Err(Bail),
        })
    }

    fn index(&mut self, base: V<'a>, key: V<'a>) -> R<V<'a>> {
        Ok(match (base, key) {
            (V::Map(h), V::Str(k)) => self.maps[h as usize]
                .items
                .iter()
                .find(|(mk, _)| str_eq(mk, k))
                .map_or(V::Unit, |(_, v)| *v),
            (V::Arr(h), V::Int(i)) => {
                let a = &self.arrs[h as usize].items;
                a[array_index(a.len(), i)?]
            }
            (V::Customer, V::Str(k)) => match self.env.ctx.schema.slot(k) {
                Some(slot) => self.attr(slot)?,
                None => V::Unit,
            },
            _ => return Err(Bail),
        })
    }

    /// A condition's value: comparisons, `&&`, `||` and `!` straight to a
    /// `bool`, without building values for them (the same operations
    /// counted as [`Run::expr`] counts them).
    fn bool(&mut self, e: &'a E) -> R<bool> {
        match e {
            E::Bin(op, x) if is_comparison(*op) => {
                self.tick()?;
                let a = self.expr(&x.0)?;
                let b = self.expr(&x.1)?;
                compare(*op, &a, &b)
            }
            E::And(xs) => {
                self.tick()?;
                self.all(xs)
            }
            E::Or(xs) => {
                self.tick()?;
                self.any(xs)
            }
            E::Not(x) => {
                self.tick()?;
                Ok(!self.bool(x)?)
            }
            E::Contains(x) => {
                self.tick()?;
                self.contains(x)
            }
            e => match self.expr(e)? {
                V::Bool(b) => Ok(b),
                _ => Err(Bail),
            },
        }
    }

    /// `&&`: whether every one of `xs` holds, stopping at the first false.
    fn all(&mut self, xs: &'a [E]) -> R<bool> {
        for x in xs {
            if !self.bool(x)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `||`: whether any of `xs` holds, stopping at the first true.
    fn any(&mut self, xs: &'a [E]) -> R<bool> {
        for x in xs {
            if self.bool(x)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `e`'s value without marking an array or map it reads as shared
    /// (for reads that do not keep the value).
    #[inline]
    fn peek(&mut self, e: &'a E) -> R<V<'a>> {
        match e {
            E::Local(slot) => {
                self.tick()?;
                Ok(self.locals[*slot as usize])
            }
            e => self.expr(e),
        }
    }

    fn arith(&mut self, op: Bin, a: V<'a>, b: V<'a>) -> R<V<'a>> {
        if is_comparison(op) {
            return compare(op, &a, &b).map(V::Bool);
        }
        if let (V::Arr(x), V::Arr(y), Bin::Add) = (a, b, op) {
            let mut items = self.arr_buf(0);
            items.extend_from_slice(&self.arrs[x as usize].items);
            items.extend_from_slice(&self.arrs[y as usize].items);
            return self.new_arr(items);
        }
        arith(op, a, b)
    }

    /// An expression's value: the leaves here, the rest in
    /// [`Run::expr_node`] (a call to a large function costs more than most
    /// leaves do).
    #[inline(always)]
    fn expr(&mut self, e: &'a E) -> R<V<'a>> {
        self.tick()?;
        match e {
            E::Local(slot) => {
                let v = self.locals[*slot as usize];
                if matches!(v, V::Arr(_) | V::Map(_)) {
                    return Ok(self.read(*slot));
                }
                Ok(v)
            }
            E::Int(i) => Ok(V::Int(*i)),
            E::Float(f) => Ok(V::Float(*f)),
            E::Bool(b) => Ok(V::Bool(*b)),
            E::Str(s) => self.text(s),
            E::LocalProp(slot, p) => {
                if let V::Cand(h) = self.locals[*slot as usize] {
                    let c = &self.cands[h as usize];
                    match p.cand {
                        CandProp::Score(i) => return Ok(V::Float(c.s[i])),
                        CandProp::Group => {
                            let rs = self.env.rules;
                            let g = rs.actions[c.action as usize].group;
                            return self.text(&rs.groups[g as usize].name);
                        }
                        CandProp::Id => {
                            return self.text(&self.env.rules.actions[c.action as usize].id);
                        }
                        _ => {}
                    }
                }
                let b = self.locals[*slot as usize];
                self.prop(b, p)
            }
            e => self.expr_node(e),
        }
    }

    /// Whether `adjust` (this hook) returns `action`'s candidate as it is
    /// or returns nothing, with no effect and nothing that could fail:
    /// its body, with the folded conditions resolved for the action, only
    /// takes `if`s whose branches do nothing. `if candidate.issue ==
    /// "retention" { ... } candidate` is such a call for every action
    /// outside retention, and the caller skips it. Worked out once per
    /// action of the version, on first use.
    pub(crate) fn unchanged(&self, action: u32) -> bool {
        let hook = self.hook;
        let n = self.env.rules.actions.len();
        let budget = self.max_ops;
        hook.unchanged.get_or_init(|| {
            let tables = self.tables();
            (0..n)
                .map(|a| inert(&hook.body, tables, a, budget).is_some())
                .collect()
        })[action as usize]
    }

    /// The folded expressions' values for every action of the version.
    fn tables(&self) -> &'a [Box<[Option<Folded>]>] {
        let hook = self.hook;
        let env = self.env;
        hook.tables.get_or_init(|| {
            hook.statics
                .iter()
                .map(|e| {
                    (0..env.rules.actions.len() as u32)
                        .map(|action| {
                            // Once per version: buffers of its own.
                            let mut spare = Spare::default();
                            let mut run = hook.runner(env, &mut spare);
                            run.reset();
                            run.cands.push(Cand {
                                action,
                                s: [0.0; 4],
                                excluded: None,
                            });
                            run.locals.iter_mut().for_each(|v| *v = V::Cand(0));
                            match run.expr(e) {
                                Ok(V::Bool(b)) => Some(Folded::Bool(b)),
                                Ok(V::Int(i)) => Some(Folded::Int(i)),
                                Ok(V::Float(f)) => Some(Folded::Float(f)),
                                _ => None,
                            }
                        })
                        .collect()
                })
                .collect()
        })
    }

    #[inline(never)]
    fn expr_node(&mut self, e: &'a E) -> R<V<'a>> {
        Ok(match e {
            E::PerAction(slot, i, weight) => {
                self.ops += weight;
                if self.ops > self.max_ops {
                    return Err(Bail);
                }
                let V::Cand(h) = self.locals[*slot as usize] else {
                    return Err(Bail);
                };
                let action = self.cands[h as usize].action as usize;
                match self.tables()[*i][action] {
                    Some(Folded::Bool(b)) => V::Bool(b),
                    Some(Folded::Int(i)) => V::Int(i),
                    Some(Folded::Float(f)) => V::Float(f),
                    None => return Err(Bail),
                }
            }
            // Evaluated by `Run::expr`, which never passes them here.
            E::Int(_) | E::Float(_) | E::Bool(_) | E::Str(_) | E::LocalProp(..) | E::Local(_) => {
                return Err(Bail)
            }
            E::Unit => V::Unit,
            E::Take(slot) => self.locals[*slot as usize],
            E::Attr(slot) => self.attr(*slot)?,
            E::Prop(base, name) => {
                let b = self.peek(base)?;
                self.prop(b, name)?
            }
            // The attribute's read counts as `len(x)`'s operand does.
            E::AttrLen(slot) => {
                self.tick()?;
                match self.set_len(*slot)? {
                    Some(n) => V::Int(n as i64),
                    None => match self.attr(*slot)? {
                        V::Str(s) => V::Int(s.chars().count() as i64),
                        _ => return Err(Bail),
                    },
                }
            }
            E::Len(x) => match self.peek(x)? {
                V::Arr(h) => V::Int(self.arrs[h as usize].items.len() as i64),
                V::Map(h) => V::Int(self.maps[h as usize].items.len() as i64),
                V::Str(s) => V::Int(s.chars().count() as i64),
                _ => return Err(Bail),
            },
            E::Bin(op, x) => {
                let a = self.expr(&x.0)?;
                let b = self.expr(&x.1)?;
                self.arith(*op, a, b)?
            }
            E::Neg(x) => match self.expr(x)? {
                V::Int(i) => V::Int(i.checked_neg().ok_or(Bail)?),
                V::Float(f) => V::Float(-f),
                _ => return Err(Bail),
            },
            E::Not(x) => V::Bool(!self.bool(x)?),
            E::And(xs) => V::Bool(self.all(xs)?),
            E::Or(xs) => V::Bool(self.any(xs)?),
            E::Coalesce(xs) => {
                let mut last = V::Unit;
                for x in xs {
                    last = self.expr(x)?;
                    if !matches!(last, V::Unit) {
                        break;
                    }
                }
                last
            }
            E::Contains(x) => V::Bool(self.contains(x)?),
            E::Index(x) => {
                let base = self.peek(&x.0)?;
                let key = self.expr(&x.1)?;
                self.index(base, key)?
            }
            // Less common nodes, apart so that this function stays small.
            E::Lit(_)
            | E::Min(_)
            | E::Max(_)
            | E::Abs(_)
            | E::Since(..)
            | E::Array(_)
            | E::Map(_) => self.expr_rare(e)?,
        })
    }

    /// `needle in haystack` (`x` is (haystack, needle)).
    fn contains(&mut self, x: &'a (E, E)) -> R<bool> {
        let hay = self.peek(&x.0)?;
        let needle = self.peek(&x.1)?;
        Ok(match (hay, needle) {
            (V::Arr(h), V::Str(n)) => {
                // `c.group in groups`: strings, compared inline.
                let mut found = false;
                for item in &self.arrs[h as usize].items {
                    let eq = match item {
                        V::Str(s) => str_eq(s, n),
                        _ => compare(Bin::Eq, item, &V::Str(n))?,
                    };
                    if eq {
                        found = true;
                        break;
                    }
                }
                found
            }
            (V::Arr(h), n) => {
                let mut found = false;
                for item in &self.arrs[h as usize].items {
                    if compare(Bin::Eq, item, &n)? {
                        found = true;
                        break;
                    }
                }
                found
            }
            (V::Str(h), V::Str(n)) => h.contains(n),
            (V::Map(h), V::Str(k)) => self.maps[h as usize]
                .items
                .iter()
                .any(|(mk, _)| str_eq(mk, k)),
            _ => return Err(Bail),
        })
    }

    #[inline(never)]
    fn expr_rare(&mut self, e: &'a E) -> R<V<'a>> {
        Ok(match e {
            E::Lit(l) => self.lit(l)?,
            E::Min(x) | E::Max(x) => {
                let a = self.expr(&x.0)?;
                let b = self.expr(&x.1)?;
                let min = matches!(e, E::Min(_));
                match (a, b) {
                    (V::Int(a), V::Int(b)) => V::Int(if min { a.min(b) } else { a.max(b) }),
                    (a @ (V::Int(_) | V::Float(_)), b @ (V::Int(_) | V::Float(_))) => {
                        let (a, b) = (number(a)?, number(b)?);
                        // The packages' own definitions (NaN included).
                        V::Float(if min {
                            if a <= b {
                                a
                            } else {
                                b
                            }
                        } else if a >= b {
                            a
                        } else {
                            b
                        })
                    }
                    _ => return Err(Bail),
                }
            }
            E::Abs(x) => match self.expr(x)? {
                V::Int(i) => V::Int(i.checked_abs().ok_or(Bail)?),
                V::Float(f) => V::Float(f.abs()),
                _ => return Err(Bail),
            },
            E::Since(x, unit) => match self.expr(x)? {
                V::Int(t) => V::Int(self.env.now.checked_sub(t).ok_or(Bail)?.div_euclid(*unit)),
                _ => return Err(Bail),
            },
            E::Array(items) => {
                let mut v = self.arr_buf(items.len());
                for i in items {
                    let x = self.expr(i)?;
                    v.push(Self::element(x)?);
                }
                self.new_arr(v)?
            }
            E::Map(items) => {
                let mut m = self.map_buf(items.len());
                for (k, x) in items {
                    let v = self.expr(x)?;
                    map_set(&mut m, k, Self::element(v)?);
                }
                self.new_map(m)?
            }
            _ => return Err(Bail),
        })
    }

    fn lit(&mut self, l: &'a Lit) -> R<V<'a>> {
        Ok(match l {
            Lit::Unit => V::Unit,
            Lit::Bool(b) => V::Bool(*b),
            Lit::Int(i) => V::Int(*i),
            Lit::Float(f) => V::Float(*f),
            Lit::Str(s) => self.text(s)?,
            Lit::Arr(a) => {
                let mut v = self.arr_buf(a.len());
                for l in a {
                    let x = self.lit(l)?;
                    v.push(Self::element(x)?);
                }
                self.new_arr(v)?
            }
            Lit::Map(m) => {
                let mut items = self.map_buf(m.len());
                for (k, l) in m {
                    let x = self.lit(l)?;
                    items.push((&**k, Self::element(x)?));
                }
                self.new_map(items)?
            }
        })
    }
}

/// Put `items` in `arena`, named by no other value yet.
fn add<T>(arena: &mut Vec<Entry<T>>, items: T) -> u32 {
    arena.push(Entry {
        items,
        shared: false,
    });
    arena.len() as u32 - 1
}

/// Entry `h` of `arena` if no other value may name it, else a new copy.
fn own<T: Clone>(arena: &mut Vec<Entry<T>>, h: u32) -> u32 {
    if !arena[h as usize].shared {
        return h;
    }
    let items = arena[h as usize].items.clone();
    add(arena, items)
}

fn number(v: V<'_>) -> R<f64> {
    match v {
        V::Int(i) => Ok(i as f64),
        V::Float(f) => Ok(f),
        _ => Err(Bail),
    }
}

/// Types the lowered `==` and ordering know, by rank for "different types".
fn scalar_kind(v: &V<'_>) -> Option<u8> {
    Some(match v {
        V::Unit => 0,
        V::Bool(_) => 1,
        V::Int(_) | V::Float(_) => 2,
        V::Str(_) => 3,
        _ => return None,
    })
}

/// rhai's comparison of two values: numbers across int and float, strings
/// by bytes; values of different types are neither equal nor ordered.
fn compare(op: Bin, a: &V<'_>, b: &V<'_>) -> R<bool> {
    use std::cmp::Ordering;
    // The common cases first: strings (often the same rule-set string, so
    // the same pointer) and integers.
    let ord = match (a, b) {
        (V::Str(x), V::Str(y)) => {
            if matches!(op, Bin::Eq | Bin::Ne) {
                return Ok(str_eq(x, y) == (op == Bin::Eq));
            }
            x.cmp(y)
        }
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::Unit, V::Unit) => return Ok(op == Bin::Eq),
        (V::Bool(x), V::Bool(y)) => match op {
            Bin::Eq => return Ok(x == y),
            Bin::Ne => return Ok(x != y),
            _ => return Err(Bail),
        },
        (V::Int(_) | V::Float(_), V::Int(_) | V::Float(_)) => {
            return float_compare(op, number(*a)?, number(*b)?);
        }
        _ => {
            let (ka, kb) = (scalar_kind(a).ok_or(Bail)?, scalar_kind(b).ok_or(Bail)?);
            debug_assert_ne!(ka, kb);
            return Ok(op == Bin::Ne);
        }
    };
    Ok(match op {
        Bin::Eq => ord == Ordering::Equal,
        Bin::Ne => ord != Ordering::Equal,
        Bin::Lt => ord == Ordering::Less,
        Bin::Le => ord != Ordering::Greater,
        Bin::Gt => ord == Ordering::Greater,
        Bin::Ge => ord != Ordering::Less,
        _ => return Err(Bail),
    })
}

/// String equality for the short names hooks compare (groups, issues,
/// ids): often the same rule-set string (the same pointer), otherwise
/// usually different from the first byte; compared inline rather than
/// through a `memcmp` call.
#[inline]
fn str_eq(x: &str, y: &str) -> bool {
    let (x, y) = (x.as_bytes(), y.as_bytes());
    if x.len() != y.len() {
        return false;
    }
    if std::ptr::eq(x.as_ptr(), y.as_ptr()) {
        return true;
    }
    // Two overlapping words cover 4 to 16 bytes.
    fn w8(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
    }
    fn w4(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
    }
    let n = x.len();
    match n {
        8..=16 => w8(x, 0) == w8(y, 0) && w8(x, n - 8) == w8(y, n - 8),
        4..=7 => w4(x, 0) == w4(y, 0) && w4(x, n - 4) == w4(y, n - 4),
        0..=3 => x == y,
        _ => x == y,
    }
}

/// rhai's comparison when either number is a float (its checked builds):
/// relative to the larger magnitude, within `f64::EPSILON` is equal.
fn float_compare(op: Bin, x: f64, y: f64) -> R<bool> {
    const EPS: f64 = f64::EPSILON;
    let max = if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    };
    let zero = max == 0.0;
    Ok(match op {
        Bin::Eq => zero || (x - y).abs() / max <= EPS,
        Bin::Ne => !zero && (x - y).abs() / max > EPS,
        Bin::Gt => !zero && (x - y) / max > EPS,
        Bin::Ge => zero || (x - y) / max > -EPS,
        Bin::Lt => !zero && (y - x) / max > EPS,
        Bin::Le => zero || (y - x) / max > -EPS,
        _ => return Err(Bail),
    })
}

/// Arithmetic on numbers (arrays are added by [`Run::arith`]).
fn arith<'a>(op: Bin, a: V<'a>, b: V<'a>) -> R<V<'a>> {
    Ok(match (a, b) {
        (V::Int(x), V::Int(y)) => V::Int(
            match op {
                Bin::Add => x.checked_add(y),
                Bin::Sub => x.checked_sub(y),
                Bin::Mul => x.checked_mul(y),
                Bin::Div => x.checked_div(y),
                Bin::Rem => x.checked_rem(y),
                Bin::Pow => u32::try_from(y).ok().and_then(|y| x.checked_pow(y)),
                _ => None,
            }
            .ok_or(Bail)?,
        ),
        (V::Float(x), V::Float(y)) if op == Bin::Pow => V::Float(x.powf(y)),
        (V::Int(_) | V::Float(_), V::Int(_) | V::Float(_)) if op != Bin::Pow => {
            let (x, y) = (number(a)?, number(b)?);
            V::Float(match op {
                Bin::Add => x + y,
                Bin::Sub => x - y,
                Bin::Mul => x * y,
                Bin::Div => x / y,
                Bin::Rem => x % y,
                _ => return Err(Bail),
            })
        }
        _ => return Err(Bail),
    })
}

/// Set `k` to `v`; whether the key is new.
fn map_set<'a>(m: &mut Vec<(&'a str, V<'a>)>, k: &'a str, v: V<'a>) -> bool {
    match m.iter_mut().find(|(mk, _)| str_eq(mk, k)) {
        Some(slot) => {
            slot.1 = v;
            false
        }
        None => {
            m.push((k, v));
            true
        }
    }
}

/// rhai's array index: negative counts from the end.
fn array_index(len: usize, i: i64) -> R<usize> {
    let i = if i < 0 {
        (len as i64).checked_add(i).ok_or(Bail)?
    } else {
        i
    };
    if i < 0 || i as usize >= len {
        return Err(Bail);
    }
    Ok(i as usize)
}

#[cfg(test)]
mod tests {
    use super::{relife, str_eq, V};
    use proptest::prelude::*;

    /// Runs hand their buffers on through [`relife`]: it must keep the
    /// allocation, or every run allocates again.
    #[test]
    fn relife_keeps_the_allocation() {
        let text = String::from("x");
        let mut v: Vec<V<'_>> = Vec::with_capacity(37);
        v.push(V::Str(&text));
        let ptr = v.as_ptr() as usize;
        let w: Vec<V<'static>> = relife(v);
        assert!(w.is_empty());
        assert_eq!(w.capacity(), 37);
        assert_eq!(w.as_ptr() as usize, ptr);
    }

    proptest! {
        /// `str_eq` is `==`, at every length its word compares cover.
        #[test]
        fn str_eq_is_string_equality(
            a in "[ab]{0,24}",
            b in "[ab]{0,24}",
            flip in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(str_eq(&a, &b), a == b);
            prop_assert!(str_eq(&a, &a));
            prop_assert!(str_eq(&a, &a.clone()));
            // One byte changed anywhere is seen.
            if !a.is_empty() {
                let mut c = a.clone().into_bytes();
                let i = flip.index(c.len());
                c[i] = if c[i] == b'a' { b'b' } else { b'a' };
                let c = String::from_utf8(c).unwrap();
                prop_assert!(!str_eq(&a, &c));
            }
        }
    }
}
