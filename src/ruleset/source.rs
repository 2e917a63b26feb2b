//! The text of a rule set and its TOML shapes, before validation.
//!
//! [`RuleSource`] is a rule directory held in memory: file names and their
//! contents. Loading from disk only fills one; tests and fuzzers build one
//! from strings. Positions are kept as byte spans (`toml::Spanned`) and
//! turned into file:line:col only when an error is reported.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::base::{Error, Location};

/// A rule set's files, in memory: `ruleset.toml`, `actions/*.toml`,
/// `strategies/*.rhai` and `models/*.toml`, keyed by their path relative
/// to the rule directory.
#[derive(Debug, Clone, Default)]
pub struct RuleSource {
    pub(crate) files: BTreeMap<PathBuf, String>,
    pub(crate) dir: Option<PathBuf>,
    /// The challenger rule set named by `[experiment] challenger`.
    pub(crate) challenger: Option<Box<RuleSource>>,
}

impl RuleSource {
    /// An empty source; add files with [`RuleSource::file`].
    pub fn new() -> RuleSource {
        RuleSource::default()
    }

    /// Add (or replace) a file, e.g. `("ruleset.toml", text)` or
    /// `("actions/cards.toml", text)`.
    pub fn file(mut self, path: impl Into<PathBuf>, contents: impl Into<String>) -> RuleSource {
        self.files.insert(path.into(), contents.into());
        self
    }

    /// The challenger of this rule set's experiment (the rule set
    /// `[experiment] challenger` names), for sources built from strings.
    pub fn challenger(mut self, challenger: RuleSource) -> RuleSource {
        self.challenger = Some(Box::new(challenger));
        self
    }

    /// Read a rule directory: `ruleset.toml`, `actions/*.toml`,
    /// `strategies/*.rhai` and `models/*.toml`, and the challenger directory its
    /// `[experiment]` names, if any. Personas and customers are not part of
    /// a rule version and are not read.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<RuleSource, Error> {
        let dir = dir.as_ref();
        let mut src = RuleSource::read_dir(dir)?;
        let challenger = src
            .files
            .get(Path::new("ruleset.toml"))
            .and_then(|t| toml::from_str::<toml::Table>(t).ok())
            .and_then(|t| {
                t.get("experiment")?
                    .get("challenger")?
                    .as_str()
                    .map(str::to_string)
            });
        if let Some(c) = challenger {
            src.challenger = Some(Box::new(RuleSource::read_dir(&dir.join(c))?));
        }
        Ok(src)
    }

    /// Read a version archived by the decision log (`ARCHIVE/<hash>/`),
    /// whose challenger, if any, is archived in `__challenger/`.
    pub fn from_archive(dir: impl AsRef<Path>) -> Result<RuleSource, Error> {
        let dir = dir.as_ref();
        let mut src = RuleSource::read_dir(dir)?;
        let ch = dir.join(ARCHIVED_CHALLENGER);
        if ch.is_dir() {
            src.challenger = Some(Box::new(RuleSource::read_dir(&ch)?));
        }
        Ok(src)
    }

    /// The files, by path relative to the rule directory.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files.iter().map(|(p, t)| (p.as_path(), t.as_str()))
    }

    /// The challenger's source, if any.
    pub fn challenger_source(&self) -> Option<&RuleSource> {
        self.challenger.as_deref()
    }

    fn read_dir(dir: &Path) -> Result<RuleSource, Error> {
        let mut src = RuleSource {
            files: BTreeMap::new(),
            dir: Some(dir.to_path_buf()),
            challenger: None,
        };
        let main = dir.join("ruleset.toml");
        let text = std::fs::read_to_string(&main).map_err(|e| Error::io(&main, e))?;
        src.files.insert("ruleset.toml".into(), text);
        for (sub, ext) in [
            ("actions", "toml"),
            ("strategies", "rhai"),
            ("models", "toml"),
        ] {
            let d = dir.join(sub);
            if !d.is_dir() {
                continue;
            }
            let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&d, e))?;
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some(ext) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                let rel = Path::new(sub).join(entry.file_name());
                src.files.insert(rel, text);
            }
        }
        Ok(src)
    }

    /// The directory this source was read from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

