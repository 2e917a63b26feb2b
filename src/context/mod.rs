//! The customer context of one decision, bound to a rule set's schema.
//!
//! A [`Context`] stores one typed slot per schema attribute, with strings
//! already interned, so evaluating a condition never looks a name up or
//! compares text. It is built once per request (from Rust with
//! [`ContextBuilder`] or from JSON) and read by every condition of the
//! decision. A context built for one schema is rebound by name if the
//! engine has moved to a version with a different schema.

pub(crate) mod schema;

use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::base::{AttrType, Error, EvalError, Sym, Timestamp, Value};
use schema::Schema;

/// A slot with the context's text store and set items (see [`Slot`]).
pub(crate) type RawSlot<'a> = (&'a Slot, &'a Texts, &'a [(Sym, u32)]);

/// A context's strings in one buffer (so cloning a context, which the
/// decision log does for every decision, costs one allocation for all of
/// them rather than one each).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Texts {
    buf: String,
    ends: Vec<u32>,
}

impl Texts {
    /// Add `s`; returns its number.
    pub(crate) fn push(&mut self, s: &str) -> u32 {
        self.buf.push_str(s);
        self.ends.push(self.buf.len() as u32);
        self.ends.len() as u32 - 1
    }

    /// How many strings.
    pub(crate) fn len(&self) -> u32 {
        self.ends.len() as u32
    }

    /// String number `t`'s bytes (no check that its ends are character
    /// boundaries, which they are).
    #[inline]
    pub(crate) fn bytes(&self, t: u32) -> &[u8] {
        let t = t as usize;
        let start = if t == 0 { 0 } else { self.ends[t - 1] as usize };
        &self.buf.as_bytes()[start..self.ends[t] as usize]
    }

    /// String number `t`.
    #[inline]
    pub(crate) fn get(&self, t: u32) -> &str {
        let t = t as usize;
        let start = if t == 0 { 0 } else { self.ends[t - 1] as usize };
        &self.buf[start..self.ends[t] as usize]
    }
}

/// A set's filter bit for interned symbol `sym` (0, a string no rule
/// mentions, has none: nothing tests for it by symbol).
#[inline]
fn sym_bit(sym: Sym) -> u32 {
    if sym == 0 {
        0
    } else {
        1 << (sym % 32)
    }
}

/// One typed slot. Strings and set members point into the context's text
/// storage; their symbols are precomputed. `Copy`, so that copying a
/// context's slots (as a decision does for derived attributes and
/// predictive models) is one `memcpy`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Slot {
    Missing,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Symbol and index into `texts`.
    Str(Sym, u32),
    /// Range into `set_items` (start, length), and a filter of the
    /// members' symbols: bit `sym % 32` of each interned member (see
    /// [`Context::set_has_sym`]).
    Set(u32, u32, u32),
    Time(i64),
}

/// A customer context bound to a schema. Build one with
/// [`Context::builder`] or [`Context::from_json`].
pub struct Context {
    pub(crate) schema: Arc<Schema>,
    pub(crate) slots: Vec<Slot>,
    /// Which slots the caller set (defaults are not "given").
    pub(crate) given: Vec<bool>,
    texts: Texts,
    /// Schema-default set and string values live in `texts` too.
    set_items: Vec<(Sym, u32)>,
}

impl Clone for Context {
    fn clone(&self) -> Context {
        Context {
            schema: self.schema.clone(),
            slots: self.slots.clone(),
            given: self.given.clone(),
            texts: self.texts.clone(),
            set_items: self.set_items.clone(),
        }
    }

    /// A copy in `self`'s buffers (a decision's derived attributes go into
    /// a copy of the customer's context, reused from decision to decision).
    fn clone_from(&mut self, source: &Context) {
        // Destructured, so that a new field cannot be left out.
        let Context {
            schema,
            slots,
            given,
            texts: Texts { buf, ends },
            set_items,
        } = source;
        // `Arc::clone_from` would count a reference up and one down even
        // for the same schema: two writes to a line other threads read.
        if !Arc::ptr_eq(&self.schema, schema) {
            self.schema = schema.clone();
        }
        self.slots.clone_from(slots);
        self.given.clone_from(given);
        self.texts.buf.clone_from(buf);
        self.texts.ends.clone_from(ends);
        self.set_items.clone_from(set_items);
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (i, a) in self.schema.attrs.iter().enumerate() {
            if let Some(v) = self.value(i as u16) {
                m.entry(&a.name, &v);
            }
        }
        m.finish()
    }
}

impl Context {
    /// Start building a context for `schema` (see [`crate::Engine::schema`]).
    pub fn builder(schema: &Arc<Schema>) -> ContextBuilder {
        ContextBuilder {
            ctx: Context::empty(schema),
            error: None,
        }
    }

    pub(crate) fn empty(schema: &Arc<Schema>) -> Context {
        let mut ctx = Context {
            schema: schema.clone(),
            slots: vec![Slot::Missing; schema.attrs.len()],
            given: vec![false; schema.attrs.len()],
            texts: Texts::default(),
            set_items: Vec::new(),
        };
        for (i, a) in schema.attrs.iter().enumerate() {
            if let Some(v) = &a.default_value {
                // Defaults were validated against the schema when it loaded.
                let _ = ctx.put(i as u16, v.clone());
            }
        }
        ctx.given.iter_mut().for_each(|g| *g = false);
        ctx
    }

