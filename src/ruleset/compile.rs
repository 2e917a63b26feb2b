//! Validation and compilation of a [`RuleSource`] into a [`RuleSet`].
//!
//! Validation keeps going after an error so that an author sees every
//! problem in one run; each error is located at file:line:col.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::source::{
    cond_parts, location, string_offset, ActionSrc, ActionsFile, CondSrc, RuleSource, RulesetFile,
    ValueSrc,
};
use super::{
    Action, Channel, Check, ContextWeight, Direction, Group, Issue, Level, RuleSet, Stage, ValueFn,
};
use crate::base::util::did_you_mean;
use crate::base::AttrType;
use crate::base::{Location, RuleError, RuleErrors};
use crate::base::{Timestamp, Value};
use crate::context::json_value;
use crate::context::schema::{Attribute, Schema, Symbols};
use crate::expr::Cond;
use crate::expr::{self, Affine, Scope};
use crate::ruleset::contact::{ContactPolicy, VolumeConstraint, VolumeTarget};

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

pub(super) fn compile(src: &RuleSource) -> Result<RuleSet, RuleErrors> {
    let mut d = Diag {
        src,
        errors: Vec::new(),
    };
    let main_path = PathBuf::from("ruleset.toml");
    let Some(main_text) = src.files.get(&main_path) else {
        d.at(&main_path, 0, "the rule directory has no ruleset.toml");
        return Err(finish(d.errors));
    };
    let (main, main_errors) = super::source::from_toml::<RulesetFile>(main_text);
    for (at, message) in main_errors {
        d.at(&main_path, at, message);
    }
    let Some(main) = main else {
        return Err(finish(d.errors));
    };
    let mut action_srcs: Vec<Located<ActionSrc>> = Vec::new();
    // An action file that does not parse may well hold actions: then "no
    // actions" would be a second, misleading error.
    let mut unparsed_action_files = false;
    let mut main = main;
    for a in std::mem::take(&mut main.actions) {
        action_srcs.push(Located {
            file: main_path.clone(),
            item: a,
        });
    }
    for (path, text) in &src.files {
        if !path.starts_with("actions") {
            continue;
        }
        let (file, file_errors) = super::source::from_toml::<ActionsFile>(text);
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
    let attrs = schema_attrs(&mut d, &main_path, &main.schema, &mut symbols);
    let lookup = Schema::new(attrs.clone(), Symbols::new());

    // Channels.
    let mut channels = Vec::new();
    for (cname, c) in &main.channels.0 {
        if !valid_name(cname.get_ref()) {
            d.at(
                &main_path,
                cname.span().start,
                "channel names are letters, digits, `_` or `-`",
            );
        }
        let c = c.get_ref();
        let direction = match c.direction.get_ref().as_str() {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            other => {
                d.at(
                    &main_path,
                    c.direction.span().start,
                    format!("direction `{other}` is neither `inbound` nor `outbound`"),
                );
                Direction::Inbound
            }
        };
        let limit = match &c.limit {
            Some(l) if !(1..=1000).contains(l.get_ref()) => {
                d.at(
                    &main_path,
                    l.span().start,
                    "channel limit must be between 1 and 1000",
                );
                None
            }
            Some(l) => Some(*l.get_ref() as usize),
            None => None,
        };
        let contact_limit = c.contact_limit.as_ref().and_then(|l| {
            let l = l.get_ref();
            let max = count(&mut d, &main_path, &l.max, "contact limit `max`");
            let within = duration(&mut d, &main_path, &l.within);
            Some(crate::ruleset::contact::ContactLimit {
                max: max?,
                within: within?,
            })
        });
        channels.push(Channel {
            name: cname.get_ref().as_str().into(),
            key: crate::base::channel_key(cname.get_ref()),
            direction,
            limit,
            contact_limit,
            actions: Box::new([]),
            needs: crate::ruleset::policy::Needs::default(),
            checks: crate::ruleset::policy::Checks::default(),
            volumes: Box::new([]),
            sym: 0,
        });
    }
    if channels.is_empty() {
        d.at(
            &main_path,
            0,
            "no channels: declare at least one under [channels]",
        );
    }
    for c in &mut channels {
        c.sym = symbols.intern(&c.name);
        symbols.channels.push(c.sym);
    }
    let channel_index: FxHashMap<&str, usize> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| (&*c.name, i))
        .collect();

    // Issues and groups.
    let mut issues = Vec::new();
    let mut issue_levers = Vec::new();
    for (iname, i) in &main.issues {
        if !valid_name(iname.get_ref()) {
            d.at(
                &main_path,
                iname.span().start,
                "issue names are letters, digits, `_` or `-`",
            );
        }
        issues.push(Issue {
            name: iname.get_ref().as_str().into(),
        });
        issue_levers.push(lever(&mut d, &main_path, i.get_ref().lever.as_ref()));
    }
    let issue_index: FxHashMap<&str, usize> = issues
        .iter()
        .enumerate()
        .map(|(i, x)| (&*x.name, i))
        .collect();

    let mut conds = CondTable::default();
    let mut groups = Vec::new();
    let mut group_levers = Vec::new();
    let mut group_checks: Vec<[Vec<u32>; 3]> = Vec::new();
    for (gname, g) in &main.groups {
        if !valid_name(gname.get_ref()) {
            d.at(
                &main_path,
                gname.span().start,
                "group names are letters, digits, `_` or `-`",
            );
        }
        let g = g.get_ref();
        let issue = match issue_index.get(g.issue.get_ref().as_str()) {
            Some(&i) => i as u32,
            None => {
                let hint = did_you_mean(crate::base::util::closest(
                    g.issue.get_ref(),
                    issues.iter().map(|i| &*i.name),
                ));
                d.at(
                    &main_path,
                    g.issue.span().start,
                    format!(
                        "unknown issue `{}`{hint}; declare it under [issues]",
                        g.issue.get_ref()
                    ),
                );
                0
            }
        };
        groups.push(Group {
            name: gname.get_ref().as_str().into(),
            key: crate::base::key(gname.get_ref()),
            issue,
        });
        group_levers.push(lever(&mut d, &main_path, g.lever.as_ref()));
        let mut scope = Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        };
        group_checks.push([
            conds.add(&mut d, &main_path, g.eligibility.as_ref(), &mut scope),
            conds.add(&mut d, &main_path, g.applicability.as_ref(), &mut scope),
            conds.add(&mut d, &main_path, g.suitability.as_ref(), &mut scope),
        ]);
    }
    let group_index: FxHashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, x)| (&*x.name, i))
        .collect();

    // Actions, sorted by id so index order is the tie-break order.
    action_srcs.sort_by(|a, b| {
        a.item
            .get_ref()
            .id
            .get_ref()
            .cmp(b.item.get_ref().id.get_ref())
    });
    let mut actions: Vec<Action> = Vec::new();
    let mut first_seen: FxHashMap<String, (PathBuf, usize)> = FxHashMap::default();
    for la in &action_srcs {
        let file = &la.file;
        let a: &ActionSrc = la.item.get_ref();
        let id = a.id.get_ref();
        if !valid_name(id) {
            d.at(
                file,
                a.id.span().start,
                "action ids are letters, digits, `_` or `-` (at most 128)",
            );
        }
        if let Some((first_file, first_at)) = first_seen.get(id) {
            let first = d.loc(first_file, *first_at);
            let msg = format!("duplicate action id `{id}` (first defined at {first})");
            d.at(file, a.id.span().start, msg);
            continue;
        }
        first_seen.insert(id.clone(), (file.clone(), a.id.span().start));
        let (group, issue) = match group_index.get(a.group.get_ref().as_str()) {
            Some(&g) => (g as u32, groups[g].issue),
            None => {
                let hint = did_you_mean(crate::base::util::closest(
                    a.group.get_ref(),
                    groups.iter().map(|g| &*g.name),
                ));
                d.at(
                    file,
                    a.group.span().start,
                    format!(
                        "unknown group `{}`{hint}; declare it under [groups] in ruleset.toml",
                        a.group.get_ref()
                    ),
                );
                (u32::MAX, 0)
            }
        };
        let sp = *a.starting_propensity.get_ref();
        if !(sp > 0.0 && sp <= 1.0) {
            d.at(
                file,
                a.starting_propensity.span().start,
                format!("starting_propensity must be in (0, 1], got {sp}"),
            );
        }
        let mut scope = Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        };
        let value = match a.value.get_ref() {
            ValueSrc::Number(v) if v.is_finite() => ValueFn::Const(*v),
            ValueSrc::Number(v) => {
                d.at(
                    file,
                    a.value.span().start,
                    format!("value must be a finite number, got {v}"),
                );
                ValueFn::Const(0.0)
            }
            ValueSrc::Expr(e) => match expr::compile_number(e, &mut scope) {
                Ok(ir) => {
                    let affine = Affine::of(&ir);
                    ValueFn::Expr(ir, e.as_str().into(), affine)
                }
                Err(err) => {
                    let off = string_offset(d.text(file), &a.value.span(), err.span.start);
                    d.at(file, off, format!("in value expression: {}", err.message));
                    ValueFn::Const(0.0)
                }
            },
        };
        let own = [
            conds.add(&mut d, file, a.eligibility.as_ref(), &mut scope),
            conds.add(&mut d, file, a.applicability.as_ref(), &mut scope),
            conds.add(&mut d, file, a.suitability.as_ref(), &mut scope),
        ];
        let mut checks = Vec::new();
        for (k, stage) in [Stage::Eligibility, Stage::Applicability, Stage::Suitability]
            .into_iter()
            .enumerate()
        {
            if let Some(gc) = group_checks.get(group as usize) {
                checks.extend(gc[k].iter().map(|&c| Check {
                    cond: c,
                    stage,
                    level: Level::Group,
                }));
            }
            checks.extend(own[k].iter().map(|&c| Check {
                cond: c,
                stage,
                level: Level::Action,
            }));
        }
        let action_lever = lever(&mut d, file, a.lever.as_ref());
        let total = action_lever
            + group_levers.get(group as usize).copied().unwrap_or(0.0)
            + issue_levers.get(issue as usize).copied().unwrap_or(0.0);
        if total < -100.0 {
            d.at(
                file,
                a.id.span().start,
                format!("issue, group and action levers sum to {total}%, which would make L negative (the sum must be at least -100)"),
            );
        }
        let treatments = action_treatments(&mut d, file, a, &channel_index, channels.len());
        actions.push(Action {
            key: crate::base::key(id),
            volumes: Box::new([]),
            id: id.as_str().into(),
            name: a.name.clone(),
            group,
            issue,
            value,
            starting_propensity: sp,
            lever: 1.0 + total / 100.0,
            need: crate::ruleset::policy::Need::of(&checks),
            checks: checks.into(),
            weights: Box::new([]),
            treatments,
        });
    }
    if action_srcs.is_empty() && !unparsed_action_files {
        d.at(
            &main_path,
            0,
            "the rule set has no actions: add [[actions]] to actions/*.toml",
        );
    }

    // Context weights.
    let mut weights = Vec::new();
    let mut weight_targets = Vec::new();
    for w in &main.context_weights {
        let w = w.get_ref();
        let mut scope = Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        };
        let cids = conds.add(&mut d, &main_path, Some(&w.when), &mut scope);
        let boost = *w.boost.get_ref();
        if !boost.is_finite() || boost < -100.0 {
            d.at(
                &main_path,
                w.boost.span().start,
                "boost must be a finite percentage of at least -100",
            );
        }
        let targets: Vec<(&str, &Spanned<String>)> = [
            ("issue", &w.issue),
            ("group", &w.group),
            ("action", &w.action),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let target = match targets.as_slice() {
            [(kind, t)] => {
                let known = match *kind {
                    "issue" => issue_index.contains_key(t.get_ref().as_str()),
                    "group" => group_index.contains_key(t.get_ref().as_str()),
                    _ => first_seen.contains_key(t.get_ref()),
                };
                if !known {
                    d.at(
                        &main_path,
                        t.span().start,
                        format!("unknown {kind} `{}`", t.get_ref()),
                    );
                }
                Some((*kind, t.get_ref().clone()))
            }
            _ => {
                d.at(
                    &main_path,
                    w.boost.span().start,
                    "a context weight needs exactly one target: issue = \"...\", group = \"...\" or action = \"...\"",
                );
                None
            }
        };
        weights.push(ContextWeight {
            need: crate::ruleset::policy::Need::of_conds(cids),
            boost,
        });
        weight_targets.push(target);
    }
    for action in &mut actions {
        let mut ws = Vec::new();
        for (i, t) in weight_targets.iter().enumerate() {
            let hit = match t {
                Some(("issue", n)) => issues
                    .get(action.issue as usize)
                    .is_some_and(|x| *x.name == **n),
                Some(("group", n)) => groups
                    .get(action.group as usize)
                    .is_some_and(|x| *x.name == **n),
                Some((_, n)) => *action.id == **n,
                None => false,
            };
            if hit {
                ws.push(i as u32);
            }
        }
        action.weights = ws.into();
    }
    for (ci, ch) in channels.iter_mut().enumerate() {
        ch.actions = actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.treatments.get(ci).is_some_and(Option::is_some))
            .map(|(i, _)| i as u32)
            .collect();
        ch.needs = crate::ruleset::policy::Needs::of(&actions, &ch.actions);
        ch.checks = crate::ruleset::policy::Checks::of(&actions, &ch.actions);
    }

    let experiment = main
        .experiment
        .as_ref()
        .and_then(|e| experiment(&mut d, &main_path, e, &channels));
    let strategy = main
        .strategy
        .as_ref()
        .and_then(|s| strategy(&mut d, &main_path, s, &lookup));
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
    let contact_policies = contact_policies(
        &mut d,
        &main_path,
        &main.contact_policies,
        &channels,
        &groups,
    );
    let volumes = volume_constraints(
        &mut d,
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
        .map(|l| learning(&mut d, &main_path, l.get_ref()));
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
        return Err(finish(d.errors));
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
        history_horizon,
        contact_limits,
        memo_tag,
        json: Box::default(),
        action_by_key,
        group_by_key,
        source: src.clone(),
    })
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

