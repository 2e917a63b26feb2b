//! Tests of the condition language.
//!
//! The main one is a differential property test: random well-typed
//! conditions, printed as text, evaluated on random contexts by the compiled
//! IR and by rhai (the reference the language mirrors), must give the same
//! answer: the same bool, or an error on both sides. Then unit tests of
//! precedence, of known differences, and of every compile error's message
//! and span.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::strategy::BoxedStrategy;
use rhai::{Dynamic, EvalAltResult, ImmutableString, INT};

use super::ir::{cmp_float, BoolIr, CmpOp, FloatTest, Test, Tests};
use super::lexer::Span;
use super::{compile_condition, Conjunct, Env, EvalError, ParseError, Scope};
use crate::base::{AttrType, Timestamp, Value};
use crate::context::schema::{Attribute, Schema, Symbols};
use crate::context::{Context, Slot};
use crate::expr::Cond;

/// The decision time of every evaluation (epoch seconds, 2026-11-18).
const NOW: i64 = 1_795_000_000;

// ---------------------------------------------------------------------------
// Schema, contexts, and the two evaluators
// ---------------------------------------------------------------------------

fn attr(name: &str, ty: AttrType) -> Attribute {
    Attribute {
        name: name.into(),
        ty,
        sensitive: false,
        values: None,
        default_value: None,
        derived: false,
        model: None,
    }
}

/// The differential test's schema: every type, several of each number type.
fn attrs() -> Vec<Attribute> {
    vec![
        attr("i0", AttrType::Int),
        attr("i1", AttrType::Int),
        attr("i2", AttrType::Int),
        attr("i3", AttrType::Int),
        attr("f0", AttrType::Float),
        attr("f1", AttrType::Float),
        attr("f2", AttrType::Float),
        attr("b0", AttrType::Bool),
        attr("b1", AttrType::Bool),
        attr("s0", AttrType::String),
        attr("s1", AttrType::String),
        attr("set0", AttrType::StringSet),
        attr("t0", AttrType::Timestamp),
        // Names for the error-message tests (did-you-mean).
        attr("age", AttrType::Int),
        attr("income", AttrType::Float),
        attr("segment", AttrType::String),
        attr("vip", AttrType::Bool),
        attr("products", AttrType::StringSet),
        attr("last_contact", AttrType::Timestamp),
    ]
}

/// One customer: a value for every attribute of the differential schema.
#[derive(Debug, Clone)]
struct Ctx {
    ints: [i64; 4],
    floats: [f64; 3],
    bools: [bool; 2],
    strs: [String; 2],
    set: Vec<String>,
    t0: i64,
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx {
            ints: [0; 4],
            floats: [0.0; 3],
            bools: [false; 2],
            strs: [String::new(), String::new()],
            set: Vec::new(),
            t0: NOW,
        }
    }
}

type Ours = Result<bool, EvalError>;

/// `text` compiled against the differential schema: its conjuncts, and the
/// schema with the symbols it interned.
fn compile(text: &str) -> Result<(Vec<Conjunct>, Arc<Schema>), ParseError> {
    let attrs = attrs();
    let lookup = Schema::new(attrs.clone(), Symbols::new());
    let mut symbols = Symbols::new();
    let conjuncts = compile_condition(
        text,
        &mut Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        },
    )?;
    Ok((conjuncts, Arc::new(Schema::new(attrs, symbols))))
}

/// A rule version's condition table holding only `ir` (id 0), for
/// [`Test::met`] and [`Test::error`] of a [`Test::Tree`].
fn tree(ir: &BoolIr, text: &str) -> [Cond; 1] {
    [cond(ir, text)]
}

/// A condition table's entry for `ir`.
fn cond(ir: &BoolIr, text: &str) -> Cond {
    Cond {
        ir: ir.clone(),
        text: text.into(),
        location: crate::base::Location {
            file: "test".into(),
            line: 1,
            column: 1,
        },
    }
}

/// The evaluation environment of the tests: `ctx` at [`NOW`] on `web`.
fn env(ctx: &Context) -> Env<'_> {
    Env {
        ctx,
        now: NOW,
        channel: (0, "web"),
    }
}

/// Compile `text` (no error expected) into its conjuncts and evaluate it on
/// every context: all conjuncts true → true; the first that is false or
/// fails decides (like `&&`).
fn eval_ours(text: &str, ctxs: &[Ctx]) -> Result<Vec<Ours>, ParseError> {
    let (conjuncts, schema) = compile(text)?;
    // The conjuncts as a rule version holds them: their trees, and their
    // flat forms (by id and batched by shape, as the memo evaluates them).
    let trees: Vec<Cond> = conjuncts.iter().map(|conj| cond(&conj.ir, text)).collect();
    let tests = Tests::of(conjuncts.iter().map(|c| &c.ir));
    let mut words = vec![!0u64; crate::ruleset::policy::Memo::words(conjuncts.len())];
    Ok(ctxs
        .iter()
        .map(|c| {
            let ctx = bind(&schema, c);
            let env = env(&ctx);
            tests.memo(&env, &trees, &mut words);
            for (id, conj) in (0u32..).zip(&conjuncts) {
                let test = tests.get(id);
                let met = words[id as usize / 64] & (1 << (id % 64)) != 0;
                // The decision path's inline fast path must agree exactly,
                // and so must the memo's flat form, alone and batched.
                assert_eq!(
                    conj.ir.met(env),
                    conj.ir.eval(env) == Ok(true),
                    "met() and eval() disagree on a conjunct of `{text}`"
                );
                assert_eq!(
                    test.met(&env, &trees),
                    conj.ir.eval(env) == Ok(true),
                    "the memo's {test:?} and eval() disagree on a conjunct of `{text}`"
                );
                assert_eq!(
                    met,
                    conj.ir.eval(env) == Ok(true),
                    "the batched memo and eval() disagree on {test:?} of `{text}`"
                );
                assert_eq!(
                    test.error(&env, &trees),
                    conj.ir.eval(env).err(),
                    "the memo's {test:?} and eval() disagree on the error of `{text}`"
                );
                match conj.ir.eval(env) {
                    Ok(true) => {}
                    other => return other,
                }
            }
            Ok(true)
        })
        .collect())
}

fn bind(schema: &Arc<Schema>, c: &Ctx) -> Context {
    let mut b = Context::builder(schema);
    for (i, v) in c.ints.iter().enumerate() {
        b = b.set(&format!("i{i}"), Value::Int(*v));
    }
    for (i, v) in c.floats.iter().enumerate() {
        b = b.set(&format!("f{i}"), Value::Float(*v));
    }
    for (i, v) in c.bools.iter().enumerate() {
        b = b.set(&format!("b{i}"), Value::Bool(*v));
    }
    for (i, v) in c.strs.iter().enumerate() {
        b = b.set(&format!("s{i}"), Value::String(v.clone()));
    }
    b = b.set("set0", Value::StringSet(c.set.clone()));
    b = b.set("t0", Value::Timestamp(Timestamp(c.t0)));
    b.build().expect("the test context matches the schema")
}

fn ours1(text: &str, c: &Ctx) -> Ours {
    match eval_ours(text, std::slice::from_ref(c)) {
        Ok(mut v) => v.remove(0),
        Err(e) => panic!("`{text}` did not compile: {e:?}"),
    }
}