    /// Bind a JSON object (`{"age": 42, ...}`) to `schema`. Attributes the
    /// schema does not declare are ignored (a request parsed with
    /// [`crate::DecisionRequest::from_json`] lists them as warnings);
    /// `null` means missing.
    pub fn from_json(
        schema: &Arc<Schema>,
        json: &serde_json::Map<String, Json>,
    ) -> Result<Context, Error> {
        let mut ctx = Context::empty(schema);
        for (name, v) in json {
            let Some(slot) = schema.slot(name) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let attr = &schema.attrs[slot as usize];
            let value = json_value(attr.ty, v).map_err(|m| Error::InvalidContext {
                attribute: name.clone(),
                message: m,
            })?;
            ctx.put(slot, value).map_err(|m| Error::InvalidContext {
                attribute: name.clone(),
                message: m,
            })?;
        }
        Ok(ctx)
    }

    /// The schema this context is bound to.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The value of attribute `name`, if set (or defaulted).
    pub fn get(&self, name: &str) -> Option<Value> {
        self.value(self.schema.slot(name)?)
    }

    /// The bytes its buffers hold (their capacities).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.given.capacity()
            + self.texts.buf.capacity()
            + self.texts.ends.capacity() * 4
            + self.set_items.capacity() * std::mem::size_of::<(Sym, u32)>()
    }

    /// Its values emptied, its buffers kept (for [`Clone::clone_from`]).
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.given.clear();
        self.texts.buf.clear();
        self.texts.ends.clear();
        self.set_items.clear();
    }

    /// The raw slot, and the stores its strings and set items index.
    pub(crate) fn raw(&self, slot: u16) -> RawSlot<'_> {
        (&self.slots[slot as usize], &self.texts, &self.set_items)
    }

    pub(crate) fn value(&self, slot: u16) -> Option<Value> {
        Some(match &self.slots[slot as usize] {
            Slot::Missing => return None,
            Slot::Int(v) => Value::Int(*v),
            Slot::Float(v) => Value::Float(*v),
            Slot::Bool(v) => Value::Bool(*v),
            Slot::Str(_, t) => Value::String(self.texts.get(*t).to_string()),
            Slot::Set(start, len, _) => Value::StringSet(
                self.set_items[*start as usize..(*start + *len) as usize]
                    .iter()
                    .map(|(_, t)| self.texts.get(*t).to_string())
                    .collect(),
            ),
            Slot::Time(t) => Value::Timestamp(Timestamp(*t)),
        })
    }

    /// This context as `schema` reads it: itself when it is bound to
    /// `schema` already, else [`Context::rebind`]'s copy.
    pub(crate) fn bound_to(&self, schema: &Arc<Schema>) -> std::borrow::Cow<'_, Context> {
        if self.schema.fingerprint == schema.fingerprint {
            std::borrow::Cow::Borrowed(self)
        } else {
            std::borrow::Cow::Owned(self.rebind(schema))
        }
    }

    /// The same context bound to another schema, by attribute name; values
    /// whose attribute is gone or changed type are dropped.
    pub(crate) fn rebind(&self, schema: &Arc<Schema>) -> Context {
        let mut ctx = Context::empty(schema);
        for (i, a) in self.schema.attrs.iter().enumerate() {
            if !self.given[i] {
                continue;
            }
            if let (Some(slot), Some(v)) = (schema.slot(&a.name), self.value(i as u16)) {
                let _ = ctx.put(slot, v);
            }
        }
        ctx
    }

    /// [`Context::put`] for a string attribute, from a borrowed string.
    pub(crate) fn put_str(&mut self, slot: u16, s: &str) -> Result<(), String> {
        let attr = &self.schema.attrs[slot as usize];
        debug_assert_eq!(attr.ty, AttrType::String);
        if let Some(values) = &attr.values {
            if !values.iter().any(|v| **v == *s) {
                return Err(format!(
                    "`{s}` is not one of the allowed values {}",
                    crate::base::util::list(values)
                ));
            }
        }
        let sym = self.schema.symbols.get(s);
        let t = self.texts.push(s);
        self.slots[slot as usize] = Slot::Str(sym, t);
        self.given[slot as usize] = true;
        Ok(())
    }

    /// [`Context::put`] for a string-set attribute, from borrowed strings.
    pub(crate) fn put_set<S: AsRef<str>>(&mut self, slot: u16, items: &[S]) {
        debug_assert_eq!(self.schema.attrs[slot as usize].ty, AttrType::StringSet);
        let start = self.set_items.len() as u32;
        // Duplicates are dropped (first occurrence kept): a scan for small
        // sets, a hash set for large ones (linear, so a huge hostile set
        // costs its size, not its square).
        let mut seen = rustc_hash::FxHashSet::default();
        for (i, item) in items.iter().enumerate() {
            let item = item.as_ref();
            let dup = if items.len() <= 16 {
                items[..i].iter().any(|x| x.as_ref() == item)
            } else {
                !seen.insert(item)
            };
            if dup {
                continue;
            }
            let sym = self.schema.symbols.get(item);
            let t = self.texts.push(item);
            self.set_items.push((sym, t));
        }
        let filter = self.set_items[start as usize..]
            .iter()
            .fold(0u32, |f, &(sym, _)| f | sym_bit(sym));
        self.slots[slot as usize] = Slot::Set(start, self.set_items.len() as u32 - start, filter);
        self.given[slot as usize] = true;
    }

    /// Make the attribute in `slot` missing (its default does not apply:
    /// a derived attribute whose `derive` failed is unknown, not default).
    pub(crate) fn unset(&mut self, slot: u16) {
        self.slots[slot as usize] = Slot::Missing;
        self.given[slot as usize] = false;
    }

    /// Set the float attribute in `slot` (a predictive model's score; the
    /// slot's type was checked when the rule set loaded).
    #[inline]
    pub(crate) fn put_float(&mut self, slot: u16, v: f64) {
        debug_assert_eq!(self.schema.attrs[slot as usize].ty, AttrType::Float);
        self.slots[slot as usize] = Slot::Float(v);
        self.given[slot as usize] = true;
    }

    pub(crate) fn put(&mut self, slot: u16, value: Value) -> Result<(), String> {
        let attr = &self.schema.attrs[slot as usize];
        let s = match (attr.ty, value) {
            (AttrType::Int, Value::Int(v)) => Slot::Int(v),
            (AttrType::Float, Value::Float(v)) => Slot::Float(v),
            (AttrType::Float, Value::Int(v)) => Slot::Float(v as f64),
            (AttrType::Bool, Value::Bool(v)) => Slot::Bool(v),
            (AttrType::Timestamp, Value::Timestamp(t)) => Slot::Time(t.0),
            (AttrType::String, Value::String(s)) => return self.put_str(slot, &s),
            (AttrType::StringSet, Value::StringSet(items)) => {
                self.put_set(slot, &items);
                return Ok(());
            }
            (ty, v) => {
                return Err(format!(
                    "expected {}, got {}",
                    ty.name(),
                    describe_value(&v)
                ))
            }
        };
        self.slots[slot as usize] = s;
        self.given[slot as usize] = true;
        Ok(())
    }

    // Readers used by compiled conditions. Types were checked when the
    // condition compiled and when the slot was set, so anything but the
    // expected variant is a missing attribute.

    #[inline]
    pub(crate) fn int(&self, slot: u16) -> Result<i64, EvalError> {
        match self.slots[slot as usize] {
            Slot::Int(v) => Ok(v),
            _ => Err(EvalError::Missing(slot)),
        }
    }

    #[inline]
    pub(crate) fn float(&self, slot: u16) -> Result<f64, EvalError> {
        match self.slots[slot as usize] {
            Slot::Float(v) => Ok(v),
            _ => Err(EvalError::Missing(slot)),
        }
    }

    #[inline]
    pub(crate) fn bool(&self, slot: u16) -> Result<bool, EvalError> {
        match self.slots[slot as usize] {
            Slot::Bool(v) => Ok(v),
            _ => Err(EvalError::Missing(slot)),
        }
    }

    #[inline]
    pub(crate) fn time(&self, slot: u16) -> Result<i64, EvalError> {
        match self.slots[slot as usize] {
            Slot::Time(v) => Ok(v),
            _ => Err(EvalError::Missing(slot)),
        }
    }

    #[inline]
    pub(crate) fn str_sym(&self, slot: u16) -> Result<Sym, EvalError> {
        match self.slots[slot as usize] {
            Slot::Str(sym, _) => Ok(sym),
            _ => Err(EvalError::Missing(slot)),
        }
    }

    #[inline]
    pub(crate) fn str(&self, slot: u16) -> Result<(Sym, &str), EvalError> {
        match self.slots[slot as usize] {
            Slot::Str(sym, t) => Ok((sym, self.texts.get(t))),
            _ => Err(EvalError::Missing(slot)),
        }
    }

    /// Whether the set in `slot` holds interned symbol `sym` (not 0);
    /// `None` when the attribute is missing.
    #[inline]
    pub(crate) fn set_has_sym(&self, slot: u16, sym: Sym) -> Option<bool> {
        debug_assert_ne!(sym, 0, "symbol 0 is not tested by symbol");
        match self.slots[slot as usize] {
            // Most tests are of symbols the set does not hold: its filter
            // answers those without reading the members.
            Slot::Set(_, _, filter) if filter & sym_bit(sym) == 0 => Some(false),
            Slot::Set(start, len, _) => Some(
                self.set_items[start as usize..(start + len) as usize]
                    .iter()
                    .any(|(s, _)| *s == sym),
            ),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn set_contains(&self, slot: u16, sym: Sym, text: &str) -> Result<bool, EvalError> {
        if sym != 0 {
            return self.set_has_sym(slot, sym).ok_or(EvalError::Missing(slot));
        }
        match self.slots[slot as usize] {
            Slot::Set(start, len, _) => Ok(self.set_items[start as usize..(start + len) as usize]
                .iter()
                .any(|(s, t)| *s == 0 && self.texts.get(*t) == text)),
            _ => Err(EvalError::Missing(slot)),
        }
    }

    #[inline]
    pub(crate) fn set_len(&self, slot: u16) -> Result<i64, EvalError> {
        match self.slots[slot as usize] {
            Slot::Set(_, len, _) => Ok(len as i64),
            _ => Err(EvalError::Missing(slot)),
        }
    }
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Int(v) => format!("int {v}"),
        Value::Float(v) => format!("float {v}"),
        Value::Bool(v) => format!("bool {v}"),
        Value::String(s) => format!("string {s:?}"),
        Value::StringSet(_) => "a list of strings".into(),
        Value::Timestamp(t) => format!("timestamp {t}"),
    }
}