/// The index of `name` among `names`, or an error at its location with a
/// "did you mean" hint: "unknown {what} `x`; {declare}".
fn find_named<'n>(
    d: &mut Diag<'_>,
    file: &Path,
    name: &Spanned<String>,
    names: impl Iterator<Item = &'n str> + Clone,
    what: &str,
    declare: &str,
) -> Option<u32> {
    let found = names.clone().position(|n| n == name.get_ref());
    if found.is_none() {
        let hint = did_you_mean(crate::base::util::closest(name.get_ref(), names));
        d.at(
            file,
            name.span().start,
            format!("unknown {what} `{}`{hint}; {declare}", name.get_ref()),
        );
    }
    found.map(|i| i as u32)
}

fn find_channel(
    d: &mut Diag<'_>,
    file: &Path,
    name: &Spanned<String>,
    channels: &[Channel],
) -> Option<u32> {
    find_named(
        d,
        file,
        name,
        channels.iter().map(|c| &*c.name),
        "channel",
        "declare it under [channels]",
    )
}

fn find_group(
    d: &mut Diag<'_>,
    file: &Path,
    name: &Spanned<String>,
    groups: &[Group],
) -> Option<u32> {
    find_named(
        d,
        file,
        name,
        groups.iter().map(|g| &*g.name),
        "group",
        "declare it under [groups]",
    )
}