/// What rhai made of a condition.
#[derive(Debug, Clone, PartialEq)]
enum Rhai {
    Bool(bool),
    /// An arithmetic error (overflow, division by zero), possibly inside a
    /// function call.
    ArithError(String),
    /// Anything else: a parse error, a missing function, a non-bool result.
    /// The generator only produces conditions rhai must accept, so this is a
    /// generator bug or a real difference in what the languages accept.
    Other(String),
}

fn since(t: INT, unit: INT) -> Result<INT, Box<EvalAltResult>> {
    NOW.checked_sub(t)
        .map(|d| d.div_euclid(unit))
        .ok_or_else(|| {
            EvalAltResult::ErrorArithmetic(format!("overflow: {NOW} - {t}"), rhai::Position::NONE)
                .into()
        })
}

fn rhai_engine() -> rhai::Engine {
    use rhai::packages::Package;
    let mut e = rhai::Engine::new_raw();
    rhai::packages::StandardPackage::new().register_into_engine(&mut e);
    e.set_optimization_level(rhai::OptimizationLevel::None);
    e.register_fn("days_since", |t: INT| since(t, 86_400));
    e.register_fn("hours_since", |t: INT| since(t, 3_600));
    e
}

fn rhai_scope(c: &Ctx) -> rhai::Scope<'static> {
    let mut s = rhai::Scope::new();
    for (i, v) in c.ints.iter().enumerate() {
        s.push(format!("i{i}"), *v as INT);
    }
    for (i, v) in c.floats.iter().enumerate() {
        s.push(format!("f{i}"), *v as rhai::FLOAT);
    }
    for (i, v) in c.bools.iter().enumerate() {
        s.push(format!("b{i}"), *v);
    }
    for (i, v) in c.strs.iter().enumerate() {
        s.push(format!("s{i}"), ImmutableString::from(v.as_str()));
    }
    let set: rhai::Array = c
        .set
        .iter()
        .map(|x| Dynamic::from(ImmutableString::from(x.as_str())))
        .collect();
    s.push("set0", set);
    s.push("t0", c.t0 as INT);
    s
}

fn is_arith(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorArithmetic(..) => true,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => is_arith(inner),
        _ => false,
    }
}

fn eval_rhai(engine: &rhai::Engine, text: &str, c: &Ctx) -> Rhai {
    let mut scope = rhai_scope(c);
    match engine.eval_expression_with_scope::<Dynamic>(&mut scope, text) {
        Ok(v) => match v.as_bool() {
            Ok(b) => Rhai::Bool(b),
            Err(ty) => Rhai::Other(format!("not a bool but {ty}: {v:?}")),
        },
        Err(e) if is_arith(&e) => Rhai::ArithError(e.to_string()),
        Err(e) => Rhai::Other(e.to_string()),
    }
}

fn rhai1(text: &str, c: &Ctx) -> Rhai {
    eval_rhai(&rhai_engine(), text, c)
}

