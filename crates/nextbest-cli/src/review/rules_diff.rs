//! What changed between two rule versions, by the things a specialist
//! edits: each action, group, issue, channel, schema attribute, context
//! weight, contact policy, volume constraint and setting, field by field
//! (conditions marked as such), and strategy scripts line by line.

use std::collections::BTreeMap;

use nextbest::RuleSource;
use serde::Serialize;

/// Every change, in file order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RulesDiff {
    /// Changed, added and removed rule entities.
    pub entities: Vec<EntityChange>,
    /// Changed, added and removed scripts, as unified diffs.
    pub scripts: Vec<ScriptChange>,
}

impl RulesDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty() && self.scripts.is_empty()
    }
}

/// How an entity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the candidate.
    Added,
    /// Only in the baseline.
    Removed,
    /// In both, with different fields.
    Changed,
}

impl Change {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// One rule entity that changed.
#[derive(Debug, Clone, Serialize)]
pub struct EntityChange {
    /// `action`, `group`, `issue`, `channel`, `attribute`, `context weight`,
    /// `contact policy`, `volume constraint`, `setting` or `rule set`
    /// (prefixed `challenger` for the experiment's challenger).
    pub kind: String,
    /// Its id (for context weights: its condition and target).
    pub id: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The fields that differ (all fields for added and removed ones).
    pub fields: Vec<FieldChange>,
}

/// One field's values before and after.
#[derive(Debug, Clone, Serialize)]
pub struct FieldChange {
    /// The field, dotted for nested tables (`treatments.email`).
    pub field: String,
    /// Its value in the baseline (TOML).
    pub before: Option<String>,
    /// Its value in the candidate (TOML).
    pub after: Option<String>,
    /// Whether it is a condition (eligibility, applicability, suitability,
    /// when).
    pub condition: bool,
}

/// One script file that changed.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptChange {
    /// Its path in the rule directory.
    pub file: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The unified diff (3 lines of context).
    pub diff: String,
}

type Fields = BTreeMap<String, String>;
/// (kind, id) → fields, in first-seen order.
type Entities = Vec<((String, String), Fields)>;

/// Compare two rule sources (and their challengers).
pub fn diff(before: &RuleSource, after: &RuleSource) -> RulesDiff {
    let mut out = RulesDiff::default();
    compare(
        &entities(before, ""),
        &entities(after, ""),
        &mut out.entities,
    );
    compare_scripts(before, after, "", &mut out.scripts);
    let (cb, ca) = (before.challenger_source(), after.challenger_source());
    if cb.is_some() || ca.is_some() {
        let empty = RuleSource::new();
        let (cb, ca) = (cb.unwrap_or(&empty), ca.unwrap_or(&empty));
        compare(
            &entities(cb, "challenger "),
            &entities(ca, "challenger "),
            &mut out.entities,
        );
        compare_scripts(cb, ca, "challenger/", &mut out.scripts);
    }
    out
}

fn compare(before: &Entities, after: &Entities, out: &mut Vec<EntityChange>) {
    let find = |list: &Entities, key: &(String, String)| {
        list.iter().find(|(k, _)| k == key).map(|(_, f)| f.clone())
    };
    for (key, fb) in before {
        let fields = match find(after, key) {
            None => fields_of(fb, None),
            Some(fa) => fields_of(fb, Some(&fa)),
        };
        let change = if find(after, key).is_some() {
            Change::Changed
        } else {
            Change::Removed
        };
        if !fields.is_empty() {
            out.push(EntityChange {
                kind: key.0.clone(),
                id: key.1.clone(),
                change,
                fields,
            });
        }
    }
    for (key, fa) in after.iter().filter(|(k, _)| find(before, k).is_none()) {
        let fields = fa
            .iter()
            .map(|(f, v)| FieldChange {
                field: f.clone(),
                before: None,
                after: Some(v.clone()),
                condition: is_condition(f),
            })
            .collect();
        out.push(EntityChange {
            kind: key.0.clone(),
            id: key.1.clone(),
            change: Change::Added,
            fields,
        });
    }
}