fn contact_policies(
    d: &mut Diag<'_>,
    file: &Path,
    srcs: &[Spanned<super::source::ContactPolicySrc>],
    channels: &[Channel],
    groups: &[Group],
) -> Vec<ContactPolicy> {
    let mut out = Vec::new();
    let mut names = FxHashMap::default();
    for p in srcs {
        let p = p.get_ref();
        if !valid_name(p.name.get_ref()) {
            d.at(
                file,
                p.name.span().start,
                "policy names are letters, digits, `_` or `-`",
            );
        }
        if names.insert(p.name.get_ref().clone(), ()).is_some() {
            d.at(
                file,
                p.name.span().start,
                format!("duplicate contact policy `{}`", p.name.get_ref()),
            );
        }
        let kinds = outcome_kinds(d, file, &p.outcomes);
        let count = count(d, file, &p.count, "`count`");
        let within = duration(d, file, &p.within);
        let suppress_for = p.suppress_for.as_ref().map(|s| duration(d, file, s));
        let per_group = match p.per.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "action")) => false,
            Some((_, "group")) => true,
            Some((s, other)) => {
                d.at(
                    file,
                    s.span().start,
                    format!("`per = \"{other}\"`: write `action` or `group`"),
                );
                false
            }
        };
        let channel = match &p.channel {
            Some(c) if c.get_ref() == "any" => None,
            Some(c) => find_channel(d, file, c, channels).map(|i| channels[i as usize].key),
            None => None,
        };
        let group = p
            .group
            .as_ref()
            .and_then(|g| find_group(d, file, g, groups))
            .map(|g| groups[g as usize].key);
        if let (Some(count), Some(within), Some(suppress_for)) =
            (count, within, suppress_for.unwrap_or(Some(0)))
        {
            out.push(ContactPolicy {
                name: p.name.get_ref().as_str().into(),
                kinds,
                count,
                within,
                suppress_for: p.suppress_for.as_ref().map(|_| suppress_for),
                per_group,
                channel,
                group,
            });
        }
    }
    out
}

