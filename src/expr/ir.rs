//! The compiled form of a condition: a typed tree over context slots.
//!
//! Type checking has already happened, so every node knows the type it
//! produces and evaluation never inspects a dynamic type tag except to read
//! a slot. Strings are interned symbols; comparing them is an integer compare.
//! Semantics follow rhai's checked build exactly (rhai is the reference the
//! property tests compare against): integer arithmetic that overflows or
//! divides by zero is an error, float arithmetic follows IEEE 754, and float
//! comparisons use rhai's relative epsilon.

use crate::context::{Context, Slot};

pub(crate) use crate::base::{EvalError, Sym};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A list literal's int and float elements.
pub(crate) type MixedList = (Box<[i64]>, Box<[f64]>);

#[derive(Debug, Clone)]
pub(crate) enum BoolIr {
    Const(bool),
    Attr(u16),
    Not(Box<BoolIr>),
    And(Box<(BoolIr, BoolIr)>),
    Or(Box<(BoolIr, BoolIr)>),
    /// `attr OP constant` for an int attribute: the common case, one node.
    CmpIntConst(CmpOp, u16, i64),
    /// `attr OP constant` for a float attribute.
    CmpFloatConst(CmpOp, u16, f64),
    CmpInt(CmpOp, Box<(IntIr, IntIr)>),
    CmpFloat(CmpOp, Box<(FloatIr, FloatIr)>),
    CmpBool(CmpOp, Box<(BoolIr, BoolIr)>),
    /// `==` / `!=` on strings (`true` = negated).
    StrEq(bool, Box<(StrIr, StrIr)>),
    StrInList(StrIr, Box<[Sym]>),
    IntInList(IntIr, Box<[i64]>),
    /// An int in a list of ints and floats (ints exact, floats as floats).
    IntInMixedList(IntIr, Box<MixedList>),
    FloatInList(FloatIr, Box<[f64]>),
    BoolInList(Box<BoolIr>, bool, bool),
    /// `"X" in set_attr`.
    SetContains(u16, StrIr),
}

#[derive(Debug, Clone)]
pub(crate) enum IntIr {
    Const(i64),
    Attr(u16),
    /// A timestamp attribute read as epoch seconds (only for comparisons
    /// between timestamps).
    Time(u16),
    Neg(Box<IntIr>),
    Abs(Box<IntIr>),
    Arith(ArithOp, Box<(IntIr, IntIr)>),
    Min(Box<(IntIr, IntIr)>),
    Max(Box<(IntIr, IntIr)>),
    LenStr(Box<StrIr>),
    LenSet(u16),
    DaysSince(u16),
    HoursSince(u16),
}

#[derive(Debug, Clone)]
pub(crate) enum FloatIr {
    Const(f64),
    Attr(u16),
    FromInt(Box<IntIr>),
    Neg(Box<FloatIr>),
    Abs(Box<FloatIr>),
    Arith(ArithOp, Box<(FloatIr, FloatIr)>),
    Min(Box<(FloatIr, FloatIr)>),
    Max(Box<(FloatIr, FloatIr)>),
}

#[derive(Debug, Clone)]
pub(crate) enum StrIr {
    Const(Sym, Box<str>),
    Attr(u16),
    /// The request's channel (the built-in name `channel`).
    Channel,
}

/// `attr * mul + add` (the product's operands in either order), the shape
/// most value expressions take, evaluated without walking its tree: the
/// same two operations on the same operands, so the same result bit for
/// bit. An int attribute is converted as [`FloatIr::FromInt`] converts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Affine {
    slot: u16,
    int: bool,
    mul: f64,
    add: f64,
}

impl Affine {
    /// The affine form of `ir`, if it has one.
    pub(crate) fn of(ir: &FloatIr) -> Option<Affine> {
        let FloatIr::Arith(ArithOp::Add, sum) = ir else {
            return None;
        };
        let (FloatIr::Arith(ArithOp::Mul, product), FloatIr::Const(add)) = &**sum else {
            return None;
        };
        let (attr, mul) = match &**product {
            (a, FloatIr::Const(k)) | (FloatIr::Const(k), a) => (a, *k),
            _ => return None,
        };
        let (slot, int) = match attr {
            FloatIr::Attr(slot) => (*slot, false),
            FloatIr::FromInt(e) => match **e {
                IntIr::Attr(slot) => (slot, true),
                _ => return None,
            },
            _ => return None,
        };
        Some(Affine {
            slot,
            int,
            mul,
            add: *add,
        })
    }

