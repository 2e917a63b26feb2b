//! Personas: rule tests. Each `personas/*.toml` file is a customer, a
//! channel and the decision that customer must get (`nextbest test DIR`).
//! See the README for the format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::base::util::toml_to_json;
use crate::base::Error;
use crate::base::Timestamp;
use crate::context::Context;
use crate::decide::request::DecisionRequest;
use crate::engine::Engine;
use crate::ruleset::Stage;

/// The decision time personas use unless they set `now`, so persona
/// results never depend on the clock.
pub const DEFAULT_NOW: &str = "2026-11-23T10:00:00Z";

/// What a persona expects of its decision. Every field is optional; all
/// that are given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The exact chosen list, in rank order.
    pub actions: Option<Vec<String>>,
    /// The first-ranked action.
    pub top: Option<String>,
    /// Actions that must be among the chosen.
    #[serde(default)]
    pub includes: Vec<String>,
    /// Actions that must not be among the chosen.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// `true`: nothing may be chosen.
    pub no_action: Option<bool>,
    /// Action → the stage that must remove it.
    #[serde(default)]
    pub filtered: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonaFile {
    description: Option<String>,
    customer_id: Option<String>,
    channel: String,
    now: Option<toml::Value>,
    limit: Option<usize>,
    #[serde(default)]
    context: toml::Table,
    #[serde(default)]
    expect: Expect,
}

/// A persona loaded from a file.
#[derive(Debug, Clone)]
pub struct Persona {
    /// The file it came from.
    pub file: PathBuf,
    /// What the persona is.
    pub description: Option<String>,
    /// The customer id used for the request.
    pub customer_id: String,
    /// The channel.
    pub channel: String,
    /// The decision time.
    pub now: Timestamp,
    /// Limit override.
    pub limit: Option<usize>,
    /// The context, as JSON.
    pub context: serde_json::Map<String, serde_json::Value>,
    /// The expectations.
    pub expect: Expect,
}

/// The outcome of running one persona.
#[derive(Debug, Clone)]
pub struct PersonaResult {
    /// The persona's file.
    pub file: PathBuf,
    /// The chosen actions.
    pub actions: Vec<String>,
    /// Each expectation that did not hold (empty: passed).
    pub failures: Vec<String>,
}

impl PersonaResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Load `DIR/personas/*.toml`, sorted by file name.
pub fn load_personas(dir: impl AsRef<Path>) -> Result<Vec<Persona>, Error> {
    let pdir = dir.as_ref().join("personas");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&pdir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&pdir, e)),
    };
    files.sort();
    files.iter().map(|f| load_persona(f)).collect()
}

fn load_persona(path: &Path) -> Result<Persona, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::InvalidRequest(format!("{}: {m}", path.display()));
    let raw: PersonaFile = toml::from_str(&text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((1, 1), |s| crate::ruleset::source::line_col(&text, s.start));
        bad(format!("{line}:{col}: {}", e.message().trim()))
    })?;
    let now = match &raw.now {
        None => Timestamp::parse(DEFAULT_NOW).map_err(bad)?,
        Some(v) => {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Timestamp::parse(&s).map_err(bad)?
        }
    };
    for (action, stage) in &raw.expect.filtered {
        if Stage::parse(stage).is_none() {
            return Err(bad(format!(
                "expect.filtered.{action}: unknown stage `{stage}` (eligibility, applicability, suitability or value)"
            )));
        }
    }
    let context = match toml_to_json(&toml::Value::Table(raw.context)) {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Persona {
        file: path.to_path_buf(),
        description: raw.description,
        customer_id: raw.customer_id.unwrap_or(stem),
        channel: raw.channel,
        now,
        limit: raw.limit,
        context,
        expect: raw.expect,
    })
}

/// Decide for `persona` with explanations on and check its expectations.
pub fn run_persona(engine: &Engine, persona: &Persona) -> Result<PersonaResult, Error> {
    let ctx = Context::from_json(&engine.schema(), &persona.context)?;
    let mut req = DecisionRequest::new(&persona.customer_id, &persona.channel, ctx)
        .explain(true)
        .at(persona.now);
    req.limit = persona.limit;
    let d = engine.decide(&req)?;
    let actions: Vec<String> = d.action_ids().into_iter().map(str::to_string).collect();
    let rules = d.ruleset();
    let mut failures = Vec::new();
    let e = &persona.expect;
    let known = |a: &str, failures: &mut Vec<String>| {
        if rules.action_index(a).is_none() {
            failures.push(format!("expectation names unknown action `{a}`"));
        }
    };
    if let Some(want) = &e.actions {
        if *want != actions {
            failures.push(format!("expected actions {want:?}, got {actions:?}"));
        }
    }
    if let Some(top) = &e.top {
        known(top, &mut failures);
        if actions.first() != Some(top) {
            failures.push(format!("expected `{top}` first, got {:?}", actions.first()));
        }
    }
    for a in &e.includes {
        known(a, &mut failures);
        if !actions.contains(a) {
            failures.push(format!("expected `{a}` among the chosen {actions:?}"));
        }
    }
    for a in &e.excludes {
        known(a, &mut failures);
        if actions.contains(a) {
            failures.push(format!(
                "expected `{a}` not to be chosen, but it was: {actions:?}"
            ));
        }
    }
    if e.no_action == Some(true) && !actions.is_empty() {
        failures.push(format!("expected no action, got {actions:?}"));
    }
    if e.no_action == Some(false) && actions.is_empty() {
        failures.push("expected at least one action, got none".into());
    }
    for (a, stage) in &e.filtered {
        known(a, &mut failures);
        match d.filtered().find(|f| f.action() == a) {
            Some(f) if f.stage().as_str() == stage => {}
            Some(f) => failures.push(format!(
                "expected `{a}` removed at {stage}, but it was removed at {} by `{}`{}",
                f.stage(),
                f.condition().unwrap_or(""),
                f.reason().map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            None if actions.contains(a) => {
                failures.push(format!("expected `{a}` removed at {stage}, but it was chosen"))
            }
            None if d.ranked().any(|r| r.action() == a) => failures.push(format!(
                "expected `{a}` removed at {stage}, but it passed every policy (ranked below the limit)"
            )),
            None => failures.push(format!(
                "expected `{a}` removed at {stage}, but it is not offered on channel `{}`",
                persona.channel
            )),
        }
    }
    Ok(PersonaResult {
        file: persona.file.clone(),
        actions,
        failures,
    })
}