fn volume_constraints(
    d: &mut Diag<'_>,
    file: &Path,
    srcs: &[Spanned<super::source::VolumeSrc>],
    channels: &[Channel],
    groups: &[Group],
    actions: &mut [Action],
) -> Vec<VolumeConstraint> {
    let mut out = Vec::new();
    let mut names = FxHashMap::default();
    for v in srcs {
        let at = v.span().start;
        let v = v.get_ref();
        if !valid_name(v.name.get_ref()) {
            d.at(
                file,
                v.name.span().start,
                "constraint names are letters, digits, `_` or `-`",
            );
        }
        if names.insert(v.name.get_ref().clone(), ()).is_some() {
            d.at(
                file,
                v.name.span().start,
                format!("duplicate volume constraint `{}`", v.name.get_ref()),
            );
        }
        let target = match (&v.action, &v.group, &v.channel) {
            (Some(a), None, None) => find_named(
                d,
                file,
                a,
                actions.iter().map(|x| &*x.id),
                "action",
                "constrain an action declared in actions/*.toml",
            )
            .map(VolumeTarget::Action),
            (None, Some(g), None) => find_group(d, file, g, groups).map(VolumeTarget::Group),
            (None, None, Some(c)) => find_channel(d, file, c, channels).map(VolumeTarget::Channel),
            _ => {
                d.at(
                    file,
                    at,
                    "a volume constraint names exactly one of `action`, `group` or `channel`",
                );
                None
            }
        };
        let max = count(d, file, &v.max, "`max`");
        let period = crate::ruleset::contact::Period::parse(v.period.get_ref());
        if period.is_none() {
            d.at(
                file,
                v.period.span().start,
                format!(
                    "period `{}` is not `hour`, `day` or `week`",
                    v.period.get_ref()
                ),
            );
        }
        if let (Some(target), Some(max), Some(period)) = (target, max, period) {
            out.push(VolumeConstraint {
                name: v.name.get_ref().as_str().into(),
                target,
                max,
                period,
            });
        }
    }
    for (ai, a) in actions.iter_mut().enumerate() {
        a.volumes = out
            .iter()
            .enumerate()
            .filter(|(_, v)| match v.target {
                VolumeTarget::Action(x) => x as usize == ai,
                VolumeTarget::Group(g) => g == a.group,
                VolumeTarget::Channel(_) => false,
            })
            .map(|(i, _)| i as u32)
            .collect();
    }
    out
}

