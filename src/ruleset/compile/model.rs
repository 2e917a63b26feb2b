//! Predictive models (`models/*.toml`): each schema attribute declared
//! with `model = "models/NAME.toml"` gets its file parsed and checked
//! against the schema, and compiled into a [`Model`].
//!
//! Every error is located in the model file (or at the attribute's
//! declaration when the file is missing): an input that is not a schema
//! attribute, an input whose term does not fit its attribute's type (a
//! coefficient for a string, points for a number), a value that is not
//! one of a closed attribute's values, bins out of order, a number that
//! is not finite.

use super::*;
use crate::ruleset::model::{Input, Link, Model, Term};
use crate::ruleset::source::{from_toml, Ordered};

/// A model file, as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    /// For the reader of the file.
    #[allow(dead_code)]
    description: Option<String>,
    link: Spanned<String>,
    intercept: Spanned<f64>,
    #[serde(default)]
    inputs: Ordered<Spanned<InputSrc>>,
}

/// `[inputs.ATTRIBUTE]`: one term.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSrc {
    coefficient: Option<Spanned<f64>>,
    bins: Option<Spanned<Vec<Spanned<BinSrc>>>>,
    points: Option<Spanned<Ordered<Spanned<f64>>>>,
    other: Option<Spanned<f64>>,
    missing: Option<Spanned<f64>>,
    #[allow(dead_code)]
    description: Option<String>,
}

/// One bin: values below `below` (the last bin has none: the rest).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BinSrc {
    below: Option<Spanned<f64>>,
    points: Spanned<f64>,
}

/// The most inputs one model may have.
const MAX_INPUTS: usize = 10_000;

/// Compile the model of every attribute of `schema` that names one, and
/// report model files no attribute names. `decls` is `[schema]` as
/// written (for the location of an attribute's declaration). String
/// values the models give points to are interned in `symbols`.
pub(super) fn models(
    d: &mut Diag<'_>,
    main_path: &Path,
    decls: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    schema: &Schema,
    symbols: &mut Symbols,
) -> Vec<Model> {
    let mut out = Vec::new();
    for (slot, attr) in (0u16..).zip(&schema.attrs) {
        let Some(file) = &attr.model else { continue };
        let at = decls
            .iter()
            .find(|(k, _)| k.get_ref().as_str() == &*attr.name)
            .map_or(0, |(_, v)| v.span().start);
        let path = PathBuf::from(&**file);
        let in_models = path.starts_with("models") && path.extension().is_some_and(|e| e == "toml");
        let Some(text) = d.src.files.get(&path).filter(|_| in_models) else {
            d.at(
                main_path,
                at,
                format!("model file `{file}` not found: model files live in models/*.toml"),
            );
            continue;
        };
        let (parsed, errors) = from_toml::<ModelFile>(text);
        for (offset, message) in errors {
            d.at(&path, offset, message);
        }
        let Some(parsed) = parsed else { continue };
        let before = d.errors.len();
        let model = Model {
            name: attr.name.clone(),
            slot,
            hash: sha_hex(text.as_bytes()).into(),
            intercept: finite(d, &path, &parsed.intercept, "intercept"),
            link: link(d, &path, &parsed.link),
            inputs: inputs(d, &path, &parsed, schema, symbols).into(),
        };
        if d.errors.len() == before {
            out.push(model);
        }
    }
    for path in d.src.files.keys() {
        let named = schema
            .attrs
            .iter()
            .any(|a| a.model.as_deref().is_some_and(|m| Path::new(m) == path));
        if path.starts_with("models") && !named {
            d.at(
                path,
                0,
                format!(
                    "model file `{}` is not the `model` of any schema attribute",
                    path.display()
                ),
            );
        }
    }
    out
}

fn link(d: &mut Diag<'_>, file: &Path, s: &Spanned<String>) -> Link {
    Link::parse(s.get_ref()).unwrap_or_else(|| {
        d.at(
            file,
            s.span().start,
            format!("link `{}` is not `logistic` or `identity`", s.get_ref()),
        );
        Link::Identity
    })
}

