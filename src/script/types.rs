//! The types scripts see: the customer (read-only, getters per schema
//! attribute, no map built per call) and a candidate (getters, setters for
//! P, C, V and L, and `exclude`).

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, ImmutableString, INT};

use crate::context::{Context, Slot};
use crate::expr::Sym;
use crate::Schema;

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
            Slot::Set(start, len) => Dynamic::from_array(
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

    /// Scores a script may set: finite, P in [0, 1], C and L not negative.
    pub(crate) fn check(&self) -> Result<(), String> {
        let ok = (0.0..=1.0).contains(&self.propensity)
            && self.context_weight.is_finite()
            && self.context_weight >= 0.0
            && self.value.is_finite()
            && self.lever.is_finite()
            && self.lever >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "set an invalid score for `{}`: propensity {} (must be in [0, 1]), context_weight {}, value {}, lever {} (finite; C and L not negative)",
                self.id, self.propensity, self.context_weight, self.value, self.lever
            ))
        }
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

fn since(t: INT, unit: INT) -> Result<INT, Box<EvalAltResult>> {
    super::now()
        .checked_sub(t)
        .map(|d| d.div_euclid(unit))
        .ok_or_else(|| "timestamp arithmetic overflowed".into())
}

pub(crate) fn register(engine: &mut rhai::Engine, schema: &Schema) {
    engine.register_type_with_name::<Customer>("Customer");
    for (i, attr) in schema.attributes().iter().enumerate() {
        let slot = i as u16;
        engine.register_get(attr.name(), move |c: &mut Customer| c.get(slot));
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

    // The condition language's functions, under the same names.
    engine.register_fn("days_since", |t: INT| since(t, 86_400));
    engine.register_fn("hours_since", |t: INT| since(t, 3_600));
}