/// Something in a request that the decision did not use, so that a typo
/// never passes silently. A decision carries its request's warnings
/// ([`crate::Decision::warnings`], `"warnings"` in its JSON); an engine
/// with `strict_requests` refuses such a request instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestWarning {
    /// A context attribute the schema does not declare: it was ignored.
    UnknownAttribute {
        /// The attribute name as given.
        attribute: String,
        /// The closest declared name, if one is close.
        suggestion: Option<String>,
    },
}

impl RequestWarning {
    /// The warning for a context attribute `name` that `schema` does not
    /// declare, with the closest declared name (for requests built from
    /// other inputs than JSON: see [`crate::DecisionRequest::warn`]).
    pub fn unknown_attribute(schema: &Schema, name: &str) -> RequestWarning {
        RequestWarning::UnknownAttribute {
            attribute: name.to_string(),
            suggestion: schema.suggest(name).map(str::to_string),
        }
    }

    /// Warnings for the context attributes `names`, which `schema` does
    /// not declare.
    pub(crate) fn unknown_attributes(schema: &Schema, names: Vec<String>) -> Vec<RequestWarning> {
        names
            .into_iter()
            .map(|attribute| RequestWarning::UnknownAttribute {
                suggestion: schema.suggest(&attribute).map(str::to_string),
                attribute,
            })
            .collect()
    }