    /// The value, or `None` when the attribute is missing: exactly
    /// `FloatIr::eval(..).ok()` of the tree it came from.
    #[inline]
    pub(crate) fn eval(&self, ctx: &Context) -> Option<f64> {
        let x = match ctx.slots[self.slot as usize] {
            Slot::Float(v) if !self.int => v,
            Slot::Int(v) if self.int => v as f64,
            _ => return None,
        };
        Some(x * self.mul + self.add)
    }
}

/// What evaluation needs besides the tree: the bound context, the
/// decision time (epoch seconds) for `days_since`, and the request's
/// channel (its symbol and name) for the built-in `channel`.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub ctx: &'a Context,
    pub now: i64,
    pub channel: (Sym, &'a str),
}

type R<T> = Result<T, EvalError>;

#[inline]
fn cmp_int(op: CmpOp, a: i64, b: i64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// rhai's float comparison (checked build): relative epsilon, with its
/// exact treatment of zero and NaN.
#[inline]
pub(crate) fn cmp_float(op: CmpOp, x: f64, y: f64) -> bool {
    let max = if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    };
    if max == 0.0 {
        return matches!(op, CmpOp::Eq | CmpOp::Ge | CmpOp::Le);
    }
    match op {
        CmpOp::Eq => (x - y).abs() / max <= f64::EPSILON,
        CmpOp::Ne => (x - y).abs() / max > f64::EPSILON,
        CmpOp::Gt => (x - y) / max > f64::EPSILON,
        CmpOp::Ge => (x - y) / max > -f64::EPSILON,
        CmpOp::Lt => (y - x) / max > f64::EPSILON,
        CmpOp::Le => (y - x) / max > -f64::EPSILON,
    }
}

/// A conjunct as the memo evaluates it on every decision: the shapes
/// nearly every conjunct takes, flat (one small tag to dispatch on, the
/// slot and the constant inline), and everything else by its index into
/// the rule version's conditions. Built once per version from the
/// conjunct's [`BoolIr`]; `Test::met` is exactly [`BoolIr::met`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Test {
    /// An int attribute in `lo..=hi`, or outside it when `negate`: all six
    /// comparisons with a constant. A missing attribute is not met either
    /// way.
    IntIn {
        slot: u16,
        negate: bool,
        lo: i64,
        hi: i64,
    },
    /// A float attribute against a constant (rhai's relative epsilon).
    FloatCmp { slot: u16, op: CmpOp, k: f64 },
    /// A bool attribute that must be `want`.
    Flag { slot: u16, want: bool },
    /// A string attribute equal to an interned literal (or not, when
    /// `negate`).
    SymEq { slot: u16, negate: bool, sym: Sym },
    /// A string-set attribute that holds an interned literal (or does not,
    /// when `negate`).
    SetHas { slot: u16, negate: bool, sym: Sym },
    /// Any other shape: condition `id`'s tree.
    Tree(u32),
}

impl Test {
    /// The flat form of conjunct `id`, whose tree is `ir`.
    pub(crate) fn of(ir: &BoolIr, id: u32) -> Test {
        let int = |slot, negate, lo, hi| Test::IntIn {
            slot,
            negate,
            lo,
            hi,
        };
        match ir {
            BoolIr::CmpIntConst(op, slot, k) => {
                let (slot, k) = (*slot, *k);
                match op {
                    CmpOp::Eq => int(slot, false, k, k),
                    CmpOp::Ne => int(slot, true, k, k),
                    CmpOp::Le => int(slot, false, i64::MIN, k),
                    CmpOp::Ge => int(slot, false, k, i64::MAX),
                    // Nothing is below the minimum or above the maximum:
                    // outside the whole range.
                    CmpOp::Lt => match k.checked_sub(1) {
                        Some(k) => int(slot, false, i64::MIN, k),
                        None => int(slot, true, i64::MIN, i64::MAX),
                    },
                    CmpOp::Gt => match k.checked_add(1) {
                        Some(k) => int(slot, false, k, i64::MAX),
                        None => int(slot, true, i64::MIN, i64::MAX),
                    },
                }
            }
            BoolIr::CmpFloatConst(op, slot, k) => Test::FloatCmp {
                slot: *slot,
                op: *op,
                k: *k,
            },
            BoolIr::Attr(slot) => Test::Flag {
                slot: *slot,
                want: true,
            },
            BoolIr::Not(e) => match &**e {
                BoolIr::Attr(slot) => Test::Flag {
                    slot: *slot,
                    want: false,
                },
                BoolIr::SetContains(slot, StrIr::Const(sym, _)) if *sym != 0 => Test::SetHas {
                    slot: *slot,
                    negate: true,
                    sym: *sym,
                },
                _ => Test::Tree(id),
            },
            BoolIr::StrEq(negate, p) => match &**p {
                (StrIr::Attr(slot), StrIr::Const(sym, _)) if *sym != 0 => Test::SymEq {
                    slot: *slot,
                    negate: *negate,
                    sym: *sym,
                },
                _ => Test::Tree(id),
            },
            BoolIr::SetContains(slot, StrIr::Const(sym, _)) if *sym != 0 => Test::SetHas {
                slot: *slot,
                negate: false,
                sym: *sym,
            },
            _ => Test::Tree(id),
        }
    }