/// Where an archived version keeps its challenger.
pub(crate) const ARCHIVED_CHALLENGER: &str = "__challenger";

/// Turn a byte offset in `text` into a 1-based line and column.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

pub(crate) fn location(file: &Path, text: &str, offset: usize) -> Location {
    let (line, column) = line_col(text, offset);
    Location {
        file: file.to_path_buf(),
        line,
        column,
    }
}

/// Map a byte offset inside the *decoded* value of a TOML string to a byte
/// offset in the file, given the span of the string literal (quotes
/// included). Escapes in basic strings make the two differ.
pub(crate) fn string_offset(text: &str, span: &Range<usize>, decoded: usize) -> usize {
    let Some(raw) = text.get(span.clone()) else {
        return span.start;
    };
    let (delim, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else {
        return span.start;
    };
    let mut i = delim;
    // A newline right after a multi-line opening delimiter is trimmed.
    if delim == 3 {
        if raw[i..].starts_with("\r\n") {
            i += 2;
        } else if raw[i..].starts_with('\n') {
            i += 1;
        }
    }
    let bytes = raw.as_bytes();
    let mut out = 0;
    while i < bytes.len() {
        // (Checked before `out`: the decoded offset right after a line
        // continuation is past it.)
        if basic && delim == 3 && bytes[i] == b'\\' {
            // A line-ending backslash: it, the rest of the line's
            // whitespace, the newline and the next lines' leading
            // whitespace decode to nothing.
            let rest = &bytes[i + 1..];
            let ws = rest
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
            if matches!(rest.get(ws), Some(b'\n' | b'\r')) {
                i += 1 + ws;
                while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                continue;
            }
        }
        if out >= decoded {
            break;
        }
        if basic && bytes[i] == b'\\' {
            let (raw_len, dec_len) = match bytes.get(i + 1) {
                Some(b'u') => (6, decoded_len(raw.get(i + 2..i + 6))),
                Some(b'U') => (10, decoded_len(raw.get(i + 2..i + 10))),
                _ => (2, 1),
            };
            i += raw_len;
            out += dec_len;
        } else {
            let ch_len = raw[i..].chars().next().map_or(1, char::len_utf8);
            i += ch_len;
            out += ch_len;
        }
    }
    span.start + i.min(raw.len())
}

fn decoded_len(hex: Option<&str>) -> usize {
    hex.and_then(|h| u32::from_str_radix(h, 16).ok())
        .and_then(char::from_u32)
        .map_or(1, char::len_utf8)
}

/// The most unknown keys one file reports before giving up on it.
const MAX_UNKNOWN_KEYS: usize = 100;

/// Deserialize a rule file as `T`, reporting every unknown key instead of
/// stopping at the first, so that one misspelt key does not hide the
/// file's other errors. The shapes keep `deny_unknown_fields` (serde stays
/// the one list of known keys): each unknown key serde reports is recorded
/// with a "did you mean" hint, removed from the parsed document, and the
/// document deserialized again. Returns the value, if the file has no
/// other kind of error, and the errors as (byte offset, message).
pub(crate) fn from_toml<T: serde::de::DeserializeOwned>(
    text: &str,
) -> (Option<T>, Vec<(usize, String)>) {
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => return (None, vec![(e.span().map_or(0, |s| s.start), message(&e))]),
    };
    let mut errors = Vec::new();
    loop {
        let e = match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(v) => return (Some(v), errors),
            Err(e) => e,
        };
        let at = e.span().unwrap_or(0..0);
        let unknown = unknown_field(e.message());
        let removed =
            unknown.is_some() && errors.len() < MAX_UNKNOWN_KEYS && remove_key(doc.get_mut(), &at);
        match unknown {
            Some((key, expected)) if removed => {
                let hint = crate::base::util::did_you_mean(crate::base::util::closest(
                    key,
                    expected.iter().copied(),
                ));
                let rest = e.message().split_once(", ").map_or("", |(_, r)| r);
                errors.push((
                    at.start,
                    format!("unknown field `{key}`{hint}, {}", rest.trim()),
                ));
            }
            _ => {
                errors.push((at.start, message(&e)));
                return (None, errors);
            }
        }
    }
}