    /// The error a strict engine returns instead of this warning.
    pub(crate) fn to_error(&self) -> Error {
        match self {
            RequestWarning::UnknownAttribute {
                attribute,
                suggestion,
            } => Error::InvalidContext {
                attribute: attribute.clone(),
                message: format!(
                    "not in the schema{}",
                    crate::base::util::did_you_mean(suggestion.as_deref())
                ),
            },
        }
    }
}

impl fmt::Display for RequestWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestWarning::UnknownAttribute {
                attribute,
                suggestion,
            } => write!(
                f,
                "context attribute `{attribute}` is not in the schema and was ignored{}",
                crate::base::util::did_you_mean(suggestion.as_deref())
            ),
        }
    }
}

/// Convert a JSON value to a context value of type `ty`.
/// Bind a JSON object (text) straight into a context for `schema`, as
/// [`Context::from_json`] does from a parsed map, without building the map
/// (or allocating its keys): the same context or the same error. A later
/// duplicate key wins and errors come in name order, as in the map.
#[cfg(test)]
pub(crate) fn bind_json_str(schema: &Arc<Schema>, json: &str) -> Result<Context, Error> {
    use serde::de::DeserializeSeed;
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_str(json);
    let result = ContextSeed {
        schema,
        failed: &mut failed,
        unknown: &mut Vec::new(),
    }
    .deserialize(&mut de);
    match (result, failed) {
        (_, Some(e)) => Err(e),
        (Ok(Some(ctx)), None) => Ok(ctx),
        (Ok(None), None) => Err(Error::InvalidRequest(
            "context: invalid type: null, expected a map".into(),
        )),
        (Err(e), None) => Err(Error::InvalidRequest(format!("context: {e}"))),
    }
}

/// A key, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(pub std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A context value as read, strings borrowed from the input when they have
/// no escapes; arrays and objects as JSON values.
enum Raw<'de> {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(std::borrow::Cow<'de, str>),
    /// An array of strings only.
    Strs(Vec<std::borrow::Cow<'de, str>>),
    Json(Json),
}