fn learning(
    d: &mut Diag<'_>,
    file: &Path,
    l: &super::source::LearningSrc,
) -> crate::ruleset::learning::Learning {
    use crate::ruleset::learning::{Learning, Mode};
    let mut out = Learning::default();
    if let Some(m) = &l.mode {
        match Mode::parse(m.get_ref()) {
            Some(mode) => out.mode = mode,
            None => d.at(
                file,
                m.span().start,
                format!(
                    "learning mode `{}` is not `posterior_mean`, `thompson` or `epsilon_greedy`",
                    m.get_ref()
                ),
            ),
        }
    }
    if let Some(k) = &l.prior_strength {
        if k.get_ref().is_finite() && (0.01..=1e6).contains(k.get_ref()) {
            out.prior_strength = *k.get_ref();
        } else {
            d.at(
                file,
                k.span().start,
                "`prior_strength` must be between 0.01 and 1000000 (pseudo-outcomes)",
            );
        }
    }
    if let Some(e) = &l.epsilon {
        if (0.0..=1.0).contains(e.get_ref()) {
            out.epsilon = *e.get_ref();
        } else {
            d.at(file, e.span().start, "`epsilon` must be between 0 and 1");
        }
    }
    if out.mode == Mode::EpsilonGreedy && l.epsilon.is_none() {
        out.epsilon = 0.1;
    }
    if let Some(s) = &l.success {
        out.success = outcome_kinds(d, file, s);
    }
    if let Some(f) = &l.failure {
        out.failure = outcome_kinds(d, file, f);
    }
    if out.success & out.failure != 0 {
        let at = l.success.as_ref().map_or(0, |s| s.span().start);
        d.at(
            file,
            at,
            "an outcome cannot count both as success and as failure",
        );
    }
    if let Some(m) = &l.min_evidence {
        match u32::try_from(*m.get_ref()) {
            Ok(v) => out.min_evidence = v,
            Err(_) => d.at(
                file,
                m.span().start,
                "`min_evidence` must be a whole number >= 0",
            ),
        }
    }
    out
}

