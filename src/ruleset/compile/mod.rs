//! Validation and compilation of a [`RuleSource`] into a [`RuleSet`].
//!
//! Validation keeps going after an error so that an author sees every
//! problem in one run; each error is located at file:line:col.
//!
//! [`compile`] reads the files and calls one function per part of the
//! rule set, in dependency order: the schema ([`schema`]), the catalog of
//! channels, issues, groups and actions with their engagement policies
//! and context weights ([`catalog`]), the experiment ([`experiment`]),
//! the strategy and learning ([`strategy`]), contact policies and volume
//! constraints ([`contact`]). Predictive models ([`model`]) are compiled
//! right after the schema, whose attributes they read and write.

mod catalog;
mod contact;
mod experiment;
mod model;
mod schema;
mod strategy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::base::util::did_you_mean;
use crate::base::AttrType;
use crate::base::{Location, RuleError, RuleErrors};
use crate::base::{Timestamp, Value};
use crate::context::json_value;
use crate::context::schema::{Attribute, Schema, Symbols};
use crate::expr::Cond;
use crate::expr::{self, Affine, Scope};
use crate::ruleset::contact::{ContactPolicy, VolumeConstraint, VolumeTarget};
use crate::ruleset::source::{
    cond_parts, location, string_offset, ActionSrc, ActionsFile, CondSrc, RuleSource, RulesetFile,
    ValueSrc,
};
use crate::ruleset::{
    Action, Channel, Check, ContextWeight, Direction, Group, Issue, Level, RuleSet, Stage, ValueFn,
};

/// Collects located errors.
struct Diag<'s> {
    src: &'s RuleSource,
    errors: Vec<RuleError>,
}