impl Raw<'_> {
    fn into_json(self) -> Json {
        match self {
            Raw::Null => Json::Null,
            Raw::Bool(b) => Json::Bool(b),
            Raw::Num(n) => Json::Number(n),
            Raw::Str(s) => Json::String(s.into_owned()),
            Raw::Strs(v) => Json::Array(
                v.into_iter()
                    .map(|s| Json::String(s.into_owned()))
                    .collect(),
            ),
            Raw::Json(j) => j,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Raw<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::MapAccessDeserializer;
        use std::borrow::Cow;
        struct V;
        // As serde_json's own `Value` visitor, scalars kept as they are.
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any valid JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Raw<'de>, E> {
                Ok(Raw::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Raw<'de>, E> {
                Ok(Raw::Num(i.into()))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Raw<'de>, E> {
                Ok(Raw::Num(u.into()))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Raw<'de>, E> {
                Ok(serde_json::Number::from_f64(f).map_or(Raw::Null, Raw::Num))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Raw<'de>, E> {
                Ok(Raw::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Raw<'de>, E> {
                Ok(Raw::Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Raw<'de>, E> {
                Ok(Raw::Str(Cow::Owned(s)))
            }
            fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw<'de>, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Raw<'de>, A::Error> {
                // Strings, until something else comes: then the array as
                // a JSON value, as serde_json builds it.
                let mut strs = Vec::new();
                loop {
                    match seq.next_element::<Raw<'de>>()? {
                        None => return Ok(Raw::Strs(strs)),
                        Some(Raw::Str(s)) => strs.push(s),
                        Some(other) => {
                            let mut items: Vec<Json> = strs
                                .into_iter()
                                .map(|s| Json::String(s.into_owned()))
                                .collect();
                            items.push(other.into_json());
                            while let Some(x) = seq.next_element::<Json>()? {
                                items.push(x);
                            }
                            return Ok(Raw::Json(Json::Array(items)));
                        }
                    }
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Raw<'de>, A::Error> {
                serde::Deserialize::deserialize(MapAccessDeserializer::new(map)).map(Raw::Json)
            }
        }
        d.deserialize_any(V)
    }
}

/// Binds a JSON context object straight into slots as it is parsed (no
/// map of names to values): `null` is no context (`None`). A value that
/// does not fit its attribute is not a parse error: the whole object is
/// still read (so a later syntax error wins, as when a map is parsed
/// first), the error goes to `failed` and the value is an empty context.
pub(crate) struct ContextSeed<'s> {
    pub schema: &'s Arc<Schema>,
    /// A context error, carried out of serde's error type.
    pub failed: &'s mut Option<Error>,
    /// The names the schema does not declare, in the order given (nothing
    /// is allocated while there are none).
    pub unknown: &'s mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for ContextSeed<'_> {
    type Value = Option<Context>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Context>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ContextSeed<'_> {
    type Value = Option<Context>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_none<E>(self) -> Result<Option<Context>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Context>, E> {
        Ok(None)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Context>, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<Option<Context>, A::Error> {
        // Known attributes' values by slot; a later duplicate replaces an
        // earlier one, as in a map.
        let attrs = &self.schema.attrs;
        let mut values: Vec<(u16, Raw<'de>)> = Vec::with_capacity(attrs.len());
        // Callers tend to send attributes in schema or name order: try the
        // attribute after the last one found in each order before hashing.
        let schema = &**self.schema;
        let (mut next_slot, mut next_rank) = (0usize, 0usize);
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            let is = |slot: u16| *attrs[slot as usize].name == *name;
            let found = u16::try_from(next_slot)
                .ok()
                .filter(|&s| (s as usize) < attrs.len() && is(s))
                .or_else(|| schema.by_rank.get(next_rank).copied().filter(|&s| is(s)))
                .or_else(|| schema.slot(&name));
            if let Some(s) = found {
                next_slot = s as usize + 1;
                next_rank = schema.name_rank[s as usize] as usize + 1;
            }
            let Some(slot) = found else {
                // Parsed (and dropped) like any value, so what the map would
                // reject (1e400, nesting past serde_json's depth limit) is
                // rejected here too.
                map.next_value::<Json>()?;
                self.unknown.push(name.into_owned());
                continue;
            };
            let v: Raw<'de> = map.next_value()?;
            match values.iter_mut().find(|(s, _)| *s == slot) {
                Some(e) => e.1 = v,
                None => values.push((slot, v)),
            }
        }
        // In name order, as a map iterates: the same first error.
        values.sort_unstable_by_key(|v| self.schema.name_rank[v.0 as usize]);
        let mut ctx = Context::empty(self.schema);
        // Room for the strings up front, rather than growing as they come.
        let (mut bytes, mut strings, mut items) = (0, 0, 0);
        for (_, v) in &values {
            match v {
                Raw::Str(s) => {
                    bytes += s.len();
                    strings += 1;
                }
                Raw::Strs(v) => {
                    bytes += v.iter().map(|s| s.len()).sum::<usize>();
                    strings += v.len();
                    items += v.len();
                }
                _ => {}
            }
        }
        ctx.texts.buf.reserve(bytes);
        ctx.texts.ends.reserve(strings);
        ctx.set_items.reserve(items);
        for (slot, v) in values {
            let attr = &attrs[slot as usize];
            let put = match (attr.ty, v) {
                (_, Raw::Null) => continue,
                // The common cases without building a JSON value.
                (AttrType::String, Raw::Str(s)) => ctx.put_str(slot, &s),
                (AttrType::Bool, Raw::Bool(b)) => ctx.put(slot, Value::Bool(b)),
                (AttrType::Int | AttrType::Float | AttrType::Timestamp, Raw::Num(n)) => {
                    json_value(attr.ty, &Json::Number(n)).and_then(|value| ctx.put(slot, value))
                }
                (AttrType::StringSet, Raw::Strs(items)) => {
                    ctx.put_set(slot, &items);
                    Ok(())
                }
                (AttrType::Timestamp, Raw::Str(s)) => {
                    Timestamp::parse(&s).and_then(|t| ctx.put(slot, Value::Timestamp(t)))
                }
                // Everything else (mismatches, sets) as the map path does.
                (ty, v) => json_value(ty, &v.into_json()).and_then(|value| ctx.put(slot, value)),
            };
            if let Err(message) = put {
                *self.failed = Some(Error::InvalidContext {
                    attribute: attr.name.to_string(),
                    message,
                });
                return Ok(Some(Context::empty(self.schema)));
            }
        }
        Ok(Some(ctx))
    }
}

pub(crate) fn json_value(ty: AttrType, v: &Json) -> Result<Value, String> {
    let got = || match v {
        Json::Null => "null".to_string(),
        Json::Bool(b) => format!("{b}"),
        Json::Number(n) => format!("{n}"),
        Json::String(s) => format!("{s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    };
    Ok(match ty {
        AttrType::Int => match v.as_i64() {
            Some(i) => Value::Int(i),
            None => return Err(format!("expected an integer, got {}", got())),
        },
        AttrType::Float => match v {
            Json::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => Value::Float(f),
                _ => return Err(format!("number {n} is out of range for a float")),
            },
            _ => return Err(format!("expected a number, got {}", got())),
        },
        AttrType::Bool => match v {
            Json::Bool(b) => Value::Bool(*b),
            _ => return Err(format!("expected true or false, got {}", got())),
        },
        AttrType::String => match v {
            Json::String(s) => Value::String(s.clone()),
            _ => return Err(format!("expected a string, got {}", got())),
        },
        AttrType::StringSet => match v {
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        Json::String(s) => out.push(s.clone()),
                        other => {
                            return Err(format!(
                                "expected an array of strings, found element {other}"
                            ))
                        }
                    }
                }
                Value::StringSet(out)
            }
            _ => return Err(format!("expected an array of strings, got {}", got())),
        },
        AttrType::Timestamp => match v {
            Json::String(s) => Value::Timestamp(Timestamp::parse(s)?),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Timestamp(Timestamp(i)),
                None => return Err(format!("expected epoch seconds, got {n}")),
            },
            _ => {
                return Err(format!(
                    "expected an RFC 3339 timestamp string or epoch seconds, got {}",
                    got()
                ))
            }
        },
    })
}