/// `n`, or an error at it if it is not a finite number.
fn finite(d: &mut Diag<'_>, file: &Path, n: &Spanned<f64>, what: &str) -> f64 {
    if !n.get_ref().is_finite() {
        d.at(
            file,
            n.span().start,
            format!("{what} must be a finite number"),
        );
    }
    *n.get_ref()
}

fn inputs(
    d: &mut Diag<'_>,
    file: &Path,
    model: &ModelFile,
    schema: &Schema,
    symbols: &mut Symbols,
) -> Vec<Input> {
    if model.inputs.0.len() > MAX_INPUTS {
        d.at(file, 0, format!("a model has at most {MAX_INPUTS} inputs"));
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, src) in &model.inputs.0 {
        let at = name.span().start;
        let Some(slot) = schema.slot(name.get_ref()) else {
            d.at(
                file,
                at,
                format!(
                    "input `{}` is not a schema attribute{}",
                    name.get_ref(),
                    did_you_mean(schema.suggest(name.get_ref()))
                ),
            );
            continue;
        };
        let attr = &schema.attrs[slot as usize];
        if attr.derived || attr.model.is_some() {
            let by = if attr.derived {
                "the strategy's `derive`, which runs after the models"
            } else {
                "a model"
            };
            d.at(
                file,
                at,
                format!(
                    "input `{}` is computed by {by}: a model's inputs are attributes the request gives",
                    attr.name
                ),
            );
            continue;
        }
        let src = src.get_ref();
        if let Some(term) = term(d, file, name, src, attr, symbols) {
            let missing = src
                .missing
                .as_ref()
                .map(|m| finite(d, file, m, "`missing`"));
            out.push(Input {
                slot,
                term,
                missing,
            });
        }
    }
    out
}

/// The term of input `name` (attribute `attr`), if it fits the attribute.
fn term(
    d: &mut Diag<'_>,
    file: &Path,
    name: &Spanned<String>,
    src: &InputSrc,
    attr: &Attribute,
    symbols: &mut Symbols,
) -> Option<Term> {
    let at = name.span().start;
    let given = [
        src.coefficient.is_some().then_some("coefficient"),
        src.bins.is_some().then_some("bins"),
        src.points.is_some().then_some("points"),
    ];
    let given: Vec<&str> = given.into_iter().flatten().collect();
    let (ty, numeric) = (attr.ty, matches!(attr.ty, AttrType::Int | AttrType::Float));
    let fits = match ty {
        AttrType::Int | AttrType::Float => "`coefficient` or `bins`",
        AttrType::String | AttrType::Bool | AttrType::StringSet => "`points`",
        AttrType::Timestamp => {
            d.at(
                file,
                at,
                format!(
                    "input `{}` is a timestamp: a model reads numbers, strings, bools and string sets (derive a number such as days since, and give it in the request)",
                    attr.name
                ),
            );
            return None;
        }
    };
    let wrong = given.iter().find(|g| match **g {
        "points" => numeric,
        _ => !numeric,
    });
    if let Some(g) = wrong {
        d.at(
            file,
            at,
            format!(
                "input `{}` is of type {}: it takes {fits}, not `{g}`",
                attr.name,
                ty.name()
            ),
        );
        return None;
    }
    if given.len() != 1 {
        d.at(
            file,
            at,
            format!(
                "input `{}` needs exactly one of {fits}{}",
                attr.name,
                if given.is_empty() {
                    String::new()
                } else {
                    format!(", not {}", crate::base::util::list(&given))
                }
            ),
        );
        return None;
    }
    if let Some(o) = src.other.as_ref().filter(|_| ty != AttrType::String) {
        d.at(
            file,
            o.span().start,
            "`other` (the points of a value not listed) is only for string inputs",
        );
    }
    if let Some(c) = &src.coefficient {
        return Some(Term::Linear(finite(d, file, c, "a coefficient")));
    }
    if let Some(bins) = &src.bins {
        return bins_term(d, file, bins);
    }
    let points = src.points.as_ref()?;
    Some(match ty {
        AttrType::Bool => bool_term(d, file, points),
        AttrType::String => {
            let other = src
                .other
                .as_ref()
                .map_or(0.0, |o| finite(d, file, o, "`other`"));
            let listed = value_points(d, file, points, attr, symbols);
            let len = listed
                .iter()
                .map(|&(s, _)| s as usize + 1)
                .max()
                .unwrap_or(0);
            let mut table = vec![other; len];
            for (sym, p) in listed {
                table[sym as usize] = p;
            }
            Term::Symbols {
                points: table.into(),
                other,
            }
        }
        _ => Term::Members(value_points(d, file, points, attr, symbols).into()),
    })
}

