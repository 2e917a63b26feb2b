//! The types scripts see: the customer (read-only, getters per schema
//! attribute, no map built per call) and a candidate (getters, setters for
//! P, C, V and L, and `exclude`).

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, NativeCallContext, INT};

use crate::base::Sym;
use crate::context::{Context, Slot};

/// The customer of the running decision, shared with the script, and the
/// rule version's interned strings as rhai strings (so reading a string the
/// rules mention costs a reference count, not an allocation).
#[derive(Clone)]
pub(crate) struct Customer(pub Arc<Context>, pub Arc<[ImmutableString]>);

impl Customer {
    fn get(&self, slot: u16) -> Dynamic {
        let (raw, texts, set_items) = self.0.raw(slot);
        let string = |sym: Sym, t: u32| match self.1.get(sym as usize) {
            Some(s) if sym != 0 => s.clone(),
            _ => ImmutableString::from(texts.get(t)),
        };
        match *raw {
            Slot::Missing => Dynamic::UNIT,
            Slot::Int(v) => Dynamic::from_int(v),
            Slot::Float(v) => Dynamic::from_float(v),
            Slot::Bool(v) => Dynamic::from_bool(v),
            Slot::Str(sym, t) => Dynamic::from(string(sym, t)),
            Slot::Set(start, len, _) => Dynamic::from_array(
                set_items[start as usize..(start + len) as usize]
                    .iter()
                    .map(|&(sym, t)| Dynamic::from(string(sym, t)))
                    .collect(),
            ),
            Slot::Time(t) => Dynamic::from_int(t),
        }
    }
}

/// A candidate that passed the engagement policies.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// The action's index in the rule version (scripts cannot set it).
    pub action: u32,
    pub id: ImmutableString,
    pub group: ImmutableString,
    pub issue: ImmutableString,
    pub propensity: f64,
    pub context_weight: f64,
    pub value: f64,
    pub lever: f64,
    pub excluded: Option<ImmutableString>,
}

impl Candidate {
    pub(crate) fn priority(&self) -> f64 {
        self.propensity * self.context_weight * self.value * self.lever
    }
}

fn number(v: Dynamic) -> Result<f64, Box<EvalAltResult>> {
    if let Ok(f) = v.as_float() {
        return Ok(f);
    }
    if let Ok(i) = v.as_int() {
        return Ok(i as f64);
    }
    Err(format!("expected a number, got {}", v.type_name()).into())
}