/// Builds a [`Context`] from Rust values, checking names and types as it
/// goes. The first error is reported by [`ContextBuilder::build`].
///
/// ```
/// # let engine = nextbest::Engine::from_dir("tests/fixtures/mini").unwrap();
/// use nextbest::Context;
/// let ctx = Context::builder(&engine.schema())
///     .set("age", 42)
///     .set("income", 52_000.0)
///     .set("products", ["CURRENT"])
///     .build()
///     .unwrap();
/// assert_eq!(ctx.get("age"), Some(nextbest::Value::Int(42)));
/// ```
pub struct ContextBuilder {
    ctx: Context,
    error: Option<Error>,
}

impl ContextBuilder {
    /// Set attribute `name` to `value`.
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> ContextBuilder {
        if self.error.is_some() {
            return self;
        }
        let Some(slot) = self.ctx.schema.slot(name) else {
            let hint = crate::base::util::did_you_mean(self.ctx.schema.suggest(name));
            self.error = Some(Error::InvalidContext {
                attribute: name.to_string(),
                message: format!("the schema has no attribute `{name}`{hint}"),
            });
            return self;
        };
        if let Err(m) = self.ctx.put(slot, value.into()) {
            self.error = Some(Error::InvalidContext {
                attribute: name.to_string(),
                message: m,
            });
        }
        self
    }

    /// Set the attribute in slot `slot` (its index in
    /// [`Schema::attributes`](crate::Schema::attributes)) to `value`, as
    /// [`ContextBuilder::set`] does by name. For callers that bind many
    /// contexts from the same columns (an Arrow table, a CSV file): they
    /// resolve each column's slot once, not once per row.
    ///
    /// ```
    /// # let engine = nextbest::Engine::from_dir("tests/fixtures/mini").unwrap();
    /// use nextbest::Context;
    /// let schema = engine.schema();
    /// let age = schema.attributes().iter().position(|a| a.name() == "age").unwrap();
    /// let ctx = Context::builder(&schema).set_slot(age, 42).build().unwrap();
    /// assert_eq!(ctx.get("age"), Some(nextbest::Value::Int(42)));
    /// ```
    pub fn set_slot(mut self, slot: usize, value: impl Into<Value>) -> ContextBuilder {
        if let Some(slot) = self.slot_for(slot) {
            if let Err(m) = self.ctx.put(slot, value.into()) {
                self.fail(slot, m);
            }
        }
        self
    }

    /// [`ContextBuilder::set_slot`] for a `string` attribute, from a
    /// borrowed string (the value is copied into the context's own text
    /// store, with no allocation of its own).
    pub fn set_slot_str(mut self, slot: usize, value: &str) -> ContextBuilder {
        if let Some(slot) =
            self.slot_of_type(slot, AttrType::String, || format!("string {value:?}"))
        {
            if let Err(m) = self.ctx.put_str(slot, value) {
                self.fail(slot, m);
            }
        }
        self
    }

    /// [`ContextBuilder::set_slot`] for a `string_set` attribute, from
    /// borrowed strings (duplicates are dropped, as from any other input).
    pub fn set_slot_strs<S: AsRef<str>>(mut self, slot: usize, items: &[S]) -> ContextBuilder {
        if let Some(slot) =
            self.slot_of_type(slot, AttrType::StringSet, || "a list of strings".into())
        {
            self.ctx.put_set(slot, items);
        }
        self
    }