    /// Whether the conjunct holds for `env`; `trees` are the version's
    /// conditions (for [`Test::Tree`]). [`Tests::memo`] evaluates the
    /// same shapes with the same functions, batched.
    #[inline]
    #[cfg(test)]
    pub(crate) fn met(&self, env: &Env<'_>, trees: &[crate::expr::Cond]) -> bool {
        let ctx = env.ctx;
        match *self {
            Test::IntIn {
                slot,
                negate,
                lo,
                hi,
            } => int_in(&ctx.slots[slot as usize], negate, lo, hi),
            Test::FloatCmp { slot, op, k } => float_cmp(&ctx.slots[slot as usize], op, k),
            Test::Flag { slot, want } => flag(&ctx.slots[slot as usize], want),
            Test::SymEq { slot, negate, sym } => sym_eq(&ctx.slots[slot as usize], negate, sym),
            Test::SetHas { slot, negate, sym } => {
                ctx.set_has_sym(slot, sym).is_some_and(|has| has != negate)
            }
            Test::Tree(id) => tree_met(&trees[id as usize].ir, env),
        }
    }

    /// Why the conjunct could not be evaluated, if it could not: exactly
    /// `eval(env).err()` of its tree. A flat shape fails only when its
    /// attribute is missing (a bound context holds each attribute's own
    /// type or nothing), so only trees are evaluated again.
    pub(crate) fn error(&self, env: &Env<'_>, trees: &[crate::expr::Cond]) -> Option<EvalError> {
        let slot = match *self {
            Test::IntIn { slot, .. }
            | Test::FloatCmp { slot, .. }
            | Test::Flag { slot, .. }
            | Test::SymEq { slot, .. }
            | Test::SetHas { slot, .. } => slot,
            Test::Tree(id) => return trees[id as usize].ir.eval(*env).err(),
        };
        (env.ctx.slots[slot as usize] == Slot::Missing).then_some(EvalError::Missing(slot))
    }
}

// The flat shapes' semantics, shared by `Test::met` and [`Tests::memo`].

/// An int in `lo..=hi` (outside it when `negate`); a missing attribute is
/// not met either way.
#[inline(always)]
fn int_in(slot: &Slot, negate: bool, lo: i64, hi: i64) -> bool {
    match slot {
        Slot::Int(v) => (v.wrapping_sub(lo) as u64 <= hi.wrapping_sub(lo) as u64) != negate,
        _ => false,
    }
}

/// The reference for [`FloatTest::met`].
#[cfg(test)]
#[inline(always)]
fn float_cmp(slot: &Slot, op: CmpOp, k: f64) -> bool {
    match slot {
        Slot::Float(v) => cmp_float(op, *v, k),
        _ => false,
    }
}

#[inline(always)]
fn flag(slot: &Slot, want: bool) -> bool {
    matches!(slot, Slot::Bool(b) if *b == want)
}

#[inline(always)]
fn sym_eq(slot: &Slot, negate: bool, sym: Sym) -> bool {
    match slot {
        Slot::Str(s, _) => (*s == sym) != negate,
        _ => false,
    }
}

/// A float conjunct in the memo's batch: [`float_cmp`] against a
/// constant, with its answer for most attribute values worked out at load.
///
/// rhai compares floats with a relative epsilon (2^-52), which costs a
/// division. Outside a band of relative width 2^-20 around a constant `k`
/// with `|k| >= 2^-20`, that comparison always gives what `x op k` gives
/// for a finite `x`: `|x - k|` is then at least 2^-20 times the larger
/// magnitude (or, when `x * k` is 0, at least 2^-20 in absolute terms), far
/// beyond the epsilon and any rounding. So a finite value below `lo` or
/// above `hi` is answered by two compares; the band, NaN, the infinities
/// and small constants take the exact path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloatTest {
    id: u32,
    slot: u16,
    op: CmpOp,
    /// The answer for a finite value below `lo`, and above `hi`.
    below: bool,
    above: bool,
    k: f64,
    lo: f64,
    hi: f64,
}

