//! The values a customer context holds, their types, and interned strings.

use super::time::Timestamp;

/// Interned string: 0 is "a string no rule mentions".
pub(crate) type Sym = u32;

/// The type of a context attribute, as written in `[schema]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttrType {
    /// 64-bit signed integer.
    Int,
    /// 64-bit float; integers are accepted and converted.
    Float,
    /// `true` or `false`.
    Bool,
    /// A string, optionally restricted to a closed list of values.
    String,
    /// A set of strings, tested with `"X" in attr` and `len(attr)`.
    StringSet,
    /// A point in time (RFC 3339 or epoch seconds), whole seconds.
    Timestamp,
}

impl AttrType {
    /// The name used in rule files.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::Int => "int",
            AttrType::Float => "float",
            AttrType::Bool => "bool",
            AttrType::String => "string",
            AttrType::StringSet => "string_set",
            AttrType::Timestamp => "timestamp",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<AttrType> {
        Some(match s {
            "int" => AttrType::Int,
            "float" => AttrType::Float,
            "bool" => AttrType::Bool,
            "string" => AttrType::String,
            "string_set" => AttrType::StringSet,
            "timestamp" => AttrType::Timestamp,
            _ => return None,
        })
    }
}

/// A context value, as given by a caller.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// An `int` attribute.
    Int(i64),
    /// A `float` attribute.
    Float(f64),
    /// A `bool` attribute.
    Bool(bool),
    /// A `string` attribute.
    String(String),
    /// A `string_set` attribute.
    StringSet(Vec<String>),
    /// A `timestamp` attribute.
    Timestamp(Timestamp),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::String(v)
    }
}
impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Value {
        Value::Timestamp(v)
    }
}
impl<S: Into<String>, const N: usize> From<[S; N]> for Value {
    fn from(v: [S; N]) -> Value {
        Value::StringSet(v.into_iter().map(Into::into).collect())
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Value {
        Value::StringSet(v)
    }
}
