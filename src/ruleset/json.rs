//! A version's names and texts escaped as JSON, once, on first use: the
//! decision response's and the decision log's fixed pieces, so that writing
//! either is mostly copying bytes.

use crate::base::Removed;
use crate::context::Texts;
use crate::ruleset::RuleSet;

/// An action's names as JSON members: `"action":…,"group":…,"issue":…`,
/// and `"treatment":…` per channel.
pub(crate) type JsonNames = (Box<str>, Box<[Box<str>]>);

/// A version's names and texts escaped as JSON once, on first use.
#[derive(Debug, Default)]
pub(crate) struct JsonCache {
    /// Per action (see [`crate::Decision::to_json`]).
    pub names: std::sync::OnceLock<Box<[JsonNames]>>,
    /// The decision log's fixed pieces, built by its writer.
    pub log: std::sync::OnceLock<LogTexts>,
}

/// A version's fixed pieces of decision records, escaped once (on the
/// writer's first record of the version), so that writing one is mostly
/// copying them.
#[derive(Debug)]
pub(crate) struct LogTexts {
    /// Per action, its id as a JSON string.
    pub(crate) ids: Box<[Box<str>]>,
    /// Per condition part, its text as a JSON string.
    pub(crate) conds: Box<[Box<str>]>,
    /// Per action: `{"action":ID,"rank":`.
    pub(crate) ranked: Texts,
    /// Per action and each of its engagement checks, from `first[action]`:
    /// `{"action":ID,"stage":"STAGE","level":"LEVEL","condition":` (the
    /// condition's text is in `conds`: a group's would be copied into
    /// every action of the group).
    pub(crate) removed: Texts,
    pub(crate) first: Box<[u32]>,
    /// Per attribute of the version's schema: `"NAME":`.
    pub(crate) keys: Texts,
    /// Per condition part that cannot fail on present values
    /// ([`crate::expr::Fallible`]), the slots it reads: it failed to
    /// evaluate only if one of them is missing.
    pub(crate) total: Box<[Option<Box<[u16]>>]>,
}

/// A JSON string (writing to a String cannot fail).
fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl LogTexts {
    fn of(rules: &RuleSet) -> LogTexts {
        let mut t = LogTexts {
            ids: rules.actions.iter().map(|a| json(&a.id).into()).collect(),
            conds: rules.conds.iter().map(|c| json(&c.text).into()).collect(),
            ranked: Texts::default(),
            removed: Texts::default(),
            first: Box::default(),
            keys: Texts::default(),
            total: Box::default(),
        };
        let mut first = Vec::with_capacity(rules.actions.len());
        for (a, id) in rules.actions.iter().zip(t.ids.iter()) {
            t.ranked.push(&format!("{{\"action\":{id},\"rank\":"));
            first.push(t.removed.len());
            for c in a.checks.iter() {
                // Stage and level names are identifiers: nothing to escape.
                t.removed.push(&format!(
                    "{{\"action\":{id},\"stage\":\"{}\",\"level\":\"{}\",\"condition\":",
                    c.stage.as_str(),
                    c.level.as_str()
                ));
            }
        }
        t.first = first.into();
        for attr in &rules.schema.attrs {
            t.keys.push(&format!("{}:", json(&attr.name)));
        }
        t.total = rules
            .conds
            .iter()
            .map(|c| {
                use crate::expr::{Fallible, Reads};
                (!c.ir.fallible()).then(|| {
                    let mut reads = Vec::new();
                    c.ir.reads(&mut reads);
                    reads.into()
                })
            })
            .collect();
        t
    }

    /// Action `a`'s id as a JSON string.
    pub(crate) fn id(&self, a: u32) -> &[u8] {
        self.ids[a as usize].as_bytes()
    }

    /// Condition part `c`'s text as a JSON string.
    pub(crate) fn cond(&self, c: u32) -> &[u8] {
        self.conds[c as usize].as_bytes()
    }

    /// Action `a`'s `{"action":ID,"rank":`.
    pub(crate) fn ranked(&self, a: u32) -> &[u8] {
        self.ranked.bytes(a)
    }

    /// The start of the entry of a candidate removed by one of its
    /// action's engagement checks, if `r` is one.
    pub(crate) fn removed(&self, rules: &RuleSet, r: &Removed) -> Option<&[u8]> {
        let cond = r.cond?;
        let a = r.action as usize;
        let k = rules.actions[a]
            .checks
            .iter()
            .position(|c| c.cond == cond && c.stage == r.stage && c.level == r.level)?;
        Some(self.removed.bytes(self.first[a] + k as u32))
    }
}

/// A version's [`LogTexts`], built on first use.
pub(crate) fn log_texts(rules: &RuleSet) -> &LogTexts {
    rules.json.log.get_or_init(|| LogTexts::of(rules))
}