fn strategy(
    d: &mut Diag<'_>,
    file: &Path,
    s: &Spanned<super::source::StrategySrc>,
    schema: &Schema,
) -> Option<crate::ruleset::strategy::Strategy> {
    let s = s.get_ref();
    let path = PathBuf::from(s.script.get_ref());
    let Some(text) = d.src.files.get(&path) else {
        d.at(
            file,
            s.script.span().start,
            format!(
                "strategy script `{}` not found: scripts live in strategies/*.rhai",
                path.display()
            ),
        );
        return None;
    };
    match crate::ruleset::strategy::Strategy::compile(
        &path, text, &s.limits, s.lower, s.on_error, schema,
    ) {
        Ok(st) => Some(st),
        Err(e) => {
            d.errors.push(RuleError {
                location: Location {
                    file: path,
                    line: e.line,
                    column: e.column,
                },
                message: e.message,
            });
            None
        }
    }
}

fn experiment(
    d: &mut Diag<'_>,
    file: &Path,
    e: &Spanned<super::source::ExperimentSrc>,
    channels: &[Channel],
) -> Option<super::Experiment> {
    let at = e.span().start;
    let e = e.get_ref();
    let share = |d: &mut Diag<'_>, s: &Option<Spanned<f64>>| match s {
        Some(s) if !(0.0..=1.0).contains(s.get_ref()) => {
            d.at(
                file,
                s.span().start,
                "a share is a fraction between 0 and 1",
            );
            0.0
        }
        Some(s) => *s.get_ref(),
        None => 0.0,
    };
    let challenger_share = share(d, &e.challenger_share);
    let control_share = share(d, &e.control_share);
    if challenger_share + control_share > 1.0 {
        d.at(
            file,
            at,
            "challenger_share + control_share must not exceed 1",
        );
    }
    let control = match e.control.as_ref().map(|c| c.get_ref().as_str()) {
        None | Some("no_action") => super::ControlMode::NoAction,
        Some("random_eligible") => super::ControlMode::RandomEligible,
        Some(other) => {
            let span = e.control.as_ref().map_or(at, |c| c.span().start);
            d.at(
                file,
                span,
                format!("control `{other}` is neither `no_action` nor `random_eligible`"),
            );
            super::ControlMode::NoAction
        }
    };
    let challenger = match (&e.challenger, d.src.challenger.as_deref()) {
        (Some(name), Some(csrc)) => match compile(csrc) {
            Ok(c) if c.experiment.is_some() => {
                d.at(
                    file,
                    name.span().start,
                    "the challenger has an [experiment] of its own; experiments do not nest",
                );
                None
            }
            Ok(c) => {
                for ch in channels {
                    if c.channel(&ch.name).is_err() {
                        d.at(
                            file,
                            name.span().start,
                            format!("the challenger does not declare channel `{}`", ch.name),
                        );
                    }
                }
                Some(Box::new(c))
            }
            Err(errs) => {
                for mut err in errs.0 {
                    err.location.file = Path::new(name.get_ref()).join(&err.location.file);
                    d.errors.push(err);
                }
                None
            }
        },
        (Some(name), None) => {
            d.at(
                file,
                name.span().start,
                format!("challenger `{}` was not loaded", name.get_ref()),
            );
            None
        }
        (None, _) => {
            if challenger_share > 0.0 {
                d.at(
                    file,
                    at,
                    "challenger_share is set but no `challenger` directory is named",
                );
            }
            None
        }
    };
    let seed = xxhash_rust::xxh3::xxh3_64(format!("{}\0{}", e.name.get_ref(), e.salt).as_bytes());
    Some(super::Experiment {
        name: e.name.get_ref().clone(),
        seed,
        challenger,
        challenger_share,
        control_share,
        control,
    })
}

