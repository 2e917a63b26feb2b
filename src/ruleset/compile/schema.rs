//! `[schema]`: the attributes, their types, closed values and defaults.

use super::*;

pub(super) fn schema_attrs(
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
            model: None,
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
                    "model" => match v.as_str() {
                        Some(m) => attr.model = Some(m.into()),
                        None => d.at(file, at, "`model` is the path of a model file, e.g. \"models/churn.toml\""),
                    },
                    other => d.at(
                        file,
                        at,
                        format!("unknown key `{other}` in attribute `{}`; expected type, values, sensitive, default, derived, model or description", name.get_ref()),
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
        if attr.model.is_some() {
            model_attr(d, file, at, &attr, table);
        }
        attrs.push(attr);
    }
    attrs
}

/// What an attribute computed by a predictive model may not be.
fn model_attr(
    d: &mut Diag<'_>,
    file: &Path,
    at: usize,
    attr: &Attribute,
    table: Option<&toml::Table>,
) {
    if attr.ty != AttrType::Float {
        d.at(
            file,
            at,
            format!(
                "attribute `{}` is a model's score: its type is float, not {}",
                attr.name,
                attr.ty.name()
            ),
        );
    }
    if attr.derived {
        d.at(
            file,
            at,
            format!(
                "attribute `{}` is computed by its model: it cannot be `derived` too",
                attr.name
            ),
        );
    }
    if table.is_some_and(|t| t.contains_key("default")) {
        d.at(
            file,
            at,
            format!(
                "attribute `{}` is computed by its model: it has no default (give the model's inputs `missing` points instead)",
                attr.name
            ),
        );
    }
}

fn default_value(ty: AttrType, v: &toml::Value) -> Result<Value, String> {
    if let (AttrType::Timestamp, toml::Value::Datetime(dt)) = (ty, v) {
        return Timestamp::parse(&dt.to_string()).map(Value::Timestamp);
    }
    json_value(ty, &crate::base::util::toml_to_json(v))
}