/// The differing fields of `before` against `after` (every field of
/// `before` when there is no `after`).
fn fields_of(before: &Fields, after: Option<&Fields>) -> Vec<FieldChange> {
    let Some(after) = after else {
        return before
            .iter()
            .map(|(f, v)| FieldChange {
                field: f.clone(),
                before: Some(v.clone()),
                after: None,
                condition: is_condition(f),
            })
            .collect();
    };
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|f| before.get(*f) != after.get(*f))
        .map(|f| FieldChange {
            field: f.clone(),
            before: before.get(f).cloned(),
            after: after.get(f).cloned(),
            condition: is_condition(f),
        })
        .collect()
}

fn is_condition(field: &str) -> bool {
    let last = field.rsplit('.').next().unwrap_or(field);
    matches!(
        last,
        "eligibility" | "applicability" | "suitability" | "when"
    )
}

/// The entities of a rule source's TOML files.
fn entities(src: &RuleSource, prefix: &str) -> Entities {
    let mut out: Entities = Vec::new();
    for (path, text) in src.files() {
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Ok(table) = toml::from_str::<toml::Table>(text) else {
            continue;
        };
        let mut top = Fields::new();
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("schema" | "channels" | "issues" | "groups", toml::Value::Table(t)) => {
                    for (id, v) in t {
                        out.push((
                            (format!("{prefix}{}", singular(key)), id.clone()),
                            flatten(v),
                        ));
                    }
                }
                (_, toml::Value::Array(items))
                    if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
                {
                    for (i, v) in items.iter().enumerate() {
                        out.push((
                            (format!("{prefix}{}", singular(key)), item_id(v, i)),
                            flatten(v),
                        ));
                    }
                }
                (_, toml::Value::Table(_)) => {
                    out.push(((format!("{prefix}setting"), key.clone()), flatten(value)))
                }
                _ => {
                    top.insert(key.clone(), value.to_string());
                }
            }
        }
        if !top.is_empty() {
            out.push((
                (
                    format!("{prefix}rule set"),
                    path.to_string_lossy().into_owned(),
                ),
                top,
            ));
        }
    }
    out
}

fn singular(key: &str) -> String {
    match key {
        "schema" => "attribute".into(),
        "issues" => "issue".into(),
        "actions" => "action".into(),
        "context_weights" => "context weight".into(),
        "contact_policies" => "contact policy".into(),
        "volume_constraints" => "volume constraint".into(),
        other => other.trim_end_matches('s').replace('_', " "),
    }
}

/// An array item's identity: its `id` or `name`, else its string fields
/// (a context weight is its condition and its target).
fn item_id(v: &toml::Value, index: usize) -> String {
    for k in ["id", "name"] {
        if let Some(s) = v.get(k).and_then(toml::Value::as_str) {
            return s.to_string();
        }
    }
    let parts: Vec<String> = v
        .as_table()
        .into_iter()
        .flatten()
        .filter_map(|(k, x)| x.as_str().map(|s| format!("{k} = {s}")))
        .collect();
    if parts.is_empty() {
        format!("#{}", index + 1)
    } else {
        parts.join(", ")
    }
}

/// A value's fields, nested tables as dotted names; a scalar is one field
/// named `value`.
fn flatten(v: &toml::Value) -> Fields {
    let mut out = Fields::new();
    fn walk(prefix: &str, v: &toml::Value, out: &mut Fields) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, x, out);
                }
            }
            other => {
                let name = if prefix.is_empty() {
                    "value".to_string()
                } else {
                    prefix.to_string()
                };
                out.insert(name, other.to_string());
            }
        }
    }
    walk("", v, &mut out);
    out
}

