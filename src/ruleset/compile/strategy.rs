//! `[strategy]` (the rhai hooks) and `[learning]`.

use super::*;

pub(super) fn learning(
    d: &mut Diag<'_>,
    file: &Path,
    l: &crate::ruleset::source::LearningSrc,
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
