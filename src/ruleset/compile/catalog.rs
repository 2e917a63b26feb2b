//! The catalog: channels, issues, groups and actions, with the engagement
//! policies (eligibility, applicability, suitability) of groups and
//! actions, and the context weights.

use super::*;

/// What the catalog compiles to.
pub(super) struct Catalog {
    pub channels: Vec<Channel>,
    pub issues: Vec<Issue>,
    pub groups: Vec<Group>,
    pub actions: Vec<Action>,
    pub weights: Vec<ContextWeight>,
}

/// Compile the catalog. `lookup` is the schema conditions are checked
/// against; `symbols` and `conds` are shared with the rest of the rule set.
#[allow(clippy::too_many_arguments)]
pub(super) fn catalog(
    d: &mut Diag<'_>,
    main_path: &Path,
    main: &RulesetFile,
    action_srcs: Vec<Located<ActionSrc>>,
    unparsed_action_files: bool,
    lookup: &Schema,
    symbols: &mut Symbols,
    conds: &mut CondTable,
) -> Catalog {
    let mut channels = channels(d, main_path, main, symbols);
    let tax = taxonomy(d, main_path, main, lookup, symbols, conds);
    let (mut actions, first_seen) = actions(
        d,
        main_path,
        action_srcs,
        unparsed_action_files,
        &channels,
        &tax,
        lookup,
        symbols,
        conds,
    );
    let weights = context_weights(
        d,
        main_path,
        main,
        &tax,
        &first_seen,
        lookup,
        symbols,
        conds,
        &mut actions,
    );
    index_channels(&mut channels, &actions);
    Catalog {
        channels,
        issues: tax.issues,
        groups: tax.groups,
        actions,
        weights,
    }
}