fn compare_scripts(
    before: &RuleSource,
    after: &RuleSource,
    prefix: &str,
    out: &mut Vec<ScriptChange>,
) {
    let scripts = |s: &RuleSource| -> BTreeMap<String, String> {
        s.files()
            .filter(|(p, _)| p.extension().and_then(|e| e.to_str()) != Some("toml"))
            .map(|(p, t)| (p.to_string_lossy().into_owned(), t.to_string()))
            .collect()
    };
    let (b, a) = (scripts(before), scripts(after));
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (tb, ta) = (b.get(name), a.get(name));
        if tb == ta {
            continue;
        }
        let change = match (tb, ta) {
            (None, _) => Change::Added,
            (_, None) => Change::Removed,
            _ => Change::Changed,
        };
        let (tb, ta) = (tb.map_or("", String::as_str), ta.map_or("", String::as_str));
        let diff = similar::TextDiff::from_lines(tb, ta)
            .unified_diff()
            .context_radius(3)
            .header(&format!("baseline/{name}"), &format!("candidate/{name}"))
            .to_string();
        out.push(ScriptChange {
            file: format!("{prefix}{name}"),
            change,
            diff,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(ruleset: &str, actions: &str) -> RuleSource {
        RuleSource::new()
            .file("ruleset.toml", ruleset)
            .file("actions/a.toml", actions)
    }

    #[test]
    fn a_changed_suitability_shows_as_that_actions_condition() {
        let rs = "name = \"x\"\n[groups.cards]\nissue = \"growth\"\n";
        let before = src(
            rs,
            "[[actions]]\nid = \"GOLD\"\ngroup = \"cards\"\nsuitability = \"income >= 35000.0\"\n",
        );
        let after = src(
            rs,
            "[[actions]]\nid = \"GOLD\"\ngroup = \"cards\"\nsuitability = \"income >= 45000.0\"\n",
        );
        let d = diff(&before, &after);
        assert_eq!(d.entities.len(), 1, "{d:?}");
        let e = &d.entities[0];
        assert_eq!(
            (e.kind.as_str(), e.id.as_str(), e.change),
            ("action", "GOLD", Change::Changed)
        );
        assert_eq!(e.fields.len(), 1);
        let f = &e.fields[0];
        assert_eq!(f.field, "suitability");
        assert!(f.condition);
        assert_eq!(f.before.as_deref(), Some("\"income >= 35000.0\""));
        assert_eq!(f.after.as_deref(), Some("\"income >= 45000.0\""));
    }

    #[test]
    fn added_and_removed_actions_and_groups_are_listed_whole() {
        let before = src(
            "name = \"x\"\n[groups.a]\nissue = \"i\"\n",
            "[[actions]]\nid = \"OLD\"\ngroup = \"a\"\n",
        );
        let after = src(
            "name = \"x\"\n[groups.b]\nissue = \"i\"\n",
            "[[actions]]\nid = \"NEW\"\ngroup = \"b\"\n",
        );
        let d = diff(&before, &after);
        let seen: Vec<(String, String, Change)> = d
            .entities
            .iter()
            .map(|e| (e.kind.clone(), e.id.clone(), e.change))
            .collect();
        assert!(
            seen.contains(&("group".into(), "a".into(), Change::Removed)),
            "{seen:?}"
        );
        assert!(
            seen.contains(&("group".into(), "b".into(), Change::Added)),
            "{seen:?}"
        );
        assert!(
            seen.contains(&("action".into(), "OLD".into(), Change::Removed)),
            "{seen:?}"
        );
        assert!(
            seen.contains(&("action".into(), "NEW".into(), Change::Added)),
            "{seen:?}"
        );
    }

    #[test]
    fn identical_sources_have_no_changes() {
        let s = src("name = \"x\"\n", "[[actions]]\nid = \"A\"\ngroup = \"g\"\n");
        assert!(diff(&s, &s).is_empty());
    }
}