impl FloatTest {
    /// The relative half-width of the band, and the smallest `|k|` with
    /// a band.
    const BAND: f64 = 1.0 / (1u64 << 20) as f64;

    pub(crate) fn new(id: u32, slot: u16, op: CmpOp, k: f64) -> FloatTest {
        let (lo, hi) = if k.is_finite() && k.abs() >= Self::BAND {
            (k - k.abs() * Self::BAND, k + k.abs() * Self::BAND)
        } else {
            // No band: every value takes the exact path.
            (f64::NEG_INFINITY, f64::INFINITY)
        };
        let (below, above) = match op {
            CmpOp::Eq => (false, false),
            CmpOp::Ne => (true, true),
            CmpOp::Lt | CmpOp::Le => (true, false),
            CmpOp::Gt | CmpOp::Ge => (false, true),
        };
        FloatTest {
            id,
            slot,
            op,
            below,
            above,
            k,
            lo,
            hi,
        }
    }

    /// Exactly `float_cmp(slot, op, k)`.
    #[inline(always)]
    pub(crate) fn met(&self, slot: &Slot) -> bool {
        match *slot {
            Slot::Float(x) => {
                // Finite (NaN fails this too).
                if x.abs() <= f64::MAX {
                    if x < self.lo {
                        return self.below;
                    }
                    if x > self.hi {
                        return self.above;
                    }
                }
                cmp_float(self.op, x, self.k)
            }
            _ => false,
        }
    }
}

/// An int conjunct in the memo's batch: (id, slot, negate, lo, hi).
type IntRange = (u32, u16, bool, i64, i64);

/// Every conjunct of a rule version in its flat form: by id (for
/// explanations' errors), and grouped by shape for the memo, which
/// evaluates each shape in a loop of its own: no dispatch per conjunct,
/// and each loop's few branches are the same every time.
#[derive(Debug, Default)]
pub(crate) struct Tests {
    by_id: Box<[Test]>,
    /// (id, slot, negate, lo, hi): see [`Test::IntIn`].
    ints: Box<[IntRange]>,
    floats: Box<[FloatTest]>,
    flags: Box<[(u32, u16, bool)]>,
    syms: Box<[(u32, u16, bool, Sym)]>,
    sets: Box<[(u32, u16, bool, Sym)]>,
    /// A string attribute in a list of strings: (id, slot, start, end) of
    /// the list's symbols in `in_pool`. A tree in `by_id` (which keeps
    /// [`Test::met`] the reference); flat here.
    str_in: Box<[(u32, u16, u32, u32)]>,
    in_pool: Box<[Sym]>,
    trees: Box<[u32]>,
}