    /// `slot` as a slot number, if no error came first and the schema has
    /// it (else the error is kept for [`ContextBuilder::build`]).
    fn slot_for(&mut self, slot: usize) -> Option<u16> {
        if self.error.is_some() {
            return None;
        }
        let n = self.ctx.schema.attrs.len();
        match u16::try_from(slot).ok().filter(|&s| (s as usize) < n) {
            Some(s) => Some(s),
            None => {
                self.error = Some(Error::InvalidContext {
                    attribute: format!("#{slot}"),
                    message: format!("the schema has no slot {slot} (it has {n} attributes)"),
                });
                None
            }
        }
    }

    /// [`ContextBuilder::slot_for`], and the attribute must have type `ty`.
    fn slot_of_type(
        &mut self,
        slot: usize,
        ty: AttrType,
        got: impl FnOnce() -> String,
    ) -> Option<u16> {
        let slot = self.slot_for(slot)?;
        let want = self.ctx.schema.attrs[slot as usize].ty;
        if want != ty {
            self.fail(slot, format!("expected {}, got {}", want.name(), got()));
            return None;
        }
        Some(slot)
    }

    fn fail(&mut self, slot: u16, message: String) {
        self.error = Some(Error::InvalidContext {
            attribute: self.ctx.schema.attrs[slot as usize].name.to_string(),
            message,
        });
    }

    /// The context, or the first error met while setting attributes.
    pub fn build(self) -> Result<Context, Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.ctx),
        }
    }
}

#[cfg(test)]
mod bind_tests {
    use super::*;
    use proptest::prelude::*;

    /// Some of rules/retail_bank's attributes, one per type, and names it
    /// does not have.
    const KEYS: [&str; 9] = [
        "age",
        "income",
        "segment",
        "products",
        "bankrupt",
        "last_contact",
        "email",
        "no_such",
        "Age",
    ];
    const VALUES: [&str; 18] = [
        "35",
        "-7",
        "1.5",
        "1e400",
        "12345678901234567890",
        "\"mass\"",
        "\"affluent\"",
        "\"2026-11-23T10:00:00Z\"",
        "\"not a time\"",
        "true",
        "null",
        "[]",
        "[\"CURRENT\", \"ISA\"]",
        "[1]",
        "{\"a\": 1}",
        "\"caf\\u00e9\"",
        "[\"ISA\", 2, [\"x\"], \"ISA\"]",
        "[\"a\\\"b\", [\"ISA\"]]",
    ];

