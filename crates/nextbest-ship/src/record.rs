//! What the shipper needs to know of a record to send it: its kind (for
//! the outcomes topic), its customer (the message key), its format
//! version and rule version hash (headers) and its decision id. The
//! record's bytes themselves are sent unchanged.

use std::borrow::Cow;

use serde::Deserialize;

/// The fields of a decision-log record the shipper reads; every other
/// field is left alone (and not even parsed into values).
#[derive(Debug, Deserialize)]
pub struct RecordMeta<'a> {
    /// The record format version (`"v"`).
    pub v: u64,
    /// `decision`, `outcome`, ...
    #[serde(borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// The decision's id (an outcome's names the decision it answers).
    #[serde(borrow, default)]
    pub decision_id: Option<Cow<'a, str>>,
    /// The customer: the message key, so one customer's records stay in
    /// one partition, in order.
    #[serde(borrow, default)]
    pub customer_id: Option<Cow<'a, str>>,
    /// The rule version.
    #[serde(borrow, default)]
    pub ruleset: Option<Ruleset<'a>>,
}

/// The rule version a decision was made on.
#[derive(Debug, Deserialize)]
pub struct Ruleset<'a> {
    /// The version's content hash.
    #[serde(borrow, default)]
    pub hash: Option<Cow<'a, str>>,
}

impl<'a> RecordMeta<'a> {
    /// Read the shipper's fields of one record (a JSON object with a
    /// format version `"v"`), or say why it is not one.
    pub fn parse(bytes: &'a [u8]) -> Result<RecordMeta<'a>, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            if bytes.first() != Some(&b'{') {
                "not a JSON object".to_string()
            } else {
                format!("not a decision-log record: {e}")
            }
        })
    }

    /// Whether the record is an outcome.
    pub fn is_outcome(&self) -> bool {
        self.kind.as_deref() == Some("outcome")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_that_route_a_decision() {
        let line = br#"{"v":1,"kind":"decision","decision_id":"d1","ruleset":{"name":"rb","version":3,"hash":"abc"},"customer_id":"C\"1","context":{"x":[1,2]}}"#;
        let meta = RecordMeta::parse(line).unwrap();
        assert_eq!(meta.v, 1);
        assert_eq!(meta.decision_id.as_deref(), Some("d1"));
        assert_eq!(meta.customer_id.as_deref(), Some("C\"1"));
        assert_eq!(meta.ruleset.and_then(|r| r.hash).as_deref(), Some("abc"));
        assert!(!RecordMeta::parse(line).unwrap().is_outcome());
    }

    #[test]
    fn an_outcome_has_no_rule_version() {
        let line = br#"{"v":1,"kind":"outcome","decision_id":"d1","customer_id":"C1","outcome":"accepted"}"#;
        let meta = RecordMeta::parse(line).unwrap();
        assert!(meta.is_outcome());
        assert!(meta.ruleset.is_none());
    }

    #[test]
    fn refuses_what_is_not_a_record() {
        assert_eq!(
            RecordMeta::parse(b"[1,2]").unwrap_err(),
            "not a JSON object"
        );
        assert!(RecordMeta::parse(br#"{"kind":"decision"}"#)
            .unwrap_err()
            .contains("missing field `v`"));
        assert!(RecordMeta::parse(br#"{"v":1,"kind":"decis"#).is_err());
    }
}