fn message(e: &toml::de::Error) -> String {
    e.message().trim().to_string()
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected
/// `a`", "expected `a` or `b`", "there are no fields"): the field and the
/// expected names.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    // Backquoted names are every other piece: `a`, `b` splits into
    // ["", "a", ", ", "b", ""].
    let expected = rest.split('`').skip(1).step_by(2).collect();
    Some((key, expected))
}

/// Remove the key written at `span` from `table` or any table inside it.
fn remove_key(table: &mut toml::de::DeTable<'_>, span: &Range<usize>) -> bool {
    let found = table
        .iter()
        .find(|(k, _)| k.span() == *span)
        .map(|(k, _)| k.get_ref().to_string());
    if let Some(key) = found {
        return table.remove(key.as_str()).is_some();
    }
    table
        .iter_mut()
        .any(|(_, v)| remove_key_in(v.get_mut(), span))
}

fn remove_key_in(value: &mut toml::de::DeValue<'_>, span: &Range<usize>) -> bool {
    match value {
        toml::de::DeValue::Table(t) => remove_key(t, span),
        toml::de::DeValue::Array(items) => items
            .iter_mut()
            .any(|item| remove_key_in(item.get_mut(), span)),
        _ => false,
    }
}

/// A TOML table's entries in the order they are written (channels keep
/// their declared order: the first inbound one is the default channel).
#[derive(Debug)]
pub(crate) struct Ordered<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A condition: one string, or an array of strings that must all hold.
/// (A hand-written visitor, because toml spans do not survive serde's
/// untagged enums.)
#[derive(Debug)]
pub(crate) enum CondKind {
    One(String),
    All(Vec<Spanned<String>>),
}

/// A condition with its span.
pub(crate) type CondSrc = Spanned<CondKind>;

/// The parts of a condition: each string with the span of its literal.
pub(crate) fn cond_parts(c: &CondSrc) -> Vec<(&str, Range<usize>)> {
    match c.get_ref() {
        CondKind::One(s) => vec![(s.as_str(), c.span())],
        CondKind::All(v) => v.iter().map(|s| (s.get_ref().as_str(), s.span())).collect(),
    }
}