impl Tests {
    /// The flat forms of `trees` (conjunct `i` is `trees[i]`).
    pub(crate) fn of<'a>(irs: impl IntoIterator<Item = &'a BoolIr>) -> Tests {
        let irs: Vec<&BoolIr> = irs.into_iter().collect();
        let by_id: Box<[Test]> = (0u32..)
            .zip(&irs)
            .map(|(id, ir)| Test::of(ir, id))
            .collect();
        let (mut ints, mut floats, mut flags, mut syms, mut sets, mut trees) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut str_in, mut in_pool) = (vec![], vec![]);
        for (id, test) in (0u32..).zip(by_id.iter()) {
            match *test {
                Test::IntIn {
                    slot,
                    negate,
                    lo,
                    hi,
                } => ints.push((id, slot, negate, lo, hi)),
                Test::FloatCmp { slot, op, k } => floats.push(FloatTest::new(id, slot, op, k)),
                Test::Flag { slot, want } => flags.push((id, slot, want)),
                Test::SymEq { slot, negate, sym } => syms.push((id, slot, negate, sym)),
                Test::SetHas { slot, negate, sym } => sets.push((id, slot, negate, sym)),
                Test::Tree(id) => match irs[id as usize] {
                    BoolIr::StrInList(StrIr::Attr(slot), list) => {
                        let start = in_pool.len() as u32;
                        in_pool.extend_from_slice(list);
                        str_in.push((id, *slot, start, in_pool.len() as u32));
                    }
                    _ => trees.push(id),
                },
            }
        }
        Tests {
            by_id,
            ints: ints.into(),
            floats: floats.into(),
            flags: flags.into(),
            syms: syms.into(),
            sets: sets.into(),
            str_in: str_in.into(),
            in_pool: in_pool.into(),
            trees: trees.into(),
        }
    }

    /// How many conjuncts.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Conjunct `id`'s flat form.
    pub(crate) fn get(&self, id: u32) -> &Test {
        &self.by_id[id as usize]
    }

    /// Set bit `i % 64` of `words[i / 64]` when conjunct `i` is met, and
    /// clear it otherwise: exactly `Test::met` of each.
    pub(crate) fn memo(&self, env: &Env<'_>, trees: &[crate::expr::Cond], words: &mut [u64]) {
        debug_assert!(words.len() * 64 >= self.by_id.len());
        words.fill(0);
        let slots = &env.ctx.slots[..];
        #[inline(always)]
        fn set(words: &mut [u64], id: u32, met: bool) {
            words[id as usize / 64] |= u64::from(met) << (id % 64);
        }
        for &(id, slot, negate, lo, hi) in self.ints.iter() {
            set(words, id, int_in(&slots[slot as usize], negate, lo, hi));
        }
        for t in self.floats.iter() {
            set(words, t.id, t.met(&slots[t.slot as usize]));
        }
        for &(id, slot, want) in self.flags.iter() {
            set(words, id, flag(&slots[slot as usize], want));
        }
        for &(id, slot, negate, sym) in self.syms.iter() {
            set(words, id, sym_eq(&slots[slot as usize], negate, sym));
        }
        for &(id, slot, negate, sym) in self.sets.iter() {
            let met = env
                .ctx
                .set_has_sym(slot, sym)
                .is_some_and(|has| has != negate);
            set(words, id, met);
        }
        for &(id, slot, start, end) in self.str_in.iter() {
            let met = match slots[slot as usize] {
                // Symbol 0 is a string no rule mentions: in no list.
                Slot::Str(sym, _) => {
                    sym != 0 && self.in_pool[start as usize..end as usize].contains(&sym)
                }
                _ => false,
            };
            set(words, id, met);
        }
        for &id in self.trees.iter() {
            set(words, id, tree_met(&trees[id as usize].ir, env));
        }
    }
}

/// A conjunct of no flat shape, out of the memo's loop.
#[inline(never)]
fn tree_met(ir: &BoolIr, env: &Env<'_>) -> bool {
    ir.met(*env)
}

impl BoolIr {
    /// Whether the condition holds; an evaluation error (a missing
    /// attribute, overflow) is "not met". Exactly `eval(env) == Ok(true)`.
    /// The memo calls it only for conjuncts without a flat [`Test`], so
    /// the common shapes are in `Test::met`; the ones left here (a
    /// negation, a string comparison, a list or set test of a computed
    /// string) still skip `eval`'s recursion where they can.
    #[inline]
    pub(crate) fn met(&self, env: Env<'_>) -> bool {
        let env = &env;
        match self {
            BoolIr::Not(e) => match &**e {
                BoolIr::SetContains(slot, s) => set_contains(env, *slot, s) == Ok(false),
                e => e.eval_in(env) == Ok(false),
            },
            BoolIr::StrEq(negate, p) => {
                let (a, b) = &**p;
                a.eq(b, env).is_ok_and(|eq| eq != *negate)
            }
            BoolIr::StrInList(s, list) => {
                s.sym(env).is_ok_and(|sym| sym != 0 && list.contains(&sym))
            }
            BoolIr::SetContains(slot, s) => set_contains(env, *slot, s) == Ok(true),
            _ => self.eval_in(env) == Ok(true),
        }
    }

    /// Evaluate for `env`.
    #[inline]
    pub(crate) fn eval(&self, env: Env<'_>) -> R<bool> {
        self.eval_in(&env)
    }