fn finish(mut errors: Vec<RuleError>) -> RuleErrors {
    errors.sort_by(|a, b| a.location.cmp(&b.location));
    errors.dedup();
    RuleErrors(errors)
}

fn lever(d: &mut Diag<'_>, file: &Path, l: Option<&Spanned<f64>>) -> f64 {
    match l {
        Some(l) if !l.get_ref().is_finite() || l.get_ref().abs() > 1e6 => {
            d.at(file, l.span().start, "lever must be a finite percentage");
            0.0
        }
        Some(l) => *l.get_ref(),
        None => 0.0,
    }
}

fn action_treatments(
    d: &mut Diag<'_>,
    file: &Path,
    a: &ActionSrc,
    channel_index: &FxHashMap<&str, usize>,
    n: usize,
) -> Box<[Option<Arc<str>>]> {
    let mut out: Vec<Option<Arc<str>>> = vec![None; n];
    let listed: Vec<&str> = a
        .channels
        .get_ref()
        .iter()
        .map(|c| c.get_ref().as_str())
        .collect();
    if listed.is_empty() {
        d.at(
            file,
            a.channels.span().start,
            "an action needs at least one channel",
        );
    }
    for c in a.channels.get_ref() {
        let Some(&ci) = channel_index.get(c.get_ref().as_str()) else {
            let hint = did_you_mean(crate::base::util::closest(
                c.get_ref(),
                channel_index.keys().copied(),
            ));
            d.at(
                file,
                c.span().start,
                format!(
                    "unknown channel `{}`{hint}; declare it under [channels]",
                    c.get_ref()
                ),
            );
            continue;
        };
        let t = a
            .treatments
            .iter()
            .find(|(k, _)| k.get_ref() == c.get_ref())
            .map(|(_, v)| v.clone())
            .or_else(|| a.treatment.clone());
        match t {
            Some(t) => out[ci] = Some(t.into()),
            None => d.at(
                file,
                c.span().start,
                format!(
                    "no treatment for channel `{}`: add it to `treatments` or set a default `treatment`",
                    c.get_ref()
                ),
            ),
        }
    }
    for k in a.treatments.keys() {
        if !listed.contains(&k.get_ref().as_str()) {
            d.at(
                file,
                k.span().start,
                format!(
                    "treatment for channel `{}`, which is not in this action's `channels`",
                    k.get_ref()
                ),
            );
        }
    }
    out.into()
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

fn schema_attrs(
    d: &mut Diag<'_>,
    file: &Path,
    schema: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    symbols: &mut Symbols,
) -> Vec<Attribute> {
    let mut attrs = Vec::new();
    if schema.is_empty() {
        d.at(
            file,
            0,
            "no [schema]: declare the context attributes conditions may use",
        );
    }
    if schema.len() > u16::MAX as usize {
        d.at(file, 0, "too many schema attributes");
        return attrs;
    }
    for (name, decl) in schema {
        let at = decl.span().start;
        if name.get_ref() == crate::expr::CHANNEL {
            d.at(
                file,
                name.span().start,
                "`channel` is a built-in name (the request's channel); choose another attribute name",
            );
        }
        if !valid_ident(name.get_ref()) {
            d.at(
                file,
                name.span().start,
                format!("attribute `{}` is not a valid name: letters, digits and `_`, not starting with a digit", name.get_ref()),
            );
        }
        let (ty_name, table) = match decl.get_ref() {
            toml::Value::String(t) => (Some(t.clone()), None),
            toml::Value::Table(t) => (
                t.get("type").and_then(|v| v.as_str()).map(str::to_string),
                Some(t),
            ),
            _ => (None, None),
        };
        let Some(ty_name) = ty_name else {
            d.at(
                file,
                at,
                "an attribute is a type name (\"int\") or a table with `type = \"...\"`",
            );
            continue;
        };
        let Some(ty) = AttrType::parse(&ty_name) else {
            d.at(
                file,
                at,
                format!("unknown type `{ty_name}`; use int, float, bool, string, string_set or timestamp"),
            );
            continue;
        };
        let mut attr = Attribute {
            name: name.get_ref().as_str().into(),
            ty,
            sensitive: false,
            values: None,
            default_value: None,
            derived: false,
        };
        if let Some(t) = table {
            for (k, v) in t {
                match k.as_str() {
                    "type" | "description" => {}
                    "sensitive" => match v.as_bool() {
                        Some(b) => attr.sensitive = b,
                        None => d.at(file, at, "`sensitive` must be true or false"),
                    },
                    "values" => {
                        let vals: Option<Vec<String>> = v
                            .as_array()
                            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect());
                        match (vals, ty) {
                            (Some(vals), AttrType::String | AttrType::StringSet) if !vals.is_empty() => {
                                for v in &vals {
                                    symbols.intern(v);
                                }
                                attr.values = Some(vals);
                            }
                            (_, AttrType::String | AttrType::StringSet) => {
                                d.at(file, at, "`values` must be a non-empty array of strings")
                            }
                            _ => d.at(file, at, "`values` is only for string and string_set attributes"),
                        }
                    }
                    "default" => {}
                    "derived" => match v.as_bool() {
                        Some(b) => attr.derived = b,
                        None => d.at(file, at, "`derived` must be true or false"),
                    },
                    other => d.at(
                        file,
                        at,
                        format!("unknown key `{other}` in attribute `{}`; expected type, values, sensitive, default, derived or description", name.get_ref()),
                    ),
                }
            }
            if let Some(def) = t.get("default") {
                match default_value(ty, def) {
                    Ok(v) => {
                        let bad = match (&v, &attr.values) {
                            (Value::String(s), Some(vals)) => !vals.contains(s),
                            (Value::StringSet(items), Some(vals)) => {
                                items.iter().any(|s| !vals.contains(s))
                            }
                            _ => false,
                        };
                        if bad {
                            d.at(file, at, "default is not one of the allowed values");
                        }
                        attr.default_value = Some(v);
                    }
                    Err(m) => d.at(file, at, format!("bad default: {m}")),
                }
            }
        }
        attrs.push(attr);
    }
    attrs
}

fn default_value(ty: AttrType, v: &toml::Value) -> Result<Value, String> {
    if let (AttrType::Timestamp, toml::Value::Datetime(dt)) = (ty, v) {
        return Timestamp::parse(&dt.to_string()).map(Value::Timestamp);
    }
    json_value(ty, &crate::base::util::toml_to_json(v))
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