impl<'de> Deserialize<'de> for CondKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CondKind;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a condition string or an array of condition strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CondKind, E> {
                Ok(CondKind::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CondKind, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    out.push(s);
                }
                Ok(CondKind::All(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// An action's value: a number or an expression.
#[derive(Debug)]
pub(crate) enum ValueSrc {
    Number(f64),
    Expr(String),
}

impl<'de> Deserialize<'de> for ValueSrc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ValueSrc;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a value expression string")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ValueSrc, E> {
                Ok(ValueSrc::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ValueSrc, E> {
                Ok(ValueSrc::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ValueSrc, E> {
                Ok(ValueSrc::Number(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ValueSrc, E> {
                Ok(ValueSrc::Expr(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesetFile {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub default_limit: Option<Spanned<i64>>,
    #[serde(default)]
    pub schema: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub channels: Ordered<Spanned<ChannelSrc>>,
    #[serde(default)]
    pub issues: BTreeMap<Spanned<String>, Spanned<IssueSrc>>,
    #[serde(default)]
    pub groups: BTreeMap<Spanned<String>, Spanned<GroupSrc>>,
    #[serde(default)]
    pub context_weights: Vec<Spanned<WeightSrc>>,
    #[serde(default)]
    pub actions: Vec<Spanned<ActionSrc>>,
    pub experiment: Option<Spanned<ExperimentSrc>>,
    pub strategy: Option<Spanned<StrategySrc>>,
    #[serde(default)]
    pub contact_policies: Vec<Spanned<ContactPolicySrc>>,
    #[serde(default)]
    pub volume_constraints: Vec<Spanned<VolumeSrc>>,
    pub learning: Option<Spanned<LearningSrc>>,
}

/// `[[contact_policies]]`: "`count` outcomes of the kinds in `outcomes`
/// within `within` on `channel` (or any), per action or per group: suppress
/// for `suppress_for`".
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactPolicySrc {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub outcomes: Spanned<Vec<Spanned<String>>>,
    pub count: Spanned<i64>,
    pub within: Spanned<String>,
    pub suppress_for: Option<Spanned<String>>,
    pub per: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
}

/// A channel's `contact_limit = { max = 1, within = "7d" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactLimitSrc {
    pub max: Spanned<i64>,
    pub within: Spanned<String>,
}

/// `[[volume_constraints]]`: at most `max` of an action, a group or a
/// channel per `period` (hour, day, week), across all customers.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeSrc {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub action: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub max: Spanned<i64>,
    pub period: Spanned<String>,
}

/// `[learning]`: how propensity is learned from outcomes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LearningSrc {
    pub mode: Option<Spanned<String>>,
    pub prior_strength: Option<Spanned<f64>>,
    pub epsilon: Option<Spanned<f64>>,
    pub success: Option<Spanned<Vec<Spanned<String>>>>,
    pub failure: Option<Spanned<Vec<Spanned<String>>>>,
    pub min_evidence: Option<Spanned<i64>>,
    /// `"beta"` (the default: one Beta per action and channel) or
    /// `"contextual"` (naive Bayes over `predictors`).
    pub model: Option<Spanned<String>>,
    pub predictors: Option<Spanned<Vec<Spanned<String>>>>,
    /// Per predictor: numeric bin edges, or the values of a string or
    /// string-set attribute that get bins of their own.
    pub bins: Option<Spanned<std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
    pub mature_positives: Option<Spanned<i64>>,
    pub smoothing: Option<Spanned<f64>>,
    pub snapshot_every: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StrategySrc {
    pub script: Spanned<String>,
    #[serde(default)]
    pub limits: crate::ruleset::strategy::Limits,
    /// Lower the hooks to the engine's own operations where they allow it
    /// (the default); `false` runs every hook in rhai's interpreter.
    #[serde(default = "yes")]
    pub lower: bool,
    /// What a hook that fails at decision time does: `"closed"` (the
    /// default) or `"open"`, for every hook or per hook.
    #[serde(default)]
    pub on_error: crate::ruleset::strategy::OnError,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExperimentSrc {
    pub name: Spanned<String>,
    pub salt: String,
    pub challenger: Option<Spanned<String>>,
    pub challenger_share: Option<Spanned<f64>>,
    pub control_share: Option<Spanned<f64>>,
    pub control: Option<Spanned<String>>,
}

/// `description` fields are accepted for the reader of the rule files and
/// otherwise unused.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelSrc {
    pub direction: Spanned<String>,
    pub limit: Option<Spanned<i64>>,
    pub description: Option<String>,
    pub contact_limit: Option<Spanned<ContactLimitSrc>>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueSrc {
    pub lever: Option<Spanned<f64>>,
    pub description: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupSrc {
    pub issue: Spanned<String>,
    pub lever: Option<Spanned<f64>>,
    pub description: Option<String>,
    pub eligibility: Option<CondSrc>,
    pub applicability: Option<CondSrc>,
    pub suitability: Option<CondSrc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WeightSrc {
    pub when: CondSrc,
    pub issue: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub action: Option<Spanned<String>>,
    pub boost: Spanned<f64>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionSrc {
    pub id: Spanned<String>,
    pub group: Spanned<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub channels: Spanned<Vec<Spanned<String>>>,
    pub value: Spanned<ValueSrc>,
    pub starting_propensity: Spanned<f64>,
    pub lever: Option<Spanned<f64>>,
    pub eligibility: Option<CondSrc>,
    pub applicability: Option<CondSrc>,
    pub suitability: Option<CondSrc>,
    pub treatment: Option<String>,
    #[serde(default)]
    pub treatments: BTreeMap<Spanned<String>, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionsFile {
    #[serde(default)]
    pub actions: Vec<Spanned<ActionSrc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 11), (2, 5));
    }

    #[test]
    fn string_offset_skips_quotes_and_escapes() {
        let text = r#"x = "a\"bc""#;
        let span = 4..text.len();
        // decoded `a"bc`: offset 2 ('b') is after the two-byte escape.
        assert_eq!(string_offset(text, &span, 2), 8);
        let lit = "x = 'abc'";
        assert_eq!(string_offset(lit, &(4..9), 1), 6);
    }
}
