//! `[experiment]`: champion, challenger and control.

use super::*;

pub(super) fn experiment(
    d: &mut Diag<'_>,
    file: &Path,
    e: &Spanned<crate::ruleset::source::ExperimentSrc>,
    channels: &[Channel],
) -> Option<crate::ruleset::Experiment> {
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
        None | Some("no_action") => crate::ruleset::ControlMode::NoAction,
        Some("random_eligible") => crate::ruleset::ControlMode::RandomEligible,
        Some(other) => {
            let span = e.control.as_ref().map_or(at, |c| c.span().start);
            d.at(
                file,
                span,
                format!("control `{other}` is neither `no_action` nor `random_eligible`"),
            );
            crate::ruleset::ControlMode::NoAction
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
    Some(crate::ruleset::Experiment {
        name: e.name.get_ref().clone(),
        seed,
        challenger,
        challenger_share,
        control_share,
        control,
    })
}