    // By reference inside the tree: `Env` is five words, too large to
    // pass in registers at every node.
    fn eval_in(&self, env: &Env<'_>) -> R<bool> {
        match self {
            BoolIr::CmpIntConst(op, slot, k) => Ok(cmp_int(*op, env.ctx.int(*slot)?, *k)),
            BoolIr::CmpFloatConst(op, slot, k) => Ok(cmp_float(*op, env.ctx.float(*slot)?, *k)),
            BoolIr::Const(b) => Ok(*b),
            BoolIr::Attr(slot) => env.ctx.bool(*slot),
            BoolIr::Not(e) => Ok(!e.eval_in(env)?),
            BoolIr::And(p) => Ok(p.0.eval_in(env)? && p.1.eval_in(env)?),
            BoolIr::Or(p) => Ok(p.0.eval_in(env)? || p.1.eval_in(env)?),
            BoolIr::CmpInt(op, p) => Ok(cmp_int(*op, p.0.operand(env)?, p.1.operand(env)?)),
            BoolIr::CmpFloat(op, p) => Ok(cmp_float(*op, p.0.operand(env)?, p.1.operand(env)?)),
            BoolIr::CmpBool(op, p) => {
                let (a, b) = (p.0.eval_in(env)?, p.1.eval_in(env)?);
                Ok(if *op == CmpOp::Eq { a == b } else { a != b })
            }
            BoolIr::StrEq(negate, p) => {
                let eq = p.0.eq(&p.1, env)?;
                Ok(eq != *negate)
            }
            BoolIr::StrInList(s, list) => {
                let sym = s.sym(env)?;
                Ok(sym != 0 && list.contains(&sym))
            }
            BoolIr::IntInList(e, list) => {
                let v = e.operand(env)?;
                Ok(list.contains(&v))
            }
            BoolIr::IntInMixedList(e, lists) => {
                let v = e.operand(env)?;
                Ok(lists.0.contains(&v)
                    || lists.1.iter().any(|&k| cmp_float(CmpOp::Eq, v as f64, k)))
            }
            BoolIr::FloatInList(e, list) => {
                let v = e.operand(env)?;
                Ok(list.iter().any(|&k| cmp_float(CmpOp::Eq, v, k)))
            }
            BoolIr::BoolInList(e, has_true, has_false) => Ok(if e.eval_in(env)? {
                *has_true
            } else {
                *has_false
            }),
            BoolIr::SetContains(slot, s) => set_contains(env, *slot, s),
        }
    }
}

#[inline]
fn set_contains(env: &Env<'_>, slot: u16, s: &StrIr) -> R<bool> {
    let (sym, text) = s.sym_text(env)?;
    env.ctx.set_contains(slot, sym, text)
}

impl IntIr {
    /// An operand: a constant or an attribute inline (as
    /// [`FloatIr::operand`]).
    #[inline(always)]
    fn operand(&self, env: &Env<'_>) -> R<i64> {
        match self {
            IntIr::Const(v) => Ok(*v),
            IntIr::Attr(slot) => env.ctx.int(*slot),
            e => e.eval_in(env),
        }
    }

    fn eval_in(&self, env: &Env<'_>) -> R<i64> {
        match self {
            IntIr::Const(v) => Ok(*v),
            IntIr::Attr(slot) => env.ctx.int(*slot),
            IntIr::Time(slot) => env.ctx.time(*slot),
            IntIr::Neg(e) => e.operand(env)?.checked_neg().ok_or(EvalError::Overflow),
            IntIr::Abs(e) => e.operand(env)?.checked_abs().ok_or(EvalError::Overflow),
            IntIr::Arith(op, p) => {
                let (a, b) = (p.0.operand(env)?, p.1.operand(env)?);
                int_arith(*op, a, b)
            }
            IntIr::Min(p) => {
                let (a, b) = (p.0.operand(env)?, p.1.operand(env)?);
                Ok(if a <= b { a } else { b })
            }
            IntIr::Max(p) => {
                let (a, b) = (p.0.operand(env)?, p.1.operand(env)?);
                Ok(if a >= b { a } else { b })
            }
            IntIr::LenStr(s) => Ok(s.text(env)?.chars().count() as i64),
            IntIr::LenSet(slot) => env.ctx.set_len(*slot),
            IntIr::DaysSince(slot) => since(env, *slot, 86_400),
            IntIr::HoursSince(slot) => since(env, *slot, 3_600),
        }
    }
}

/// Whole units from `t` to the decision time, rounded toward negative
/// infinity (so a timestamp one second in the future is day -1).
pub(crate) fn since_seconds(now: i64, t: i64, unit: i64) -> R<i64> {
    let d = now.checked_sub(t).ok_or(EvalError::Overflow)?;
    Ok(d.div_euclid(unit))
}

fn since(env: &Env<'_>, slot: u16, unit: i64) -> R<i64> {
    since_seconds(env.now, env.ctx.time(slot)?, unit)
}

