//! Contact policies and volume constraints: what interaction history
//! suppresses and what is capped per period.

use super::*;

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

pub(super) fn contact_policies(
    d: &mut Diag<'_>,
    file: &Path,
    srcs: &[Spanned<crate::ruleset::source::ContactPolicySrc>],
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

pub(super) fn volume_constraints(
    d: &mut Diag<'_>,
    file: &Path,
    srcs: &[Spanned<crate::ruleset::source::VolumeSrc>],
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