/// `value in array`: `same` answers for the elements it knows (of the
/// value's own type); the others are compared by rhai's `==`, with the
/// package's rule for types without one (false across types, an error
/// within a type).
fn contains(
    ctx: NativeCallContext,
    array: &mut Array,
    value: Dynamic,
    same: impl Fn(&Dynamic) -> Option<bool>,
) -> Result<bool, Box<EvalAltResult>> {
    for item in array.iter_mut() {
        let equal = match same(item) {
            Some(e) => e,
            None => ctx
                .call_native_fn_raw("==", true, &mut [item, &mut value.clone()])
                .or_else(|err| match *err {
                    EvalAltResult::ErrorFunctionNotFound(ref sig, ..)
                        if sig.starts_with("==") && item.type_id() != value.type_id() =>
                    {
                        Ok(Dynamic::FALSE)
                    }
                    _ => Err(err),
                })?
                .as_bool()
                .unwrap_or(false),
        };
        if equal {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `days_since` and `hours_since`: whole units from `t` to the decision
/// time, which every hook call carries as its tag (see `HookRun::call`).
fn since(ctx: &NativeCallContext, t: INT, unit: INT) -> Result<INT, Box<EvalAltResult>> {
    let now = ctx
        .tag()
        .and_then(|tag| tag.as_int().ok())
        .ok_or("the decision time is not set")?;
    now.checked_sub(t)
        .map(|d| d.div_euclid(unit))
        .ok_or_else(|| "timestamp arithmetic overflowed".into())
}

/// Register the script-facing types on `engine`; `attributes` are the
/// schema's attribute names in slot order.
pub(crate) fn register(engine: &mut rhai::Engine, attributes: &[Arc<str>]) {
    engine.register_type_with_name::<Customer>("Customer");
    for (i, name) in attributes.iter().enumerate() {
        let slot = i as u16;
        engine.register_get(name, move |c: &mut Customer| c.get(slot));
    }
    engine.register_indexer_get(|c: &mut Customer, name: ImmutableString| -> Dynamic {
        match c.0.schema.slot(&name) {
            Some(slot) => c.get(slot),
            None => Dynamic::UNIT,
        }
    });
    engine.register_fn("has", |c: &mut Customer, name: ImmutableString| -> bool {
        c.0.schema
            .slot(&name)
            .is_some_and(|s| c.0.value(s).is_some())
    });

    engine.register_type_with_name::<Candidate>("Candidate");
    engine.register_get("id", |c: &mut Candidate| c.id.clone());
    engine.register_get("action", |c: &mut Candidate| c.id.clone());
    engine.register_get("group", |c: &mut Candidate| c.group.clone());
    engine.register_get("issue", |c: &mut Candidate| c.issue.clone());
    engine.register_get("priority", |c: &mut Candidate| c.priority());
    engine.register_get("excluded", |c: &mut Candidate| c.excluded.is_some());
    engine.register_get("propensity", |c: &mut Candidate| c.propensity);
    engine.register_get("context_weight", |c: &mut Candidate| c.context_weight);
    engine.register_get("value", |c: &mut Candidate| c.value);
    engine.register_get("lever", |c: &mut Candidate| c.lever);
    engine.register_set(
        "propensity",
        |c: &mut Candidate, v: Dynamic| -> Result<(), Box<EvalAltResult>> {
            c.propensity = number(v)?;
            Ok(())
        },
    );
    engine.register_set(
        "context_weight",
        |c: &mut Candidate, v: Dynamic| -> Result<(), Box<EvalAltResult>> {
            c.context_weight = number(v)?;
            Ok(())
        },
    );
    engine.register_set(
        "value",
        |c: &mut Candidate, v: Dynamic| -> Result<(), Box<EvalAltResult>> {
            c.value = number(v)?;
            Ok(())
        },
    );
    engine.register_set(
        "lever",
        |c: &mut Candidate, v: Dynamic| -> Result<(), Box<EvalAltResult>> {
            c.lever = number(v)?;
            Ok(())
        },
    );
    engine.register_fn("exclude", |c: &mut Candidate, reason: ImmutableString| {
        c.excluded = Some(reason);
    });

    register_contains(engine);

    // The condition language's functions, under the same names.
    engine.register_fn("days_since", |ctx: NativeCallContext, t: INT| {
        since(&ctx, t, 86_400)
    });
    engine.register_fn("hours_since", |ctx: NativeCallContext, t: INT| {
        since(&ctx, t, 3_600)
    });
}

/// `x in array` for the common element types without a function call per
/// element (rhai's own `contains` resolves and calls `==` for each one,
/// ~900 instructions an element). Elements of another type fall back to
/// rhai's `==`, so the result is the same as the package's.
fn register_contains(engine: &mut rhai::Engine) {
    engine.register_fn(
        "contains",
        |ctx: NativeCallContext, array: &mut Array, value: ImmutableString| {
            contains(ctx, array, value.clone().into(), |item| {
                item.read_lock::<ImmutableString>().map(|s| *s == value)
            })
        },
    );
    engine.register_fn(
        "contains",
        |ctx: NativeCallContext, array: &mut Array, value: INT| {
            contains(ctx, array, value.into(), |item| {
                item.as_int().ok().map(|i| i == value)
            })
        },
    );
    engine.register_fn(
        "contains",
        |ctx: NativeCallContext, array: &mut Array, value: bool| {
            contains(ctx, array, value.into(), |item| {
                item.as_bool().ok().map(|b| b == value)
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rhai::packages::Package;

    fn engine(fast: bool) -> rhai::Engine {
        let mut e = rhai::Engine::new_raw();
        for pkg in [
            rhai::packages::LanguageCorePackage::new().as_shared_module(),
            rhai::packages::ArithmeticPackage::new().as_shared_module(),
            rhai::packages::LogicPackage::new().as_shared_module(),
            rhai::packages::BasicStringPackage::new().as_shared_module(),
            rhai::packages::BasicArrayPackage::new().as_shared_module(),
        ] {
            e.register_global_module(pkg);
        }
        if fast {
            super::register_contains(&mut e);
        }
        e
    }

    fn literal() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["\"a\"", "\"b\"", "\"\"", "\"ab\""]).prop_map(String::from),
            (-2i64..3).prop_map(|i| i.to_string()),
            prop::sample::select(vec!["1.0", "2.5", "-0.0", "0.0"]).prop_map(String::from),
            prop::sample::select(vec!["true", "false", "'a'", "()", "[\"a\"]", "#{}"])
                .prop_map(String::from),
        ]
    }

    proptest! {
        /// The fast `in` answers as rhai's own on arrays of mixed types:
        /// the same truth value, or an error in both.
        #[test]
        fn fast_in_equals_rhai_in(
            items in prop::collection::vec(literal(), 0..6),
            value in literal(),
        ) {
            let script = format!("{value} in [{}]", items.join(", "));
            let fast = engine(true).eval::<bool>(&script).map_err(|e| e.to_string());
            let slow = engine(false).eval::<bool>(&script).map_err(|e| e.to_string());
            prop_assert_eq!(fast.is_ok(), slow.is_ok(), "{}: {:?} vs {:?}", script, fast, slow);
            if let (Ok(f), Ok(s)) = (fast, slow) {
                prop_assert_eq!(f, s, "{}", script);
            }
        }
    }
}
