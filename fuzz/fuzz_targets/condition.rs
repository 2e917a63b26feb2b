//! A condition from arbitrary text, compiled against the fuzzing schema and
//! evaluated (never a panic), and differentially: whenever both nextbest
//! and rhai evaluate the same text to a bool, the bools are equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::fuzzing::{eval_condition, CondResult};
use nextbest::Value;
use rhai::{Dynamic, EvalAltResult, ImmutableString, INT};

const NOW: i64 = 1_795_428_000;

fn since(t: INT, unit: INT) -> Result<INT, Box<EvalAltResult>> {
    NOW.checked_sub(t)
        .map(|d| d.div_euclid(unit))
        .ok_or_else(|| {
            EvalAltResult::ErrorArithmetic("overflow".into(), rhai::Position::NONE).into()
        })
}

fn rhai_engine() -> rhai::Engine {
    use rhai::packages::Package;
    let mut e = rhai::Engine::new_raw();
    rhai::packages::StandardPackage::new().register_into_engine(&mut e);
    e.set_optimization_level(rhai::OptimizationLevel::None);
    e.set_max_operations(100_000);
    e.set_max_expr_depths(64, 64);
    e.set_max_call_levels(16);
    e.set_max_string_size(10_000);
    e.set_max_array_size(1_000);
    e.register_fn("days_since", |t: INT| since(t, 86_400));
    e.register_fn("hours_since", |t: INT| since(t, 3_600));
    e
}

fuzz_target!(|data: &[u8]| {
    // The first 16 bytes, when there are enough, set i0 and i1.
    let (i0, i1, text) = if data.len() >= 16 {
        (
            i64::from_le_bytes(data[..8].try_into().unwrap()),
            i64::from_le_bytes(data[8..16].try_into().unwrap()),
            &data[16..],
        )
    } else {
        (5, -3, data)
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if text.len() > 2_000 {
        return;
    }
    let t0 = NOW - 3 * 86_400 - 7;
    let values = [
        ("b0", Value::Bool(true)),
        ("f0", Value::Float(2.5)),
        ("f1", Value::Float(0.0)),
        ("i0", Value::Int(i0)),
        ("i1", Value::Int(i1)),
        ("s0", Value::String("gold".into())),
        ("set0", Value::StringSet(vec!["A".into(), "B".into()])),
        ("t0", Value::Timestamp(nextbest::Timestamp(t0))),
    ];
    let ours = eval_condition(text, &values, NOW);
    let CondResult::Value(ours) = ours else {
        return;
    };
    let engine = rhai_engine();
    let mut scope = rhai::Scope::new();
    scope.push("b0", true);
    scope.push("f0", 2.5 as rhai::FLOAT);
    scope.push("f1", 0.0 as rhai::FLOAT);
    scope.push("i0", i0 as INT);
    scope.push("i1", i1 as INT);
    scope.push("s0", ImmutableString::from("gold"));
    let set: rhai::Array = ["A", "B"]
        .iter()
        .map(|s| Dynamic::from(ImmutableString::from(*s)))
        .collect();
    scope.push("set0", set);
    scope.push("t0", t0 as INT);
    if let Ok(v) = engine.eval_expression_with_scope::<Dynamic>(&mut scope, text) {
        if let Ok(theirs) = v.as_bool() {
            assert_eq!(ours, theirs, "`{text}` with i0 = {i0}, i1 = {i1}");
        }
    }
});
