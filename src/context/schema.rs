//! The context schema of a rule set: which attributes a customer context
//! has, their types, defaults and sensitivity, and the interned strings that
//! conditions compare against.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::base::{AttrType, Sym, Value};

/// One attribute of the context schema.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub(crate) name: Arc<str>,
    pub(crate) ty: AttrType,
    pub(crate) sensitive: bool,
    /// For closed string attributes: the allowed values.
    pub(crate) values: Option<Vec<String>>,
    /// The value used when a request omits the attribute.
    pub(crate) default_value: Option<Value>,
    /// Set by the strategy's `derive` hook.
    pub(crate) derived: bool,
    /// Computed by the predictive model in this file (relative to the rule
    /// directory), before `derive`.
    pub(crate) model: Option<Arc<str>>,
}

impl Attribute {
    /// The attribute's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The attribute's type.
    pub fn ty(&self) -> AttrType {
        self.ty
    }
    /// Whether the attribute is masked in the decision log.
    pub fn is_sensitive(&self) -> bool {
        self.sensitive
    }
    /// Whether the strategy's `derive` hook computes it.
    pub fn is_derived(&self) -> bool {
        self.derived
    }
    /// The file of the predictive model that computes it, if one does
    /// (`model = "models/churn.toml"` in the schema).
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
    /// The allowed values of a closed string attribute.
    pub fn allowed_values(&self) -> Option<&[String]> {
        self.values.as_deref()
    }
}

/// Interned strings: every string a condition mentions and every allowed
/// value of a closed string attribute. Symbol 0 means "a string no rule
/// mentions"; such strings never equal a literal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Symbols {
    by_text: FxHashMap<Box<str>, Sym>,
    texts: Vec<Box<str>>,
    /// The declared channels' symbols, for checking `channel == "..."`
    /// (empty: not checked).
    pub(crate) channels: Vec<Sym>,
}

impl Symbols {
    pub(crate) fn new() -> Symbols {
        Symbols {
            by_text: FxHashMap::default(),
            texts: vec!["".into()],
            channels: Vec::new(),
        }
    }

    /// Every interned string, indexed by its symbol.
    pub(crate) fn texts(&self) -> &[Box<str>] {
        &self.texts
    }

    pub(crate) fn intern(&mut self, s: &str) -> Sym {
        if let Some(&sym) = self.by_text.get(s) {
            return sym;
        }
        let sym = self.texts.len() as Sym;
        self.texts.push(s.into());
        self.by_text.insert(s.into(), sym);
        sym
    }

    #[inline]
    pub(crate) fn get(&self, s: &str) -> Sym {
        self.by_text.get(s).copied().unwrap_or(0)
    }
}

/// The compiled context schema of a rule set. Contexts are built against
/// it (see [`crate::Context::builder`]); two rule versions with the same
/// schema and strings share a fingerprint, so contexts built for one are
/// used by the other without rebinding.
#[derive(Debug)]
pub struct Schema {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) by_name: FxHashMap<Arc<str>, u16>,
    pub(crate) symbols: Symbols,
    pub(crate) fingerprint: u64,
    /// Per slot, the attribute's place in name order.
    pub(crate) name_rank: Box<[u16]>,
    /// The slots in name order (the inverse of `name_rank`).
    pub(crate) by_rank: Box<[u16]>,
}

impl Schema {
    pub(crate) fn new(attrs: Vec<Attribute>, symbols: Symbols) -> Schema {
        use std::hash::{Hash, Hasher};
        let by_name = attrs
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.clone(), i as u16))
            .collect();
        // FxHasher is deterministic across processes and versions of this
        // build; the fingerprint only needs to tell schemas apart in-process.
        let mut h = rustc_hash::FxHasher::default();
        for a in &attrs {
            a.name.hash(&mut h);
            a.ty.hash(&mut h);
            a.values.hash(&mut h);
            format!("{:?}", a.default_value).hash(&mut h);
        }
        symbols.texts.hash(&mut h);
        let mut by_name_order: Vec<u16> = (0..attrs.len() as u16).collect();
        by_name_order.sort_by(|&a, &b| attrs[a as usize].name.cmp(&attrs[b as usize].name));
        let mut name_rank = vec![0u16; attrs.len()].into_boxed_slice();
        for (rank, &slot) in by_name_order.iter().enumerate() {
            name_rank[slot as usize] = rank as u16;
        }
        Schema {
            attrs,
            by_name,
            symbols,
            fingerprint: h.finish(),
            name_rank,
            by_rank: by_name_order.into(),
        }
    }

    /// All attributes, in slot order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attrs
    }

    /// The attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.slot(name).map(|i| &self.attrs[i as usize])
    }

    pub(crate) fn slot(&self, name: &str) -> Option<u16> {
        self.by_name.get(name).copied()
    }

    /// The closest attribute name, for "did you mean" hints.
    pub(crate) fn suggest(&self, name: &str) -> Option<&str> {
        crate::base::util::closest(name, self.attrs.iter().map(|a| &*a.name))
    }
}