/// `points = { value = p, ... }` of a string or string set: each value
/// interned, checked against a closed attribute's values.
fn value_points(
    d: &mut Diag<'_>,
    file: &Path,
    points: &Spanned<Ordered<Spanned<f64>>>,
    attr: &Attribute,
    symbols: &mut Symbols,
) -> Vec<(crate::base::Sym, f64)> {
    let mut out = Vec::new();
    for (value, p) in &points.get_ref().0 {
        let v = value.get_ref();
        if let Some(allowed) = attr.values.as_ref().filter(|a| !a.contains(v)) {
            d.at(
                file,
                value.span().start,
                format!(
                    "`{v}` is not one of `{}`'s values ({}){}",
                    attr.name,
                    crate::base::util::list(allowed),
                    did_you_mean(crate::base::util::closest(
                        v,
                        allowed.iter().map(String::as_str)
                    ))
                ),
            );
            continue;
        }
        out.push((symbols.intern(v), finite(d, file, p, "points")));
    }
    out
}

/// `points = { true = p, false = q }` (an unlisted one adds 0).
fn bool_term(d: &mut Diag<'_>, file: &Path, points: &Spanned<Ordered<Spanned<f64>>>) -> Term {
    let (mut yes, mut no) = (0.0, 0.0);
    for (value, p) in &points.get_ref().0 {
        let p = finite(d, file, p, "points");
        match value.get_ref().as_str() {
            "true" => yes = p,
            "false" => no = p,
            other => d.at(
                file,
                value.span().start,
                format!("a bool input's points are for `true` and `false`, not `{other}`"),
            ),
        }
    }
    Term::Bool { yes, no }
}

/// `bins = [{ below = x, points = p }, ..., { points = q }]`.
fn bins_term(d: &mut Diag<'_>, file: &Path, bins: &Spanned<Vec<Spanned<BinSrc>>>) -> Option<Term> {
    let list = bins.get_ref();
    let Some((last, rest)) = list.split_last() else {
        d.at(
            file,
            bins.span().start,
            "`bins` needs at least one bin: `[{ points = p }]`",
        );
        return None;
    };
    let mut below = Vec::with_capacity(rest.len());
    let mut points = Vec::with_capacity(list.len());
    for bin in rest {
        let b = bin.get_ref();
        let Some(edge) = &b.below else {
            d.at(
                file,
                bin.span().start,
                "every bin but the last needs `below` (the last bin takes the rest)",
            );
            return None;
        };
        let x = finite(d, file, edge, "`below`");
        if below.last().is_some_and(|&prev| x <= prev) {
            d.at(
                file,
                edge.span().start,
                "bins go from low to high: each `below` must be above the one before",
            );
        }
        below.push(x);
        points.push(finite(d, file, &b.points, "points"));
    }
    if let Some(edge) = &last.get_ref().below {
        d.at(
            file,
            edge.span().start,
            "the last bin takes every value from the one before up: it has no `below`",
        );
    }
    points.push(finite(d, file, &last.get_ref().points, "points"));
    Some(Term::Bins {
        below: below.into(),
        points: points.into(),
    })
}