    fn same(a: &Context, b: &Context) -> bool {
        (0..a.schema.attrs.len() as u16).all(|s| a.value(s) == b.value(s)) && a.given == b.given
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Binding the text directly gives what parsing a map and binding
        /// it gives: the same context, or the same error.
        #[test]
        fn direct_binding_matches_the_map(
            pairs in proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..12),
        ) {
            let schema = crate::fuzzing::retail_bank().schema();
            let body: Vec<String> = pairs
                .iter()
                .map(|&(k, v)| format!("\"{}\": {}", KEYS[k], VALUES[v]))
                .collect();
            let text = format!("{{{}}}", body.join(", "));
            let via_map = serde_json::from_str::<serde_json::Map<String, Json>>(&text)
                .map_err(|e| Error::InvalidRequest(format!("context: {e}")))
                .and_then(|m| Context::from_json(&schema, &m));
            let direct = bind_json_str(&schema, &text);
            match (via_map, direct) {
                (Ok(a), Ok(b)) => prop_assert!(same(&a, &b), "{text}"),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string(), "{}", text),
                (a, b) => prop_assert!(false, "{text}: map {a:?}, direct {b:?}"),
            }
        }

        /// A whole request parsed in one pass (context bound as it is
        /// read) equals the reference: `RequestJson`'s derived parser, then
        /// binding its map. The same request, or the same error: unknown,
        /// missing and duplicate fields, wrong types, syntax errors (also
        /// after a context that does not bind), null context.
        #[test]
        fn one_pass_request_matches_the_derived_parser(
            fields in proptest::collection::vec((0..REQUEST_PARTS.len(), 0..VALUES.len()), 0..5),
            pairs in proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..8),
            cut in proptest::option::weighted(0.1, 0usize..200),
            valid_ids in proptest::bool::weighted(0.7),
        ) {
            let schema = crate::fuzzing::retail_bank().schema();
            let ctx: Vec<String> = pairs
                .iter()
                .map(|&(k, v)| format!("\"{}\": {}", KEYS[k], VALUES[v]))
                .collect();
            let ctx = format!("{{{}}}", ctx.join(", "));
            let body: Vec<String> = fields
                .iter()
                // With valid ids up front, mostly other fields.
                .filter(|&&(f, v)| !valid_ids || f > 4 || v % 4 == 0)
                .map(|&(f, v)| {
                    let (name, value) = REQUEST_PARTS[f];
                    let value = match value {
                        "CTX" => ctx.clone(),
                        "ANY" => VALUES[v].to_string(),
                        other => other.to_string(),
                    };
                    format!("\"{name}\": {value}")
                })
                .collect();
            let mut body = body;
            if valid_ids {
                body.insert(0, "\"customer_id\": \"C1\", \"channel\": \"web\"".into());
            }
            let mut text = format!("{{{}}}", body.join(", "));
            if let Some(c) = cut {
                text.truncate(c.min(text.len()));
                while !text.is_char_boundary(text.len()) {
                    text.pop();
                }
            }
            let reference = serde_json::from_str::<RequestJson>(&text)
                .map_err(|e| Error::InvalidRequest(e.to_string()))
                .and_then(|r| {
                    crate::decide::request::RequestJson {
                        customer_id: r.customer_id,
                        channel: r.channel,
                        context: r.context.unwrap_or_default(),
                        limit: r.limit,
                        explain: r.explain,
                        now: r.now,
                    }
                    .bind(&schema)
                });
            let one_pass = crate::DecisionRequest::from_json(&schema, &text);
            match (reference, one_pass) {
                (Ok(a), Ok(b)) => {
                    prop_assert!(same(&a.context, &b.context), "{text}");
                    prop_assert_eq!(
                        (&a.customer_id, &a.channel, a.limit, a.explain, a.now, a.seed),
                        (&b.customer_id, &b.channel, b.limit, b.explain, b.now, b.seed),
                        "{}", text
                    );
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string(), "{}", text),
                (a, b) => prop_assert!(false, "{text}: reference {a:?}, one pass {b:?}"),
            }
        }
    }

    /// The reference request parser: derived, with a `null` context meaning
    /// none.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RequestJson {
        customer_id: String,
        channel: String,
        #[serde(default)]
        context: Option<serde_json::Map<String, Json>>,
        #[serde(default)]
        limit: Option<u64>,
        #[serde(default)]
        explain: bool,
        #[serde(default)]
        now: Option<Json>,
    }

    /// Request fields with values: `CTX` is a generated context, `ANY` one
    /// of [`VALUES`].
    const REQUEST_PARTS: [(&str, &str); 16] = [
        ("customer_id", "\"C1\""),
        ("customer_id", "ANY"),
        ("channel", "\"web\""),
        ("channel", "\"call_center\""),
        ("channel", "ANY"),
        ("context", "CTX"),
        ("context", "CTX"),
        ("context", "ANY"),
        ("limit", "3"),
        ("limit", "ANY"),
        ("explain", "true"),
        ("explain", "ANY"),
        ("now", "\"2026-11-23T10:00:00Z\""),
        ("now", "ANY"),
        ("seed", "1"),
        ("Channel", "ANY"),
    ];
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    fn schema() -> Arc<Schema> {
        crate::Engine::from_dir("rules/retail_bank")
            .expect("rules/retail_bank loads")
            .schema()
    }

    fn slot(schema: &Schema, name: &str) -> usize {
        schema.slot(name).expect("attribute exists") as usize
    }

    #[test]
    fn setting_by_slot_binds_what_setting_by_name_binds() {
        let s = schema();
        let by_name = Context::builder(&s)
            .set("age", 41)
            .set("income", 38_000)
            .set("segment", "affluent")
            .set("products", ["CURRENT", "ISA", "CURRENT"])
            .set("bankrupt", false)
            .build()
            .unwrap();
        let by_slot = Context::builder(&s)
            .set_slot(slot(&s, "age"), 41)
            .set_slot(slot(&s, "income"), 38_000)
            .set_slot_str(slot(&s, "segment"), "affluent")
            .set_slot_strs(slot(&s, "products"), &["CURRENT", "ISA", "CURRENT"])
            .set_slot(slot(&s, "bankrupt"), false)
            .build()
            .unwrap();
        assert!((0..s.attrs.len() as u16).all(|i| by_name.value(i) == by_slot.value(i)));
        assert_eq!(by_name.given, by_slot.given);
        assert_eq!(
            by_slot.get("products"),
            Some(Value::StringSet(vec!["CURRENT".into(), "ISA".into()]))
        );
    }

    #[test]
    fn a_wrong_slot_type_or_value_is_an_error_naming_the_attribute() {
        let s = schema();
        let err = |b: ContextBuilder| match b.build() {
            Err(Error::InvalidContext { attribute, message }) => (attribute, message),
            other => panic!("expected an InvalidContext error, got {other:?}"),
        };
        let (a, m) = err(Context::builder(&s).set_slot_str(slot(&s, "age"), "41"));
        assert_eq!(
            (a.as_str(), m.as_str()),
            ("age", "expected int, got string \"41\"")
        );
        let (a, m) = err(Context::builder(&s).set_slot_str(slot(&s, "segment"), "gold"));
        assert_eq!(a, "segment");
        assert!(m.contains("not one of the allowed values"), "{m}");
        let (a, _) = err(Context::builder(&s).set_slot_strs(slot(&s, "segment"), &["x"]));
        assert_eq!(a, "segment");
        let (a, m) = err(Context::builder(&s).set_slot(9999, 1));
        assert_eq!(a, "#9999");
        assert!(m.contains("no slot 9999"), "{m}");
        // The first error wins.
        let (a, _) = err(Context::builder(&s)
            .set_slot(slot(&s, "bankrupt"), 3)
            .set_slot(9999, 1));
        assert_eq!(a, "bankrupt");
    }
}