fn agree(ours: &Ours, rhai: &Rhai) -> bool {
    match (ours, rhai) {
        (Ok(a), Rhai::Bool(b)) => a == b,
        (Err(EvalError::Overflow | EvalError::DivisionByZero), Rhai::ArithError(_)) => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// The generator: typed expression trees, printed as text
// ---------------------------------------------------------------------------

/// An expression of the condition language, as a tree that prints with
/// the fewest parentheses rhai's precedence needs (plus explicit `Paren`s).
#[derive(Debug, Clone)]
enum E {
    /// A literal, attribute, call or `in` right-hand side, printed as is.
    Atom(String),
    Neg(Box<E>),
    Not(Box<E>),
    Bin(&'static str, Box<E>, Box<E>),
    /// Redundant parentheses.
    Paren(Box<E>),
}

fn prec(op: &str) -> u8 {
    match op {
        "||" => 30,
        "&&" => 60,
        "==" | "!=" => 90,
        "in" => 110,
        "<" | "<=" | ">" | ">=" => 130,
        "+" | "-" => 150,
        "*" | "/" | "%" => 180,
        _ => unreachable!("operator {op}"),
    }
}

impl E {
    fn prec(&self) -> u8 {
        match self {
            E::Bin(op, ..) => prec(op),
            _ => u8::MAX,
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn write(&self, s: &mut String) {
        match self {
            E::Atom(a) => s.push_str(a),
            E::Paren(e) => {
                s.push('(');
                e.write(s);
                s.push(')');
            }
            // `--` is a reserved token in rhai, and `-(-9...)` must stay
            // unambiguous: anything but a plain atom gets parentheses.
            E::Neg(e) => match &**e {
                E::Atom(a) if !a.starts_with('-') => {
                    s.push('-');
                    s.push_str(a);
                }
                e => {
                    s.push_str("-(");
                    e.write(s);
                    s.push(')');
                }
            },
            E::Not(e) => match &**e {
                e @ (E::Atom(_) | E::Not(_) | E::Paren(_)) => {
                    s.push('!');
                    e.write(s);
                }
                e => {
                    s.push_str("!(");
                    e.write(s);
                    s.push(')');
                }
            },
            E::Bin(op, l, r) => {
                let p = prec(op);
                // Left-associative: the left operand may have the same
                // precedence, the right one must bind tighter.
                wrap(s, l, l.prec() < p);
                s.push(' ');
                s.push_str(op);
                s.push(' ');
                wrap(s, r, r.prec() <= p);
            }
        }
    }
}

fn wrap(s: &mut String, e: &E, parens: bool) {
    if parens {
        s.push('(');
    }
    e.write(s);
    if parens {
        s.push(')');
    }
}

fn atom(s: impl Into<String>) -> E {
    E::Atom(s.into())
}

fn bin(op: &'static str, l: E, r: E) -> E {
    E::Bin(op, Box::new(l), Box::new(r))
}

fn is_min_literal(e: &E) -> bool {
    match e {
        E::Atom(a) => a == "-9223372036854775808",
        E::Paren(e) => is_min_literal(e),
        _ => false,
    }
}

/// Unary minus. rhai folds `-(<literal i64::MIN>)` into the *float*
/// 9.2e18 at parse time (see `rhai_folds_negated_min_literal_into_a_float`),
/// a known difference; negate that literal as `0 - x` instead, which
/// overflows on both sides.
fn neg(e: E) -> E {
    if is_min_literal(&e) {
        bin("-", atom("0"), e)
    } else {
        E::Neg(Box::new(e))
    }
}

fn call(f: &str, args: &[E]) -> E {
    let args: Vec<String> = args.iter().map(E::text).collect();
    atom(format!("{f}({})", args.join(", ")))
}

fn list(items: Vec<&str>) -> E {
    atom(format!("[{}]", items.join(", ")))
}

const INT_ATTRS: [&str; 4] = ["i0", "i1", "i2", "i3"];
const FLOAT_ATTRS: [&str; 3] = ["f0", "f1", "f2"];

fn int_literal() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (-3i64..=3).prop_map(|v| v.to_string()),
        1 => select(vec![
            "86400",
            "1_000",
            "9223372036854775807",
            "-9223372036854775808",
            "4611686018427387904",
            "-4611686018427387904",
            "3037000500",
            "9007199254740993",
        ])
        .prop_map(String::from),
        1 => any::<i64>().prop_map(|v| v.to_string()),
    ]
    .boxed()
}

fn float_literal() -> BoxedStrategy<String> {
    select(vec![
        "2.5", "-0.5", "1e3", "0.0", "-0.0", "0.1", "1.5e-3", "1e308", "3.0", "-2.0", "0.5", "1.0",
        "1e-320",
    ])
    .prop_map(String::from)
    .boxed()
}

fn str_expr() -> BoxedStrategy<E> {
    select(vec![
        "s0", "s1", "\"a\"", "\"b\"", "\"c\"", "\"\"", "\"é\"", "\"gold\"",
    ])
    .prop_map(atom)
    .boxed()
}

/// Strategies for the three expression types at one depth.
#[derive(Clone)]
struct Level {
    int: BoxedStrategy<E>,
    float: BoxedStrategy<E>,
    boolean: BoxedStrategy<E>,
}

fn leaves() -> Level {
    let int = prop_oneof![
        3 => int_literal().prop_map(E::Atom),
        4 => select(INT_ATTRS.to_vec()).prop_map(atom),
        2 => select(vec![
            "len(s0)",
            "len(s1)",
            "len(set0)",
            "len(\"é\")",
            "days_since(t0)",
            "hours_since(t0)",
        ])
        .prop_map(atom),
    ]
    .boxed();
    let float = prop_oneof![
        1 => float_literal().prop_map(E::Atom),
        1 => select(FLOAT_ATTRS.to_vec()).prop_map(atom),
    ]
    .boxed();
    let boolean = select(vec!["b0", "b1", "true", "false"])
        .prop_map(atom)
        .boxed();
    Level {
        int,
        float,
        boolean,
    }
}

/// Redundant parentheses now and then.
fn maybe_paren(s: BoxedStrategy<E>) -> BoxedStrategy<E> {
    prop_oneof![
        8 => s.clone(),
        1 => s.prop_map(|e| E::Paren(Box::new(e))),
    ]
    .boxed()
}

fn level(prev: &Level) -> Level {
    let i = prev.int.clone();
    let f = prev.float.clone();
    let b = prev.boolean.clone();
    let num = prop_oneof![i.clone(), f.clone()].boxed();
    let arith = || select(vec!["+", "-", "*", "/", "%"]);

    let int = maybe_paren(
        prop_oneof![
            2 => i.clone(),
            5 => (arith(), i.clone(), i.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
            1 => i.clone().prop_map(neg),
            1 => i.clone().prop_map(|x| call("abs", &[x])),
            1 => (select(vec!["min", "max"]), i.clone(), i.clone()).prop_map(|(fname, x, y)| call(fname, &[x, y])),
        ]
        .boxed(),
    );

    // A float operation with at least one float operand, either side.
    let float = maybe_paren(
        prop_oneof![
            2 => f.clone(),
            5 => (arith(), f.clone(), num.clone(), any::<bool>())
                .prop_map(|(op, x, y, swap)| if swap { bin(op, y, x) } else { bin(op, x, y) }),
            1 => f.clone().prop_map(neg),
            1 => f.clone().prop_map(|x| call("abs", &[x])),
            1 => (select(vec!["min", "max"]), f.clone(), num.clone(), any::<bool>())
                .prop_map(|(fname, x, y, swap)| if swap { call(fname, &[y, x]) } else { call(fname, &[x, y]) }),
        ]
        .boxed(),
    );

    let cmp = || select(vec!["<", "<=", ">", ">=", "==", "!="]);
    let big_ints = vec![
        "0",
        "1",
        "2",
        "-1",
        "9223372036854775807",
        "9223372036854775806",
        "-9223372036854775808",
        "9007199254740992",
        "9007199254740993",
    ];
    // Mixed lists keep their ints small: an int compared with a large,
    // nearby int in a mixed list is a known difference (see
    // `int_in_mixed_list_compares_ints_exactly`).
    let mixed = vec![
        "0",
        "1",
        "2",
        "-1",
        "3",
        "2.5",
        "0.0",
        "-0.0",
        "1e3",
        "9.007199254740992e15",
        "-0.5",
    ];
    let boolean = maybe_paren(
        prop_oneof![
            2 => b.clone(),
            6 => (cmp(), num.clone(), num.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
            3 => (select(vec!["&&", "||"]), b.clone(), b.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
            2 => b.clone().prop_map(|x| E::Not(Box::new(x))),
            1 => (select(vec!["==", "!="]), b.clone(), b.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
            2 => (select(vec!["==", "!="]), str_expr(), str_expr()).prop_map(|(op, l, r)| bin(op, l, r)),
            1 => (str_expr(), subsequence(vec!["\"a\"", "\"b\"", "\"é\"", "\"\"", "\"zz\""], 0..=3))
                .prop_map(|(s, items)| bin("in", s, list(items))),
            1 => str_expr().prop_map(|s| bin("in", s, atom("set0"))),
            1 => (i.clone(), subsequence(big_ints, 0..=4)).prop_map(|(x, items)| bin("in", x, list(items))),
            1 => (num.clone(), subsequence(mixed, 0..=4)).prop_map(|(x, items)| bin("in", x, list(items))),
            1 => (b.clone(), subsequence(vec!["true", "false"], 0..=2)).prop_map(|(x, items)| bin("in", x, list(items))),
            1 => cmp().prop_map(|op| bin(op, atom("t0"), atom("t0"))),
        ]
        .boxed(),
    );
    Level {
        int,
        float,
        boolean,
    }
}

/// Bool conditions of depth at most `depth`.
fn condition(depth: usize) -> BoxedStrategy<E> {
    let mut l = leaves();
    for _ in 0..depth {
        l = level(&l);
    }
    l.boolean
}

fn int_value() -> BoxedStrategy<i64> {
    prop_oneof![
        6 => -3i64..=3,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX - 1),
        1 => Just(9_007_199_254_740_993),
        1 => Just(1 << 62),
        1 => Just(-(1 << 62)),
        1 => Just(3_037_000_500),
        1 => Just(86_400),
        3 => any::<i64>(),
    ]
    .boxed()
}

fn float_value() -> BoxedStrategy<f64> {
    prop_oneof![
        2 => Just(0.0),
        2 => Just(-0.0),
        4 => (-3i32..=3).prop_map(f64::from),
        2 => select(vec![2.5, -0.5, 0.1, 0.5, 1e3]),
        2 => -10.0..10.0f64,
        1 => select(vec![1e-300, 5e-324, -5e-324, 1e300, f64::MAX, -f64::MAX, 9_007_199_254_740_992.0]),
        2 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
    ]
    .boxed()
}

fn string_value() -> BoxedStrategy<String> {
    select(vec!["a", "b", "c", "", "zz", "é", "gold"])
        .prop_map(String::from)
        .boxed()
}

fn ctx() -> impl Strategy<Value = Ctx> {
    (
        [int_value(), int_value(), int_value(), int_value()],
        [float_value(), float_value(), float_value()],
        [any::<bool>(), any::<bool>()],
        [string_value(), string_value()],
        subsequence(vec!["a", "b", "x", "é"], 0..=4),
        prop_oneof![
            6 => (NOW - 400 * 86_400)..(NOW + 2 * 86_400),
            1 => Just(NOW),
            1 => Just(NOW + 1),
            1 => Just(i64::MIN),
            1 => Just(i64::MAX),
            2 => any::<i64>(),
        ],
    )
        .prop_map(|(ints, floats, bools, strs, set, t0)| Ctx {
            ints,
            floats,
            bools,
            strs,
            set: set.into_iter().map(String::from).collect(),
            t0,
        })
}

// ---------------------------------------------------------------------------
// The differential property test
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// For random contexts and random conditions from the grammar, the
    /// compiled evaluation equals rhai evaluating the same text.
    #[test]
    fn compiled_conditions_agree_with_rhai(e in condition(5), ctxs in proptest::collection::vec(ctx(), 3)) {
        agrees_with_rhai(&e, &ctxs)?;
    }

    /// The same for shallow conditions: rules are mostly comparisons of an
    /// attribute with a constant, which the memo evaluates in their flat
    /// forms; deep random conditions seldom have that shape at the top.
    #[test]
    fn shallow_conditions_agree_with_rhai(e in condition(1), ctxs in proptest::collection::vec(ctx(), 3)) {
        agrees_with_rhai(&e, &ctxs)?;
    }
}

/// [`eval_ours`] and rhai agree on `e` in every context of `ctxs`.
fn agrees_with_rhai(e: &E, ctxs: &[Ctx]) -> Result<(), TestCaseError> {
    thread_local! {
        static ENGINE: rhai::Engine = rhai_engine();
    }
    let text = e.text();
    let ours = eval_ours(&text, ctxs)
        .unwrap_or_else(|err| panic!("generator bug: `{text}` does not compile: {err:?}"));
    ENGINE.with(|engine| -> Result<(), TestCaseError> {
        for (c, o) in ctxs.iter().zip(&ours) {
            let r = eval_rhai(engine, &text, c);
            prop_assert!(
                !matches!(r, Rhai::Other(_)),
                "rhai rejected `{}`: {:?}",
                text,
                r
            );
            prop_assert!(
                agree(o, &r),
                "`{}`\n  ours: {:?}\n  rhai: {:?}\n  context: {:?}",
                text,
                o,
                r,
                c
            );
        }
        Ok(())
    })
}

/// The generator is not degenerate: it produces deep conditions, and
/// true, false and errors all occur.
#[test]
fn generator_covers_true_false_and_errors() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = (condition(5), ctx());
    let (mut t, mut f, mut err, mut long) = (0, 0, 0, 0);
    for _ in 0..400 {
        let (e, c) = strat.new_tree(&mut runner).unwrap().current();
        let text = e.text();
        if text.len() > 60 {
            long += 1;
        }
        match ours1(&text, &c) {
            Ok(true) => t += 1,
            Ok(false) => f += 1,
            Err(_) => err += 1,
        }
    }
    assert!(
        t > 40 && f > 40 && err > 5 && long > 40,
        "true {t}, false {f}, errors {err}, long {long}"
    );
}

// ---------------------------------------------------------------------------
// Precedence and semantics, on both sides
// ---------------------------------------------------------------------------

fn both(text: &str, c: &Ctx) -> (Ours, Rhai) {
    (ours1(text, c), rhai1(text, c))
}

#[track_caller]
fn assert_both(text: &str, c: &Ctx, want: Ours) {
    let (o, r) = both(text, c);
    assert_eq!(o, want, "ours, `{text}`");
    assert!(agree(&o, &r), "`{text}`: ours {o:?}, rhai {r:?}");
}

#[test]
fn precedence_matches_rhai() {
    let c = Ctx::default();
    let cases = [
        ("1 + 2 * 3 == 7", true),
        ("(1 + 2) * 3 == 9", true),
        ("true || false && false", true),
        ("(true || false) && false", false),
        ("!true in [false]", true),
        ("!(true in [false])", true),
        ("!(true in [true])", false),
        ("1 < 2 == true", true),
        ("1 < 2 == 2 < 1", false),
        ("2 - 1 - 1 == 0", true),
        ("8 / 4 / 2 == 1", true),
        ("7 % 4 * 2 == 6", true),
        ("2 * 3 in [6]", true),
        ("1 in [1] in [true]", true),
        ("1 + 1 < 3 in [true]", true),
        ("false == false != false", true),
        ("-2 * -3 == 6", true),
        ("- 2 * 3 == -6", true),
        ("-abs(-3) == -3", true),
        ("1 - -1 == 2", true),
        ("false && 1 / 0 == 0 || true", true),
        ("!!true", true),
        ("1_000 == 1000", true),
        ("1e3 == 1000", true),
        ("1.5e3 == 1500", true),
        ("5 / 2 == 2", true),
        ("-5 / 2 == -2", true),
        ("-5 % 3 == -2", true),
        ("5.0 / 2 == 2.5", true),
    ];
    for (text, want) in cases {
        assert_both(text, &c, Ok(want));
    }
}

#[test]
fn errors_short_circuit_like_rhai() {
    let c = Ctx::default();
    assert_both("1 / 0 == 0", &c, Err(EvalError::DivisionByZero));
    assert_both("1 % 0 == 0", &c, Err(EvalError::DivisionByZero));
    assert_both("true || 1 / 0 == 0", &c, Ok(true));
    assert_both("false && 1 / 0 == 0", &c, Ok(false));
    // Conjuncts: the first non-true decides.
    assert_both("1 > 2 && 1 / 0 == 0", &c, Ok(false));
    assert_both(
        "1 < 2 && 1 / 0 == 0 && 1 > 2",
        &c,
        Err(EvalError::DivisionByZero),
    );
    assert_both("9223372036854775807 + 1 > 0", &c, Err(EvalError::Overflow));
    assert_both("-9223372036854775808 - 1 > 0", &c, Err(EvalError::Overflow));
    assert_both(
        "-9223372036854775808 / -1 > 0",
        &c,
        Err(EvalError::Overflow),
    );
    assert_both(
        "-9223372036854775808 % -1 == 0",
        &c,
        Err(EvalError::Overflow),
    );
    assert_both(
        "abs(-9223372036854775808) > 0",
        &c,
        Err(EvalError::Overflow),
    );
    assert_both("-9223372036854775808 < 0", &c, Ok(true));
    assert_both("3037000500 * 3037000500 > 0", &c, Err(EvalError::Overflow));
    // Float arithmetic never fails: it makes inf and NaN.
    assert_both("0.0 / 0.0 == 0.0 / 0.0", &c, Ok(false));
    assert_both("0.0 / 0.0 != 0.0 / 0.0", &c, Ok(false));
    assert_both("0.0 / 0.0 < 1", &c, Ok(false));
}

/// rhai's epsilon comparison divides the difference by the larger
/// magnitude; against an infinity that is inf/inf = NaN, so every ordering
/// with an infinite operand is false (and `==` too). Surprising, but it is
/// rhai's behaviour, and we match it.
#[test]
fn comparisons_with_infinity_are_false_like_rhai() {
    let c = Ctx::default();
    assert_both("1.0 / 0 > 1e308", &c, Ok(false));
    assert_both("1.0 / 0 <= 1e308", &c, Ok(false));
    assert_both("1.0 / -0.0 < 0", &c, Ok(false));
    assert_both("1.0 / 0 == 1.0 / 0", &c, Ok(false));
    assert_both("1.0 / 0 != 1.0 / 0", &c, Ok(false));
    assert_both("1e308 * 10 > 0", &c, Ok(false));
}

#[test]
fn attributes_functions_and_membership_match_rhai() {
    let c = Ctx {
        ints: [5, -7, i64::MAX, i64::MIN],
        floats: [2.5, -0.0, 1e300],
        bools: [true, false],
        strs: ["é".into(), "zz".into()],
        set: vec!["a".into(), "x".into()],
        t0: NOW - 3 * 86_400 - 1,
    };
    let cases = [
        ("i0 > 3 && i1 < 0", Ok(true)),
        ("i0 + i1 == -2", Ok(true)),
        ("i2 + 1 > 0", Err(EvalError::Overflow)),
        ("-i3 > 0", Err(EvalError::Overflow)),
        ("abs(i3) > 0", Err(EvalError::Overflow)),
        ("i0 / (i0 - 5) > 0", Err(EvalError::DivisionByZero)),
        ("min(i0, f0) == 2.5 && max(i0, f0) == 5", Ok(true)),
        ("f1 == 0 && 1 / f1 != 1 / f1", Ok(false)),
        ("f2 * f2 > 1e308", Ok(false)),
        ("f2 * 1e-300 == 1.0", Ok(true)),
        ("len(s0) == 1 && len(s1) == 2 && len(set0) == 2", Ok(true)),
        ("\"a\" in set0 && !(\"b\" in set0) && s1 != \"a\"", Ok(true)),
        ("s0 in [\"é\", \"a\"]", Ok(true)),
        ("s1 in [\"a\", \"b\"]", Ok(false)),
        ("s1 in set0", Ok(false)),
        ("days_since(t0) == 3 && hours_since(t0) == 72", Ok(true)),
        ("i0 in [1, 5.0, 7]", Ok(true)),
        ("3 in [1, 2.0, 3]", Ok(true)),
        ("f0 in [2, 2.5]", Ok(true)),
        ("b0 in [true] && b1 in [false] && !(b1 in [])", Ok(true)),
        ("t0 <= t0 && !(t0 < t0)", Ok(true)),
        (
            "i2 == 9223372036854775807 && i3 == -9223372036854775808",
            Ok(true),
        ),
    ];
    for (text, want) in cases {
        assert_both(text, &c, want);
    }
}

#[test]
fn days_since_rounds_toward_negative_infinity_and_overflows_like_rhai() {
    let mut c = Ctx {
        t0: NOW + 1,
        ..Ctx::default()
    };
    assert_both(
        "days_since(t0) == -1 && hours_since(t0) == -1",
        &c,
        Ok(true),
    );
    c.t0 = NOW;
    assert_both("days_since(t0) == 0 && hours_since(t0) == 0", &c, Ok(true));
    c.t0 = i64::MIN;
    assert_both("days_since(t0) > 0", &c, Err(EvalError::Overflow));
    c.t0 = i64::MAX;
    assert_both("days_since(t0) < 0", &c, Ok(true));
}

#[test]
fn float_comparisons_use_rhais_epsilon() {
    let c = Ctx::default();
    // 0.1 + 0.2 is 0.30000000000000004: equal under the relative epsilon.
    assert_both("0.1 + 0.2 == 0.3", &c, Ok(true));
    assert_both("0.1 + 0.2 <= 0.3", &c, Ok(true));
    assert_both("0.1 + 0.2 > 0.3", &c, Ok(false));
    assert_both("1.0 == 1.0000000000000002", &c, Ok(true));
    assert_both("1.0 == 1.000000000000001", &c, Ok(false));
    // Zero on one side: plain difference against epsilon.
    assert_both("0.0 == 1e-17", &c, Ok(true));
    assert_both("-0.0 == 0.0", &c, Ok(true));
    assert_both("0.0 >= 0.0 && 0.0 <= 0.0 && !(0.0 < 0.0)", &c, Ok(true));
}

/// An int compared with another int inside a list that also holds a float
/// must compare exactly, as rhai's `contains` calls `==` element by element
/// (int == int is exact). Ours converts every element to float and uses the
/// relative epsilon, so distinct large ints compare equal.
#[test]
fn int_in_mixed_list_compares_ints_exactly() {
    let c = Ctx::default();
    assert_both("9007199254740993 in [9007199254740992, 0.5]", &c, Ok(false));
    assert_both(
        "1000000000000000001 in [1000000000000000000, 0.5]",
        &c,
        Ok(false),
    );
    let c = Ctx {
        ints: [i64::MAX, 0, 0, 0],
        ..Ctx::default()
    };
    assert_both("i0 in [9223372036854775806, 2.5]", &c, Ok(false));
}

/// A known difference, on rhai's side: rhai folds the negation of a
/// literal at parse time and turns `-(-9223372036854775808)` (whose
/// negation does not fit an i64) into the float 9.2e18, where we keep an
/// int and report overflow at evaluation time.
#[test]
fn rhai_folds_negated_min_literal_into_a_float() {
    let c = Ctx::default();
    assert_eq!(
        ours1("-(-9223372036854775808) > 0", &c),
        Err(EvalError::Overflow)
    );
    assert_eq!(rhai1("-(-9223372036854775808) > 0", &c), Rhai::Bool(true));
    // Likewise `- 9223372036854775808` (with a space) is a float in rhai
    // (the literal does not fit an i64, so rhai lexes a float), and the
    // int i64::MIN here.
    assert_eq!(
        ours1("- 9223372036854775808 - 1 < 0", &c),
        Err(EvalError::Overflow)
    );
    assert_eq!(rhai1("- 9223372036854775808 - 1 < 0", &c), Rhai::Bool(true));
    // Without a sign, rhai lexes an out-of-range integer as a float; we reject it.
    assert!(matches!(
        rhai1("9223372036854775808 > 0", &c),
        Rhai::Bool(true)
    ));
}

// ---------------------------------------------------------------------------
// Compile errors: messages and spans
// ---------------------------------------------------------------------------

fn compile_err(text: &str) -> ParseError {
    match eval_ours(text, &[]) {
        Ok(_) => panic!("`{text}` compiled"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_err(text: &str, span: (usize, usize), message: &str) {
    let e = compile_err(text);
    assert_eq!(e.message, message, "message for `{text}`");
    assert_eq!(
        e.span,
        Span {
            start: span.0,
            end: span.1
        },
        "span for `{text}` (message {:?}), points at {:?}",
        e.message,
        text.get(e.span.start..e.span.end)
    );
}

#[test]
fn unknown_attribute_suggests_the_closest_name() {
    assert_err(
        "agee > 1",
        (0, 4),
        "unknown attribute `agee` (did you mean `age`?); declare it under [schema]",
    );
    assert_err(
        "age > 1 && incme > 2.0",
        (11, 16),
        "unknown attribute `incme` (did you mean `income`?); declare it under [schema]",
    );
    assert_err(
        "zzzzzz",
        (0, 6),
        "unknown attribute `zzzzzz`; declare it under [schema]",
    );
}

#[test]
fn type_mismatches_name_both_types() {
    assert_err(
        "age == \"x\"",
        (0, 10),
        "`==` cannot compare an int with a string",
    );
    assert_err(
        "segment > \"a\"",
        (0, 13),
        "`>` cannot order strings or bools; only `==` and `!=` compare them",
    );
    assert_err(
        "vip + 1 > 0",
        (0, 7),
        "`+` needs numbers on both sides, but has a bool and an int",
    );
    assert_err(
        "vip || age && vip",
        (7, 17),
        "`&&` needs bools on both sides, but has an int and a bool",
    );
    assert_err("!age", (0, 4), "`!` needs a bool, but this is an int");
    assert_err("-vip", (0, 4), "`-` needs a number, but this is a bool");
    assert_err(
        "age + 1",
        (0, 7),
        "a condition must be true or false, but this is an int; compare it, e.g. `x > 0`",
    );
    assert_err(
        "last_contact > 3",
        (0, 16),
        "`>` compares a timestamp with a number; use `days_since(t)` or `hours_since(t)` to get a number of days or hours",
    );
    assert_err(
        "1 in products",
        (0, 13),
        "only strings can be members of a string_set, but this is an int",
    );
    assert_err(
        "len(age) > 0",
        (4, 7),
        "`len` needs a string or a string_set, but this is an int",
    );
    assert_err(
        "days_since(age) > 0",
        (11, 14),
        "`days_since` needs a timestamp attribute, but this is an int",
    );
    assert_err(
        "age in [1, \"a\"]",
        (11, 14),
        "list element is not a number but the left of `in` is a number",
    );
    assert_err(
        "segment in [\"a\", 1]",
        (17, 18),
        "list element is an int but the left of `in` is a string",
    );
    assert_err(
        "segment in [age]",
        (12, 15),
        "list elements must be literals (numbers, strings, true or false)",
    );
    assert_err(
        "segment in segment",
        (11, 18),
        "the right of `in` must be a list literal `[...]` or a string_set attribute, but this is a string",
    );
}

#[test]
fn single_equals_is_rejected_with_a_hint() {
    assert_err(
        "age = 5",
        (4, 5),
        "`=` assigns; conditions compare with `==`",
    );
}

#[test]
fn unterminated_and_bad_strings() {
    assert_err(
        "segment == \"gold",
        (11, 16),
        "string is not closed: add a `\"`",
    );
    assert_err(
        "segment == \"go\nld\"",
        (11, 14),
        "string is not closed before the end of the line",
    );
    assert_err(
        "segment == 'gold'",
        (11, 12),
        "unexpected character `'` (strings use double quotes)",
    );
    assert_err(
        "segment == \"a\\qb\"",
        (13, 14),
        "unsupported escape in string; use \\\" \\\\ \\n \\t or \\r",
    );
}

#[test]
fn unknown_functions_and_wrong_arity() {
    assert_err(
        "lenn(segment) > 1",
        (0, 13),
        "unknown function `lenn` (did you mean `len`?); conditions may call `len`, `days_since`, `hours_since`, `min`, `max`, `abs`",
    );
    assert_err(
        "foo(age)",
        (0, 8),
        "unknown function `foo`; conditions may call `len`, `days_since`, `hours_since`, `min`, `max`, `abs`",
    );
    assert_err(
        "min(age) > 1",
        (0, 8),
        "`min` takes 2 arguments, but 1 was given",
    );
    assert_err(
        "abs(age, 1) > 1",
        (0, 11),
        "`abs` takes 1 argument, but 2 were given",
    );
    assert_err(
        "len() > 1",
        (0, 5),
        "`len` takes 1 argument, but 0 were given",
    );
}

#[test]
fn lists_only_on_the_right_of_in() {
    let msg =
        "a list may only appear on the right of `in`, e.g. `segment in [\"gold\", \"platinum\"]`";
    assert_err("age == [1, 2]", (7, 13), msg);
    assert_err("[1] in [1]", (0, 3), msg);
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}age > 1{}", "(".repeat(70), ")".repeat(70));
    let e = compile_err(&deep);
    assert_eq!(e.message, "condition is nested more than 64 levels deep");
    assert!(e.span.start <= 70, "{e:?}");
    let nots = format!("{}vip", "!".repeat(100));
    assert_eq!(
        compile_err(&nots).message,
        "condition is nested more than 64 levels deep"
    );
    let negs = format!("{}age > 1", "- ".repeat(100));
    assert_eq!(
        compile_err(&negs).message,
        "condition is nested more than 64 levels deep"
    );
    // Far from the limit: fine.
    let ok = format!("{}age > 1{}", "(".repeat(20), ")".repeat(20));
    assert!(eval_ours(&ok, &[]).is_ok());
    // Hostile input is an error, never a stack overflow.
    let huge = "(".repeat(15_000);
    assert_eq!(
        compile_err(&huge).message,
        "condition is nested more than 64 levels deep"
    );
    let long = "a".repeat(20_000);
    assert!(compile_err(&long)
        .message
        .starts_with("condition is 20000 bytes long"));
}

#[test]
fn integer_literals_out_of_range() {
    assert_err(
        "age > 9223372036854775808",
        (6, 25),
        "integer literal is out of range (at most 9223372036854775807)",
    );
    assert_err(
        "age > 99999999999999999999",
        (6, 26),
        "integer literal is out of range (-9223372036854775808..=9223372036854775807)",
    );
    assert_err(
        "age > 1e400",
        (6, 11),
        "float literal is out of range (it must be finite)",
    );
    assert_err(
        "age > 0x10",
        (6, 8),
        "malformed number (write floats as `1.5` or `1.5e3`; hex and suffixes are not allowed)",
    );
    // The most negative int is a literal, not a negation.
    assert!(eval_ours("age > -9223372036854775808", &[]).is_ok());
}

#[test]
fn empty_conditions() {
    assert_err("", (0, 0), "condition is empty");
    assert_err("   ", (3, 3), "condition is empty");
}

#[test]
fn syntax_errors_point_at_the_token() {
    assert_err(
        "age >",
        (5, 5),
        "expected a value, found the end of the condition",
    );
    assert_err(
        "age > 1 vip",
        (8, 11),
        "expected an operator or the end of the condition, found `vip`",
    );
    assert_err(
        "(age > 1",
        (8, 8),
        "expected `)`, found the end of the condition",
    );
    assert_err(
        "age > 1 // hi",
        (8, 10),
        "comments are not allowed in conditions",
    );
    assert_err(
        "segment.len() > 1",
        (7, 8),
        "unexpected character `.` (method calls are not allowed; write `len(x)`, not `x.len()`)",
    );
    assert_err(
        "vip & vip",
        (4, 5),
        "unexpected character `&` (use `&&` and `||`)",
    );
}

#[test]
fn conjuncts_are_split_at_top_level_and_with_spans() {
    let attrs = attrs();
    let lookup = Schema::new(attrs, Symbols::new());
    let mut symbols = Symbols::new();
    let text = "age > 1 && (vip || age < 0) && segment == \"gold\"";
    let cs = compile_condition(
        text,
        &mut Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        },
    )
    .unwrap();
    let texts: Vec<&str> = cs.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        vec!["age > 1", "(vip || age < 0)", "segment == \"gold\""]
    );
    for c in &cs {
        assert_eq!(&text[c.span.start..c.span.end], c.text);
    }
    // Same meaning, different spacing and parentheses: the same key.
    let again = compile_condition(
        "((age>1))",
        &mut Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        },
    )
    .unwrap();
    assert_eq!(again[0].key, cs[0].key);
}

/// The memo's flat int test at the edges of the range: every comparison
/// against the extreme constants (which the grammar cannot write as one
/// literal) agrees with the tree, and a missing attribute is never met.
#[test]
fn flat_int_tests_agree_with_the_tree_at_the_extremes() {
    use super::ir::CmpOp;
    let schema = Arc::new(Schema::new(attrs(), Symbols::new()));
    let edges = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    let slot = schema.slot("i0").expect("i0");
    let missing = Context::builder(&schema).build().expect("an empty context");
    for op in [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ] {
        for k in edges {
            let ir = BoolIr::CmpIntConst(op, slot, k);
            let test = Test::of(&ir, 0);
            assert!(matches!(test, Test::IntIn { .. }), "{op:?} {k}: {test:?}");
            let tree = tree(&ir, "i0");
            for v in edges {
                let ctx = bind(
                    &schema,
                    &Ctx {
                        ints: [v, 0, 0, 0],
                        ..Ctx::default()
                    },
                );
                assert_eq!(
                    test.met(&env(&ctx), &tree),
                    ir.met(env(&ctx)),
                    "i0 = {v}, {op:?} {k}"
                );
            }
            assert!(!test.met(&env(&missing), &tree), "missing, {op:?} {k}");
            assert_eq!(
                test.error(&env(&missing), &tree),
                Some(EvalError::Missing(slot)),
                "missing, {op:?} {k}"
            );
            assert!(!ir.met(env(&missing)), "missing, {op:?} {k}");
        }
    }
}

/// Compile `text` and check that each conjunct's flat form agrees with its
/// tree, on met and on the error, for every context `contexts` builds
/// (from the compiled schema). Returns the flat forms, so a caller can
/// check which shapes were exercised.
fn flat_agrees_with_tree(text: &str, contexts: impl Fn(&Arc<Schema>) -> Vec<Context>) -> Vec<Test> {
    let (conjuncts, schema) = compile(text).unwrap_or_else(|e| panic!("`{text}`: {e:?}"));
    // All of them batched, as the memo evaluates a rule version's.
    let trees: Vec<Cond> = conjuncts.iter().map(|c| cond(&c.ir, text)).collect();
    let batched = Tests::of(conjuncts.iter().map(|c| &c.ir));
    for ctx in contexts(&schema) {
        let env = env(&ctx);
        let mut words = vec![!0u64; crate::ruleset::policy::Memo::words(conjuncts.len())];
        batched.memo(&env, &trees, &mut words);
        for (id, conj) in (0u32..).zip(&conjuncts) {
            assert_eq!(
                words[id as usize / 64] & (1 << (id % 64)) != 0,
                conj.ir.eval(env) == Ok(true),
                "batched: {:?} of `{text}`",
                batched.get(id)
            );
        }
    }
    let mut tests = Vec::new();
    for conj in &conjuncts {
        let test = Test::of(&conj.ir, 0);
        let tree = tree(&conj.ir, text);
        for ctx in contexts(&schema) {
            let env = env(&ctx);
            assert_eq!(
                test.met(&env, &tree),
                conj.ir.eval(env) == Ok(true),
                "met: {test:?} of `{text}`"
            );
            assert_eq!(
                test.error(&env, &tree),
                conj.ir.eval(env).err(),
                "error: {test:?} of `{text}`"
            );
        }
        tests.push(test);
    }
    tests
}

/// Every flat shape, negated or not, on a context missing its attribute
/// and on one that has it: never met when missing, and the same error as
/// the tree (the attribute's slot).
#[test]
fn flat_shapes_agree_with_the_tree_when_the_attribute_is_missing() {
    let texts = [
        "i0 != 3",
        "i0 < 3",
        "f0 >= 1.5",
        "f0 != 1.5",
        "b0",
        "!b0",
        r#"s0 == "x""#,
        r#"s0 != "x""#,
        r#""x" in set0"#,
        r#"!("x" in set0)"#,
    ];
    for text in texts {
        let tests = flat_agrees_with_tree(text, |schema| {
            let missing = Context::builder(schema).build().expect("empty");
            let given = bind(
                schema,
                &Ctx {
                    ints: [3, 0, 0, 0],
                    floats: [1.5, 0.0, 0.0],
                    bools: [true, false],
                    strs: ["x".into(), String::new()],
                    set: vec!["x".into()],
                    ..Ctx::default()
                },
            );
            vec![missing, given]
        });
        assert!(
            tests.iter().all(|t| !matches!(t, Test::Tree(_))),
            "`{text}` should have a flat form: {tests:?}"
        );
    }
}

/// A set's symbol filter has 32 bits, so symbols 32 apart share one: a set
/// holding one of them is read for the other, and must still say no.
/// Every pair of 40 interned strings, as member and as probe.
#[test]
fn set_tests_agree_with_the_tree_when_filter_bits_collide() {
    let names: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    // Intern all 40 (a list literal), then test each against each set.
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    for probe in &names {
        let text = format!(r#"s0 in [{list}] && "{probe}" in set0 && !("{probe}" in set0)"#);
        let tests = flat_agrees_with_tree(&text, |schema| {
            names
                .iter()
                .map(|member| {
                    bind(
                        schema,
                        &Ctx {
                            set: vec![member.clone()],
                            ..Ctx::default()
                        },
                    )
                })
                .collect()
        });
        assert_eq!(
            tests
                .iter()
                .filter(|t| matches!(t, Test::SetHas { .. }))
                .count(),
            2,
            "{tests:?}"
        );
    }
}

/// Many conjuncts of every shape, interleaved, so that each shape's ids
/// cross the memo's word boundaries: the batched memo agrees with the
/// trees on every bit of every word.
#[test]
fn batched_memo_agrees_across_words_for_every_shape() {
    let mut parts = Vec::new();
    for k in 0..60 {
        parts.push(format!("i0 > {}", k - 30));
        parts.push(format!("f0 < {}.5", k - 30));
        parts.push(format!(r#"s0 == "x{k}""#));
        parts.push(format!(r#""y{k}" in set0"#));
        parts.push(format!("i1 + {k} > i2"));
        parts.push(format!(r#"!("z{k}" in set0)"#));
        parts.push(format!(r#"s1 != "w{k}""#));
        parts.push(format!(r#"s0 in ["x{}", "x{k}", "v"]"#, (k + 3) % 60));
    }
    parts.push("b0".into());
    parts.push("!b1".into());
    let text = parts.join(" && ");
    let tests = flat_agrees_with_tree(&text, |schema| {
        let mut out = vec![Context::builder(schema).build().expect("empty")];
        for k in [-40i64, -3, 0, 7, 29, 45] {
            out.push(bind(
                schema,
                &Ctx {
                    ints: [k, k * 2, 5, 0],
                    floats: [k as f64, 0.0, 0.0],
                    bools: [k % 2 == 0, k > 0],
                    strs: [
                        format!("x{}", k.rem_euclid(60)),
                        format!("w{}", (k * 7).rem_euclid(60)),
                    ],
                    set: vec![
                        format!("y{}", k.rem_euclid(60)),
                        format!("z{}", (k + 1).rem_euclid(60)),
                    ],
                    t0: NOW,
                },
            ));
        }
        out
    });
    assert!(tests.len() > 256, "{} conjuncts", tests.len());
}

// ---------------------------------------------------------------------------
// Affine value expressions
// ---------------------------------------------------------------------------

/// `text` compiled as a value expression against the differential schema.
fn compile_value(text: &str) -> (super::FloatIr, Arc<Schema>) {
    let attrs = attrs();
    let lookup = Schema::new(attrs.clone(), Symbols::new());
    let mut symbols = Symbols::new();
    let ir = super::compile_number(
        text,
        &mut Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        },
    )
    .unwrap_or_else(|e| panic!("`{text}` did not compile: {e:?}"));
    (ir, Arc::new(Schema::new(attrs, symbols)))
}

/// A context like [`bind`]'s without the attribute `missing`.
fn bind_without(schema: &Arc<Schema>, c: &Ctx, missing: &str) -> Context {
    let mut b = Context::builder(schema);
    for (i, v) in c.ints.iter().enumerate() {
        let name = format!("i{i}");
        if name != missing {
            b = b.set(&name, Value::Int(*v));
        }
    }
    for (i, v) in c.floats.iter().enumerate() {
        let name = format!("f{i}");
        if name != missing {
            b = b.set(&name, Value::Float(*v));
        }
    }
    b.build().expect("the test context matches the schema")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The affine form of `attr * k + c` (and `k * attr + c`) gives what
    /// the tree gives, bit for bit, on every context: infinities, NaN,
    /// signed zeros, subnormals, ints beyond 2^53, and a missing attribute.
    #[test]
    fn affine_values_equal_their_tree(
        attr in select(vec!["i0", "i1", "f0", "f1"]),
        k in float_literal(),
        c in float_literal(),
        swap in any::<bool>(),
        c_int in any::<bool>(),
        ctxs in proptest::collection::vec(ctx(), 4),
        drop_attr in any::<bool>(),
    ) {
        // An int constant term is converted at compile time, as rhai does.
        let c = if c_int { "3".to_string() } else { c };
        let text = if swap { format!("{k} * {attr} + {c}") } else { format!("{attr} * {k} + {c}") };
        let (ir, schema) = compile_value(&text);
        let Some(affine) = super::Affine::of(&ir) else {
            // Only a negative literal may be a negation, not a constant.
            prop_assert!(text.contains('-'), "`{text}` has no affine form: {ir:?}");
            return Ok(());
        };
        for (i, c) in ctxs.iter().enumerate() {
            let ctx = if drop_attr && i == 0 { bind_without(&schema, c, attr) } else { bind(&schema, c) };
            let tree = ir.eval(env(&ctx)).ok().map(f64::to_bits);
            prop_assert_eq!(affine.eval(&ctx).map(f64::to_bits), tree, "`{}` on {:?}", text, c);
        }
    }
}

#[test]
fn other_value_shapes_have_no_affine_form() {
    for text in [
        "f0 * 2.0 - 1.0",
        "f0 + 1.0",
        "f0 * 2.0",
        "f0 * f1 + 1.0",
        "1.0 + f0 * 2.0",
        "(f0 + 1.0) * 2.0 + 1.0",
        "i0 * 2 + 1",
        "t0 * 2.0 + 1.0",
    ] {
        let attrs = attrs();
        let lookup = Schema::new(attrs, Symbols::new());
        let mut symbols = Symbols::new();
        let Ok(ir) = super::compile_number(
            text,
            &mut Scope {
                attrs: &lookup,
                symbols: &mut symbols,
            },
        ) else {
            continue;
        };
        assert_eq!(super::Affine::of(&ir), None, "`{text}`: {ir:?}");
    }
    for text in [
        "f0 * 2.0 + 1.0",
        "2.0 * f0 + 1.0",
        "i0 * 0.5 + 3.0",
        "0.5 * i1 + 3",
    ] {
        let (ir, _) = compile_value(text);
        assert!(super::Affine::of(&ir).is_some(), "`{text}`: {ir:?}");
    }
}

// ---------------------------------------------------------------------------
// The memo's float comparisons against a constant
// ---------------------------------------------------------------------------

/// `x` moved `n` representable values up (down when negative), on the
/// number line (the two zeros are one point).
fn ulps(x: f64, n: i64) -> f64 {
    let b = x.to_bits() as i64;
    let ordered = if b < 0 { i64::MIN - b } else { b };
    let moved = ordered.saturating_add(n);
    f64::from_bits((if moved < 0 { i64::MIN - moved } else { moved }) as u64)
}

fn float_constant() -> BoxedStrategy<f64> {
    let band = 1.0 / (1u64 << 20) as f64;
    prop_oneof![
        4 => any::<f64>(),
        2 => -10.0..10.0f64,
        2 => select(vec![
            0.0, -0.0, 1.0, -1.0, 0.7, 2.5, 1e-300, 5e-324, -5e-324, 1e300, f64::MAX, -f64::MAX,
            f64::MIN_POSITIVE, band, -band, ulps(band, -1), ulps(-band, 1), 2.220446049250313e-16,
            f64::INFINITY, f64::NEG_INFINITY, f64::NAN,
        ]),
    ]
    .boxed()
}

/// A value for comparing with `k`: mostly near it (relative steps of every
/// scale, a few representable values away, the band's edges), and the
/// values every comparison treats specially.
fn value_near(k: f64) -> BoxedStrategy<f64> {
    let band = 1.0 / (1u64 << 20) as f64;
    let (lo, hi) = (k - k.abs() * band, k + k.abs() * band);
    prop_oneof![
        3 => (0u32..70, any::<bool>()).prop_map(move |(e, down)| {
            let d = 1.0 / 2f64.powi(e as i32);
            k * if down { 1.0 - d } else { 1.0 + d }
        }),
        2 => (-40i64..=40).prop_map(move |n| ulps(k, n)),
        2 => (select(vec![lo, hi]), -3i64..=3).prop_map(|(edge, n)| ulps(edge, n)),
        2 => any::<f64>(),
        1 => select(vec![
            0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, f64::MAX, -f64::MAX, 5e-324,
            -5e-324, 2.220446049250313e-16, -2.220446049250313e-16,
        ]),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// The memo's float test answers most values without rhai's division:
    /// it must still answer every value exactly as rhai's comparison does.
    #[test]
    fn float_tests_equal_rhais_comparison(
        (k, x) in float_constant().prop_flat_map(|k| (Just(k), value_near(k))),
        op in select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge]),
    ) {
        let test = FloatTest::new(0, 0, op, k);
        prop_assert_eq!(
            test.met(&Slot::Float(x)),
            cmp_float(op, x, k),
            "{:?} {:?} {:?}", x, op, k
        );
    }
}