impl<'s> Diag<'s> {
    fn text(&self, file: &Path) -> &'s str {
        self.src.files.get(file).map_or("", String::as_str)
    }

    fn loc(&self, file: &Path, offset: usize) -> Location {
        location(file, self.text(file), offset)
    }

    fn at(&mut self, file: &Path, offset: usize, message: impl Into<String>) {
        let location = self.loc(file, offset);
        self.errors.push(RuleError {
            location,
            message: message.into(),
        });
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_ident(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !matches!(s, "true" | "false" | "in")
        && s.len() <= 128
}

/// An action source with the file it came from.
struct Located<T> {
    file: PathBuf,
    item: Spanned<T>,
}

/// Validate and compile `src`: every error found, located, or the rule set.
pub(super) fn compile(src: &RuleSource) -> Result<RuleSet, RuleErrors> {
    let mut d = Diag {
        src,
        errors: Vec::new(),
    };
    let main_path = PathBuf::from("ruleset.toml");
    let Some((main, action_srcs, unparsed_action_files)) = read_files(&mut d, &main_path) else {
        return Err(finish(d.errors));
    };
    let d = &mut d;
    let name = main.name.get_ref().clone();
    if !valid_name(&name) {
        d.at(
            &main_path,
            main.name.span().start,
            "name must be letters, digits, `_` or `-` (at most 128)",
        );
    }
    let default_limit = match &main.default_limit {
        Some(l) if !(1..=1000).contains(l.get_ref()) => {
            d.at(
                &main_path,
                l.span().start,
                "default_limit must be between 1 and 1000",
            );
            3
        }
        Some(l) => *l.get_ref() as usize,
        None => 3,
    };

    let mut symbols = Symbols::new();
    let attrs = schema::schema_attrs(d, &main_path, &main.schema, &mut symbols);
    let lookup = Schema::new(attrs.clone(), Symbols::new());
    let models = model::models(d, &main_path, &main.schema, &lookup, &mut symbols);
    let mut conds = CondTable::default();
    let catalog::Catalog {
        mut channels,
        issues,
        groups,
        mut actions,
        weights,
    } = catalog::catalog(
        d,
        &main_path,
        &main,
        action_srcs,
        unparsed_action_files,
        &lookup,
        &mut symbols,
        &mut conds,
    );
    let experiment = main
        .experiment
        .as_ref()
        .and_then(|e| experiment::experiment(d, &main_path, e, &channels));
    let strategy = main
        .strategy
        .as_ref()
        .and_then(|s| strategy::strategy(d, &main_path, s, &lookup));
    if let Some(a) = lookup.attrs.iter().find(|a| a.derived) {
        if !strategy.as_ref().is_some_and(|s| s.has_derive) {
            d.at(
                &main_path,
                0,
                format!(
                    "attribute `{}` is derived, but no strategy defines `fn derive(customer)`",
                    a.name
                ),
            );
        }
    }
    let contact_policies =
        contact::contact_policies(d, &main_path, &main.contact_policies, &channels, &groups);
    let volumes = contact::volume_constraints(
        d,
        &main_path,
        &main.volume_constraints,
        &channels,
        &groups,
        &mut actions,
    );
    for (ci, ch) in channels.iter_mut().enumerate() {
        ch.volumes = volumes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.target == VolumeTarget::Channel(ci as u32))
            .map(|(i, _)| i as u32)
            .collect();
    }
    let learning = main
        .learning
        .as_ref()
        .map(|l| strategy::learning(d, &main_path, l.get_ref(), &attrs, &mut symbols));
    let history_horizon = contact_policies
        .iter()
        .map(|p| p.within + p.suppress_for.unwrap_or(0))
        .chain(
            channels
                .iter()
                .filter_map(|c| c.contact_limit.map(|l| l.within)),
        )
        .max()
        .unwrap_or(0);
    if !d.errors.is_empty() {
        return Err(finish(std::mem::take(&mut d.errors)));
    }
    let schema = Arc::new(Schema::new(attrs, symbols));
    let hash_src = source_hash(src);
    let memo_tag = xxhash_rust::xxh3::xxh3_64(hash_src.as_bytes());
    let contact_limits = channels
        .iter()
        .filter_map(|c| c.contact_limit.map(|l| (c.key, l.within)))
        .collect();
    let action_by_key = (0u32..).zip(&actions).map(|(i, a)| (a.key, i)).collect();
    let group_by_key = (0u32..).zip(&groups).map(|(i, g)| (g.key, i)).collect();
    Ok(RuleSet {
        name: name.into(),
        description: main.description.clone(),
        hash: hash_src,
        schema,
        default_limit,
        channels,
        issues,
        groups,
        actions,
        tests: crate::expr::ir::Tests::of(conds.conds.iter().map(|c| &c.ir)),
        conds: conds.conds,
        weights,
        experiment,
        strategy,
        contact_policies,
        volumes,
        learning,
        models: models.into(),
        history_horizon,
        contact_limits,
        memo_tag,
        json: Box::default(),
        action_by_key,
        group_by_key,
        source: src.clone(),
    })
}

/// Parse ruleset.toml and every actions/*.toml: the main file, the action
/// sources with their files, and whether an action file did not parse (so
/// "no actions" would mislead). `None` if ruleset.toml is missing or does
/// not parse.
#[allow(clippy::type_complexity)]
fn read_files(
    d: &mut Diag<'_>,
    main_path: &Path,
) -> Option<(RulesetFile, Vec<Located<ActionSrc>>, bool)> {
    let src = d.src;
    let Some(main_text) = src.files.get(main_path) else {
        d.at(main_path, 0, "the rule directory has no ruleset.toml");
        return None;
    };
    let (main, main_errors) = crate::ruleset::source::from_toml::<RulesetFile>(main_text);
    for (at, message) in main_errors {
        d.at(main_path, at, message);
    }
    let mut main = main?;
    let mut action_srcs: Vec<Located<ActionSrc>> = Vec::new();
    // An action file that does not parse may well hold actions: then "no
    // actions" would be a second, misleading error.
    let mut unparsed_action_files = false;
    for a in std::mem::take(&mut main.actions) {
        action_srcs.push(Located {
            file: main_path.to_path_buf(),
            item: a,
        });
    }
    for (path, text) in &src.files {
        if !path.starts_with("actions") {
            continue;
        }
        let (file, file_errors) = crate::ruleset::source::from_toml::<ActionsFile>(text);
        for (at, message) in file_errors {
            d.at(path, at, message);
        }
        match file {
            Some(f) => action_srcs.extend(f.actions.into_iter().map(|a| Located {
                file: path.clone(),
                item: a,
            })),
            None => unparsed_action_files = true,
        }
    }
    Some((main, action_srcs, unparsed_action_files))
}