pub(crate) fn int_arith(op: ArithOp, a: i64, b: i64) -> R<i64> {
    match op {
        ArithOp::Add => a.checked_add(b).ok_or(EvalError::Overflow),
        ArithOp::Sub => a.checked_sub(b).ok_or(EvalError::Overflow),
        ArithOp::Mul => a.checked_mul(b).ok_or(EvalError::Overflow),
        ArithOp::Div if b == 0 => Err(EvalError::DivisionByZero),
        ArithOp::Div => a.checked_div(b).ok_or(EvalError::Overflow),
        ArithOp::Rem if b == 0 => Err(EvalError::DivisionByZero),
        ArithOp::Rem => a.checked_rem(b).ok_or(EvalError::Overflow),
    }
}

impl FloatIr {
    /// Evaluate for `env`.
    #[inline]
    pub(crate) fn eval(&self, env: Env<'_>) -> R<f64> {
        self.operand(&env)
    }

    /// An operand: a constant or an attribute inline, anything else by a
    /// call. Most operands are leaves, and a call per leaf costs more
    /// than the leaf.
    #[inline(always)]
    fn operand(&self, env: &Env<'_>) -> R<f64> {
        match self {
            FloatIr::Const(v) => Ok(*v),
            FloatIr::Attr(slot) => env.ctx.float(*slot),
            e => e.eval_in(env),
        }
    }

    // By reference inside the tree: `Env` is five words, too large to
    // pass in registers at every node.
    fn eval_in(&self, env: &Env<'_>) -> R<f64> {
        match self {
            FloatIr::Const(v) => Ok(*v),
            FloatIr::Attr(slot) => env.ctx.float(*slot),
            FloatIr::FromInt(e) => Ok(e.eval_in(env)? as f64),
            FloatIr::Neg(e) => Ok(-e.operand(env)?),
            FloatIr::Abs(e) => Ok(e.operand(env)?.abs()),
            FloatIr::Arith(op, p) => {
                let (a, b) = (p.0.operand(env)?, p.1.operand(env)?);
                Ok(match op {
                    ArithOp::Add => a + b,
                    ArithOp::Sub => a - b,
                    ArithOp::Mul => a * b,
                    ArithOp::Div => a / b,
                    ArithOp::Rem => a % b,
                })
            }
            FloatIr::Min(p) => {
                let (a, b) = (p.0.operand(env)?, p.1.operand(env)?);
                Ok(if a <= b { a } else { b })
            }
            FloatIr::Max(p) => {
                let (a, b) = (p.0.operand(env)?, p.1.operand(env)?);
                Ok(if a >= b { a } else { b })
            }
        }
    }
}

impl StrIr {
    #[inline]
    fn sym(&self, env: &Env<'_>) -> R<Sym> {
        match self {
            StrIr::Const(sym, _) => Ok(*sym),
            StrIr::Attr(slot) => env.ctx.str_sym(*slot),
            StrIr::Channel => Ok(env.channel.0),
        }
    }

    fn text<'a>(&'a self, env: &Env<'a>) -> R<&'a str> {
        Ok(self.sym_text(env)?.1)
    }

    #[inline]
    fn sym_text<'a>(&'a self, env: &Env<'a>) -> R<(Sym, &'a str)> {
        match self {
            StrIr::Const(sym, text) => Ok((*sym, text)),
            StrIr::Attr(slot) => env.ctx.str(*slot),
            StrIr::Channel => Ok(env.channel),
        }
    }

    #[inline]
    fn eq(&self, other: &StrIr, env: &Env<'_>) -> R<bool> {
        let (a, ta) = self.sym_text(env)?;
        let (b, tb) = other.sym_text(env)?;
        // Symbols decide unless both strings are ones no rule mentions.
        Ok(if a == 0 && b == 0 { ta == tb } else { a == b })
    }
}

/// Whether a compiled expression has an operation that can fail on values
/// that are all present: integer arithmetic, negation or absolute value
/// (overflow, division by zero) and `days_since`/`hours_since` (overflow).
/// Without one, evaluating it fails only if a slot it [`Reads`] is missing
/// (a bound context holds each attribute's own type or nothing): the
/// decision log's writer then need not evaluate it to know it did not.
pub(crate) trait Fallible {
    fn fallible(&self) -> bool;
}

