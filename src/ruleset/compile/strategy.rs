//! `[strategy]` (the rhai hooks) and `[learning]`.

use super::*;

pub(super) fn learning(
    d: &mut Diag<'_>,
    file: &Path,
    l: &crate::ruleset::source::LearningSrc,
    attrs: &[crate::context::schema::Attribute],
    symbols: &mut Symbols,
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
    match l
        .model
        .as_ref()
        .map(|m| (m.get_ref().as_str(), m.span().start))
    {
        None | Some(("beta", _)) => {
            if let Some(p) = &l.predictors {
                d.at(
                    file,
                    p.span().start,
                    "`predictors` need `model = \"contextual\"`",
                );
            }
        }
        Some(("contextual", at)) => {
            out.contextual = contextual(d, file, l, at, attrs, symbols).map(std::sync::Arc::new);
        }
        Some((other, at)) => d.at(
            file,
            at,
            format!("learning model `{other}` is not `beta` or `contextual`"),
        ),
    }
    out
}

/// `model = "contextual"`: its predictors, their bins and its settings.
fn contextual(
    d: &mut Diag<'_>,
    file: &Path,
    l: &crate::ruleset::source::LearningSrc,
    model_at: usize,
    attrs: &[crate::context::schema::Attribute],
    symbols: &mut Symbols,
) -> Option<crate::ruleset::learning::Contextual> {
    use crate::base::AttrType;
    use crate::ruleset::learning::{Contextual, Predictor, PredictorKind};
    let Some(names) = &l.predictors else {
        d.at(
            file,
            model_at,
            "a contextual model needs `predictors = [\"attribute\", ...]`",
        );
        return None;
    };
    let bins = l.bins.as_ref().map(|b| b.get_ref());
    if let Some(bins) = bins {
        for key in bins.keys() {
            if !names.get_ref().iter().any(|n| n.get_ref() == key.get_ref()) {
                d.at(
                    file,
                    key.span().start,
                    format!(
                        "bins for `{}`, which is not one of the `predictors`",
                        key.get_ref()
                    ),
                );
            }
        }
    }
    let mut predictors = Vec::new();
    let mut offset = 0u32;
    let mut seen = std::collections::HashSet::new();
    for name in names.get_ref() {
        let at = name.span().start;
        if !seen.insert(name.get_ref().as_str()) {
            d.at(
                file,
                at,
                format!("predictor `{}` is listed twice", name.get_ref()),
            );
            continue;
        }
        let Some((slot, attr)) = attrs
            .iter()
            .enumerate()
            .find(|(_, a)| &*a.name == name.get_ref().as_str())
        else {
            d.at(
                file,
                at,
                format!(
                    "predictor `{}` is not an attribute of the schema",
                    name.get_ref()
                ),
            );
            continue;
        };
        let slot = slot as u16;
        let declared = bins.and_then(|b| {
            b.iter()
                .find(|(k, _)| k.get_ref() == name.get_ref())
                .map(|(_, v)| v)
        });
        let bins_at = declared.map_or(at, |v| v.span().start);
        let strings = |d: &mut Diag<'_>| -> Option<Vec<String>> {
            let v = declared?;
            match v.get_ref().as_array().map(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            }) {
                Some(Some(list))
                    if !list.is_empty()
                        && list.iter().all(|v| !v.is_empty() && !v.contains('/'))
                        && list.iter().collect::<std::collections::HashSet<_>>().len()
                            == list.len() =>
                {
                    Some(list)
                }
                _ => {
                    d.at(
                        file,
                        bins_at,
                        format!(
                            "the bins of `{}` must be a non-empty list of its values, each once, none empty or with a `/`",
                            name.get_ref()
                        ),
                    );
                    None
                }
            }
        };
        let mut push = |kind: PredictorKind, pname: String, labels: Vec<String>| {
            let len = labels.len() as u32;
            // A specified hash: specs name counts in state files and in a
            // fleet's store, across builds and machines.
            let spec = xxhash_rust::xxh3::xxh3_64(
                format!("{pname}\u{1f}{}", labels.join("\u{1f}")).as_bytes(),
            );
            predictors.push(Predictor {
                name: pname.into(),
                slot,
                kind,
                offset,
                len,
                spec,
            });
            offset += len;
        };
        match attr.ty {
            AttrType::Int | AttrType::Float => {
                let edges: Option<Vec<f64>> = declared.and_then(|v| {
                    v.get_ref().as_array().and_then(|a| {
                        a.iter()
                            .map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
                            .collect::<Option<Vec<_>>>()
                    })
                });
                let Some(edges) = edges.filter(|e| {
                    !e.is_empty()
                        && e.iter().all(|x| x.is_finite())
                        && e.windows(2).all(|w| w[0] < w[1])
                }) else {
                    d.at(
                        file,
                        bins_at,
                        format!(
                            "numeric predictor `{}` needs its bin edges, ascending: `[learning.bins] {} = [10, 20, 50]`",
                            name.get_ref(),
                            name.get_ref()
                        ),
                    );
                    continue;
                };
                let mut labels = Vec::with_capacity(edges.len() + 2);
                labels.push(format!("< {}", edges[0]));
                for w in edges.windows(2) {
                    labels.push(format!("[{}, {})", w[0], w[1]));
                }
                labels.push(format!(">= {}", edges[edges.len() - 1]));
                labels.push("missing".into());
                push(PredictorKind::Numeric(edges.into()), name.get_ref().clone(), labels);
            }
            AttrType::Bool => {
                if declared.is_some() {
                    d.at(file, bins_at, format!("bool predictor `{}` takes no bins", name.get_ref()));
                }
                push(
                    PredictorKind::Bool,
                    name.get_ref().clone(),
                    vec!["false".into(), "true".into(), "missing".into()],
                );
            }
            AttrType::String => {
                let values = match (strings(d), &attr.values) {
                    (Some(v), Some(allowed)) => {
                        if let Some(bad) = v.iter().find(|x| !allowed.contains(x)) {
                            d.at(
                                file,
                                bins_at,
                                format!("`{bad}` is not a value of `{}` ({})", name.get_ref(), allowed.join(", ")),
                            );
                            continue;
                        }
                        v
                    }
                    (Some(v), None) => v,
                    (None, Some(allowed)) if declared.is_none() => allowed.clone(),
                    (None, _) => {
                        if declared.is_none() {
                            d.at(
                                file,
                                at,
                                format!(
                                    "string predictor `{}` has no declared values: list the ones that get bins, `[learning.bins] {} = [\"a\", \"b\"]`",
                                    name.get_ref(),
                                    name.get_ref()
                                ),
                            );
                        }
                        continue;
                    }
                };
                let syms: Vec<u32> = values.iter().map(|v| symbols.intern(v)).collect();
                let mut labels = values;
                labels.push("other".into());
                labels.push("missing".into());
                push(PredictorKind::Symbol(syms.into()), name.get_ref().clone(), labels);
            }
            AttrType::StringSet => {
                let Some(values) = strings(d) else {
                    if declared.is_none() {
                        d.at(
                            file,
                            at,
                            format!(
                                "string-set predictor `{}` needs the values whose membership counts: `[learning.bins] {} = [\"a\", \"b\"]`",
                                name.get_ref(),
                                name.get_ref()
                            ),
                        );
                    }
                    continue;
                };
                for v in values {
                    let sym = symbols.intern(&v);
                    push(
                        PredictorKind::Member(sym),
                        format!("{}:{v}", name.get_ref()),
                        vec!["out".into(), "in".into(), "missing".into()],
                    );
                }
            }
            AttrType::Timestamp => d.at(
                file,
                at,
                format!(
                    "timestamp `{}` cannot be a predictor: derive a number from it (e.g. days since) and use that",
                    name.get_ref()
                ),
            ),
        }
    }
    let whole = |d: &mut Diag<'_>, v: &Option<Spanned<i64>>, what: &str, default: u32| match v {
        None => default,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) => n,
            Err(_) => {
                d.at(
                    file,
                    v.span().start,
                    format!("`{what}` must be a whole number >= 0"),
                );
                default
            }
        },
    };
    let mature_positives = whole(d, &l.mature_positives, "mature_positives", 20);
    let snapshot_every = whole(d, &l.snapshot_every, "snapshot_every", 100).max(1);
    let smoothing = match &l.smoothing {
        None => 10.0,
        Some(a) if a.get_ref().is_finite() && (0.001..=1000.0).contains(a.get_ref()) => {
            *a.get_ref()
        }
        Some(a) => {
            d.at(
                file,
                a.span().start,
                "`smoothing` must be between 0.001 and 1000",
            );
            1.0
        }
    };
    if predictors.is_empty() {
        if !names.get_ref().is_empty() || seen.is_empty() {
            d.at(
                file,
                names.span().start,
                "a contextual model needs at least one predictor",
            );
        }
        return None;
    }
    let specs: Vec<u8> = predictors
        .iter()
        .flat_map(|p| p.spec.to_le_bytes())
        .collect();
    Some(Contextual {
        id: xxhash_rust::xxh3::xxh3_64(&specs),
        bins: offset,
        predictors,
        mature_positives,
        smoothing,
        snapshot_every,
    })
}

pub(super) fn strategy(
    d: &mut Diag<'_>,
    file: &Path,
    s: &Spanned<crate::ruleset::source::StrategySrc>,
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