/// A positive count (at most a billion), or an error at its location.
fn count(d: &mut Diag<'_>, file: &Path, n: &Spanned<i64>, what: &str) -> Option<u32> {
    match u32::try_from(*n.get_ref()) {
        Ok(v) if (1..=1_000_000_000).contains(&v) => Some(v),
        _ => {
            d.at(
                file,
                n.span().start,
                format!("{what} must be a whole number from 1 to 1000000000"),
            );
            None
        }
    }
}

fn duration(d: &mut Diag<'_>, file: &Path, s: &Spanned<String>) -> Option<i64> {
    crate::ruleset::contact::parse_duration(s.get_ref())
        .map_err(|m| d.at(file, s.span().start, m))
        .ok()
}

fn outcome_kinds(d: &mut Diag<'_>, file: &Path, kinds: &Spanned<Vec<Spanned<String>>>) -> u8 {
    use crate::base::OutcomeKind;
    let mut bits = 0;
    for k in kinds.get_ref() {
        match OutcomeKind::parse(k.get_ref()) {
            Some(kind) => bits |= crate::base::outcome::kind_bit(kind),
            None => d.at(
                file,
                k.span().start,
                format!(
                    "unknown outcome `{}`; outcomes are impression, clicked, accepted, rejected, no_response",
                    k.get_ref()
                ),
            ),
        }
    }
    if kinds.get_ref().is_empty() {
        d.at(file, kinds.span().start, "list at least one outcome");
    }
    bits
}

fn finish(mut errors: Vec<RuleError>) -> RuleErrors {
    errors.sort_by(|a, b| a.location.cmp(&b.location));
    errors.dedup();
    RuleErrors(errors)
}

/// Conjuncts, shared across the whole rule set.
#[derive(Default)]
struct CondTable {
    conds: Vec<Cond>,
    by_key: FxHashMap<String, u32>,
}

impl CondTable {
    fn add(
        &mut self,
        d: &mut Diag<'_>,
        file: &Path,
        src: Option<&CondSrc>,
        scope: &mut Scope<'_>,
    ) -> Vec<u32> {
        let Some(src) = src else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for (text, span) in cond_parts(src) {
            match expr::compile_condition(text, scope) {
                Ok(conjuncts) => {
                    for c in conjuncts {
                        let id = match self.by_key.get(&c.key) {
                            Some(&id) => id,
                            None => {
                                let id = self.conds.len() as u32;
                                let off = string_offset(d.text(file), &span, c.span.start);
                                self.conds.push(Cond {
                                    ir: c.ir,
                                    text: c.text.into(),
                                    location: d.loc(file, off),
                                });
                                self.by_key.insert(c.key, id);
                                id
                            }
                        };
                        ids.push(id);
                    }
                }
                Err(e) => {
                    let off = string_offset(d.text(file), &span, e.span.start);
                    d.at(file, off, e.message);
                }
            }
        }
        ids
    }
}

fn content_hash(src: &RuleSource) -> String {
    let mut h = Sha256::new();
    for (path, text) in &src.files {
        let p = path.to_string_lossy().replace('\\', "/");
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The content hash of a rule source: SHA-256 over its files, mixed with
/// the challenger's when there is one. Equal hashes mean equal decisions.
pub(crate) fn source_hash(src: &RuleSource) -> String {
    let own = content_hash(src);
    match &src.challenger {
        Some(c) => sha_hex(format!("{own}+challenger:{}", content_hash(c)).as_bytes()),
        None => own,
    }
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