impl Fallible for BoolIr {
    fn fallible(&self) -> bool {
        match self {
            BoolIr::Const(_)
            | BoolIr::Attr(_)
            | BoolIr::CmpIntConst(..)
            | BoolIr::CmpFloatConst(..) => false,
            BoolIr::Not(e) | BoolIr::BoolInList(e, _, _) => e.fallible(),
            BoolIr::And(p) | BoolIr::Or(p) | BoolIr::CmpBool(_, p) => {
                p.0.fallible() || p.1.fallible()
            }
            BoolIr::CmpInt(_, p) => p.0.fallible() || p.1.fallible(),
            BoolIr::CmpFloat(_, p) => p.0.fallible() || p.1.fallible(),
            BoolIr::StrEq(..) | BoolIr::StrInList(..) | BoolIr::SetContains(..) => false,
            BoolIr::IntInList(e, _) | BoolIr::IntInMixedList(e, _) => e.fallible(),
            BoolIr::FloatInList(e, _) => e.fallible(),
        }
    }
}

impl Fallible for IntIr {
    fn fallible(&self) -> bool {
        match self {
            IntIr::Const(_)
            | IntIr::Attr(_)
            | IntIr::Time(_)
            | IntIr::LenSet(_)
            | IntIr::LenStr(_) => false,
            IntIr::Neg(_)
            | IntIr::Abs(_)
            | IntIr::Arith(..)
            | IntIr::DaysSince(_)
            | IntIr::HoursSince(_) => true,
            IntIr::Min(p) | IntIr::Max(p) => p.0.fallible() || p.1.fallible(),
        }
    }
}

impl Fallible for FloatIr {
    fn fallible(&self) -> bool {
        match self {
            FloatIr::Const(_) | FloatIr::Attr(_) => false,
            FloatIr::FromInt(e) => e.fallible(),
            FloatIr::Neg(e) | FloatIr::Abs(e) => e.fallible(),
            FloatIr::Arith(_, p) | FloatIr::Min(p) | FloatIr::Max(p) => {
                p.0.fallible() || p.1.fallible()
            }
        }
    }
}

/// Every context slot a compiled expression reads (for "which attributes
/// does this rule version use").
pub(crate) trait Reads {
    fn reads(&self, out: &mut Vec<u16>);
}

impl Reads for BoolIr {
    fn reads(&self, out: &mut Vec<u16>) {
        match self {
            BoolIr::Const(_) => {}
            BoolIr::Attr(s) | BoolIr::CmpIntConst(_, s, _) | BoolIr::CmpFloatConst(_, s, _) => {
                out.push(*s)
            }
            BoolIr::Not(e) | BoolIr::BoolInList(e, _, _) => e.reads(out),
            BoolIr::And(p) | BoolIr::Or(p) | BoolIr::CmpBool(_, p) => {
                p.0.reads(out);
                p.1.reads(out);
            }
            BoolIr::CmpInt(_, p) => {
                p.0.reads(out);
                p.1.reads(out);
            }
            BoolIr::CmpFloat(_, p) => {
                p.0.reads(out);
                p.1.reads(out);
            }
            BoolIr::StrEq(_, p) => {
                p.0.reads(out);
                p.1.reads(out);
            }
            BoolIr::StrInList(s, _) => s.reads(out),
            BoolIr::IntInList(e, _) | BoolIr::IntInMixedList(e, _) => e.reads(out),
            BoolIr::FloatInList(e, _) => e.reads(out),
            BoolIr::SetContains(slot, s) => {
                out.push(*slot);
                s.reads(out);
            }
        }
    }
}

impl Reads for IntIr {
    fn reads(&self, out: &mut Vec<u16>) {
        match self {
            IntIr::Const(_) => {}
            IntIr::Attr(s)
            | IntIr::Time(s)
            | IntIr::LenSet(s)
            | IntIr::DaysSince(s)
            | IntIr::HoursSince(s) => out.push(*s),
            IntIr::Neg(e) | IntIr::Abs(e) => e.reads(out),
            IntIr::Arith(_, p) | IntIr::Min(p) | IntIr::Max(p) => {
                p.0.reads(out);
                p.1.reads(out);
            }
            IntIr::LenStr(s) => s.reads(out),
        }
    }
}

impl Reads for FloatIr {
    fn reads(&self, out: &mut Vec<u16>) {
        match self {
            FloatIr::Const(_) => {}
            FloatIr::Attr(s) => out.push(*s),
            FloatIr::FromInt(e) => e.reads(out),
            FloatIr::Neg(e) | FloatIr::Abs(e) => e.reads(out),
            FloatIr::Arith(_, p) | FloatIr::Min(p) | FloatIr::Max(p) => {
                p.0.reads(out);
                p.1.reads(out);
            }
        }
    }
}

impl Reads for StrIr {
    fn reads(&self, out: &mut Vec<u16>) {
        if let StrIr::Attr(s) = self {
            out.push(*s);
        }
    }
}