/// `[channels]`, each interned as a symbol (conditions compare channels).
pub(super) fn channels(
    d: &mut Diag<'_>,
    main_path: &Path,
    main: &RulesetFile,
    symbols: &mut Symbols,
) -> Vec<Channel> {
    let mut channels = Vec::new();
    for (cname, c) in &main.channels.0 {
        if !valid_name(cname.get_ref()) {
            d.at(
                main_path,
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
                    main_path,
                    c.direction.span().start,
                    format!("direction `{other}` is neither `inbound` nor `outbound`"),
                );
                Direction::Inbound
            }
        };
        let limit = match &c.limit {
            Some(l) if !(1..=1000).contains(l.get_ref()) => {
                d.at(
                    main_path,
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
            let max = count(d, main_path, &l.max, "contact limit `max`");
            let within = duration(d, main_path, &l.within);
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
            main_path,
            0,
            "no channels: declare at least one under [channels]",
        );
    }
    for c in &mut channels {
        c.sym = symbols.intern(&c.name);
        symbols.channels.push(c.sym);
    }

    channels
}

/// `[issues]` and `[groups]`: names, levers and the groups' engagement
/// policies.
pub(super) struct Taxonomy {
    pub issues: Vec<Issue>,
    pub issue_levers: Vec<f64>,
    pub groups: Vec<Group>,
    pub group_levers: Vec<f64>,
    /// Each group's eligibility, applicability and suitability conjuncts.
    pub group_checks: Vec<[Vec<u32>; 3]>,
}

fn taxonomy(
    d: &mut Diag<'_>,
    main_path: &Path,
    main: &RulesetFile,
    lookup: &Schema,
    symbols: &mut Symbols,
    conds: &mut CondTable,
) -> Taxonomy {
    let mut issues = Vec::new();
    let mut issue_levers = Vec::new();
    for (iname, i) in &main.issues {
        if !valid_name(iname.get_ref()) {
            d.at(
                main_path,
                iname.span().start,
                "issue names are letters, digits, `_` or `-`",
            );
        }
        issues.push(Issue {
            name: iname.get_ref().as_str().into(),
        });
        issue_levers.push(lever(d, main_path, i.get_ref().lever.as_ref()));
    }
    let issue_index: FxHashMap<&str, usize> = issues
        .iter()
        .enumerate()
        .map(|(i, x)| (&*x.name, i))
        .collect();

    let mut groups = Vec::new();
    let mut group_levers = Vec::new();
    let mut group_checks: Vec<[Vec<u32>; 3]> = Vec::new();
    for (gname, g) in &main.groups {
        if !valid_name(gname.get_ref()) {
            d.at(
                main_path,
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
                    main_path,
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
        group_levers.push(lever(d, main_path, g.lever.as_ref()));
        let mut scope = Scope {
            attrs: lookup,
            symbols,
        };
        group_checks.push([
            conds.add(d, main_path, g.eligibility.as_ref(), &mut scope),
            conds.add(d, main_path, g.applicability.as_ref(), &mut scope),
            conds.add(d, main_path, g.suitability.as_ref(), &mut scope),
        ]);
    }

    Taxonomy {
        issues,
        issue_levers,
        groups,
        group_levers,
        group_checks,
    }
}

impl Taxonomy {
    fn issue_index(&self, name: &str) -> Option<usize> {
        self.issues.iter().position(|i| *i.name == *name)
    }
    fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| *g.name == *name)
    }
}

/// The actions (from ruleset.toml and actions/*.toml), sorted by id so that
/// index order is the tie-break order, with their engagement policies
/// after their group's; and where each id was first defined.
#[allow(clippy::too_many_arguments)]
fn actions(
    d: &mut Diag<'_>,
    main_path: &Path,
    mut action_srcs: Vec<Located<ActionSrc>>,
    unparsed_action_files: bool,
    channels: &[Channel],
    tax: &Taxonomy,
    lookup: &Schema,
    symbols: &mut Symbols,
    conds: &mut CondTable,
) -> (Vec<Action>, FxHashMap<String, (PathBuf, usize)>) {
    let channel_index: FxHashMap<&str, usize> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| (&*c.name, i))
        .collect();
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
        let (group, issue) = match tax.group_index(a.group.get_ref()) {
            Some(g) => (g as u32, tax.groups[g].issue),
            None => {
                let hint = did_you_mean(crate::base::util::closest(
                    a.group.get_ref(),
                    tax.groups.iter().map(|g| &*g.name),
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
            attrs: lookup,
            symbols,
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
            conds.add(d, file, a.eligibility.as_ref(), &mut scope),
            conds.add(d, file, a.applicability.as_ref(), &mut scope),
            conds.add(d, file, a.suitability.as_ref(), &mut scope),
        ];
        let mut checks = Vec::new();
        for (k, stage) in [Stage::Eligibility, Stage::Applicability, Stage::Suitability]
            .into_iter()
            .enumerate()
        {
            if let Some(gc) = tax.group_checks.get(group as usize) {
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
        let action_lever = lever(d, file, a.lever.as_ref());
        let total = action_lever
            + tax.group_levers.get(group as usize).copied().unwrap_or(0.0)
            + tax.issue_levers.get(issue as usize).copied().unwrap_or(0.0);
        if total < -100.0 {
            d.at(
                file,
                a.id.span().start,
                format!("issue, group and action levers sum to {total}%, which would make L negative (the sum must be at least -100)"),
            );
        }
        let treatments = action_treatments(d, file, a, &channel_index, channels.len());
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
            main_path,
            0,
            "the rule set has no actions: add [[actions]] to actions/*.toml",
        );
    }

    (actions, first_seen)
}

/// `[[context_weights]]`, and each action's list of the weights that
/// apply to it.
#[allow(clippy::too_many_arguments)]
fn context_weights(
    d: &mut Diag<'_>,
    main_path: &Path,
    main: &RulesetFile,
    tax: &Taxonomy,
    first_seen: &FxHashMap<String, (PathBuf, usize)>,
    lookup: &Schema,
    symbols: &mut Symbols,
    conds: &mut CondTable,
    actions: &mut [Action],
) -> Vec<ContextWeight> {
    let mut weights = Vec::new();
    let mut weight_targets = Vec::new();
    for w in &main.context_weights {
        let w = w.get_ref();
        let mut scope = Scope {
            attrs: lookup,
            symbols,
        };
        let cids = conds.add(d, main_path, Some(&w.when), &mut scope);
        let boost = *w.boost.get_ref();
        if !boost.is_finite() || boost < -100.0 {
            d.at(
                main_path,
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
                    "issue" => tax.issue_index(t.get_ref()).is_some(),
                    "group" => tax.group_index(t.get_ref()).is_some(),
                    _ => first_seen.contains_key(t.get_ref()),
                };
                if !known {
                    d.at(
                        main_path,
                        t.span().start,
                        format!("unknown {kind} `{}`", t.get_ref()),
                    );
                }
                Some((*kind, t.get_ref().clone()))
            }
            _ => {
                d.at(
                    main_path,
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
    for action in actions.iter_mut() {
        let mut ws = Vec::new();
        for (i, t) in weight_targets.iter().enumerate() {
            let hit = match t {
                Some(("issue", n)) => tax
                    .issues
                    .get(action.issue as usize)
                    .is_some_and(|x| *x.name == **n),
                Some(("group", n)) => tax
                    .groups
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
    weights
}

/// Each channel's actions (those with a treatment for it) and the tables
/// its engagement policies are evaluated with.
fn index_channels(channels: &mut [Channel], actions: &[Action]) {
    for (ci, ch) in channels.iter_mut().enumerate() {
        ch.actions = actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.treatments.get(ci).is_some_and(Option::is_some))
            .map(|(i, _)| i as u32)
            .collect();
        ch.needs = crate::ruleset::policy::Needs::of(actions, &ch.actions);
        ch.checks = crate::ruleset::policy::Checks::of(actions, &ch.actions);
    }
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
