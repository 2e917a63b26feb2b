//! The decision response's JSON: one writer, [`Decision::to_json_vec`].
//!
//! It writes the bytes directly (keys are literals; names and texts come
//! escaped from the version's [`JsonCache`](crate::ruleset::json::JsonCache);
//! numbers and strings go through serde_json, so they are formatted and
//! escaped exactly as serde_json does). `Serialize` for [`Decision`] is
//! derived from it, so there is one source of truth for the shape; the
//! shape itself is specified by `tests/decision_json.rs`, which rebuilds it
//! from the public accessors.

use serde::Serialize;

use super::decision::Decision;
use crate::base::Scored;

impl Decision {
    /// The decision as the JSON response in the README, written directly:
    /// the keys are literals (serde_json would scan each for escapes) and
    /// the buffer is sized once.
    pub fn to_json(&self) -> String {
        // serde_json writes UTF-8 only, and so do the literals.
        String::from_utf8(self.to_json_vec()).unwrap_or_default()
    }

    /// [`Decision::to_json`] as bytes, with room for one more (a C caller's
    /// NUL).
    pub fn to_json_vec(&self) -> Vec<u8> {
        let mut w = JsonOut::with_capacity(
            320 + 200 * (self.chosen.len() + self.ranked.len()) + 96 * self.removals().len(),
        );
        w.open();
        w.key("decision_id");
        w.buf.push(b'"');
        let id = self.id.0;
        w.buf.extend(
            (0..32)
                .rev()
                .map(|i| b"0123456789abcdef"[(id >> (4 * i)) as usize & 15]),
        );
        w.buf.push(b'"');
        w.key("timestamp");
        // RFC 3339 straight into the buffer (no escapes needed), or as
        // `Display` writes it when that fails.
        let start = w.buf.len();
        w.buf.push(b'"');
        let written = time::OffsetDateTime::from_unix_timestamp(self.timestamp.0)
            .ok()
            .and_then(|t| {
                t.format_into(&mut w.buf, &time::format_description::well_known::Rfc3339)
                    .ok()
            });
        if written.is_some() {
            w.buf.push(b'"');
        } else {
            w.buf.truncate(start);
            w.display(&self.timestamp);
        }
        let rules = self.ruleset();
        w.key("ruleset");
        w.open();
        w.key("name");
        w.str(&rules.name);
        w.key("version");
        w.num(&self.version.number);
        w.key("hash");
        w.str(&rules.hash);
        w.close();
        w.key("channel");
        w.str(self.channel());
        if let Some(e) = self.experiment() {
            w.key("experiment");
            w.str(e);
        }
        w.key("arm");
        w.str(self.arm.as_str());
        if let Some(seed) = self.seed {
            w.key("seed");
            w.num(&seed);
        }
        w.key("actions");
        self.ranked_json(&mut w, &self.chosen);
        if let Some(p) = self.selection_probability {
            w.key("selection_probability");
            w.num(&p);
        }
        if let Some(m) = &self.model {
            w.key("model");
            w.open();
            w.key("id");
            w.str(&format!("{:016x}", m.id));
            w.key("snapshot");
            w.str(&format!("{:016x}", m.snapshot));
            w.close();
        }
        w.key("filtered");
        w.buf.push(b'[');
        for (i, f) in self.filtered().enumerate() {
            if i > 0 {
                w.buf.push(b',');
            }
            w.open();
            w.key("action");
            w.str(f.action());
            w.key("stage");
            w.str(f.stage().as_str());
            w.key("level");
            w.str(f.level().as_str());
            if let Some(c) = f.condition() {
                w.key("condition");
                w.str(c);
            }
            if let Some(r) = f.reason() {
                w.key("reason");
                w.str(&r);
            }
            w.close();
        }
        w.buf.push(b']');
        if !self.ranked.is_empty() {
            w.key("ranked");
            self.ranked_json(&mut w, self.ranked_in_order());
        }
        if !self.diagnostics.is_empty() {
            w.key("diagnostics");
            w.buf.push(b'[');
            for (i, d) in self.diagnostics.iter().enumerate() {
                if i > 0 {
                    w.buf.push(b',');
                }
                w.display(d);
            }
            w.buf.push(b']');
        }
        if let Some(warnings) = &self.warnings {
            w.key("warnings");
            w.buf.push(b'[');
            for (i, warning) in warnings.iter().enumerate() {
                if i > 0 {
                    w.buf.push(b',');
                }
                w.display(warning);
            }
            w.buf.push(b']');
        }
        w.key("elapsed_ns");
        w.num(&self.elapsed_ns);
        w.close();
        w.buf
    }

    fn ranked_json(&self, w: &mut JsonOut, list: &[Scored]) {
        let rs = self.ruleset();
        let names = rs.json.names.get_or_init(|| {
            let esc = |v: &str| serde_json::to_string(v).unwrap_or_default();
            rs.actions
                .iter()
                .map(|a| {
                    let head = format!(
                        "\"action\":{},\"group\":{},\"issue\":{}",
                        esc(&a.id),
                        esc(&rs.groups[a.group as usize].name),
                        esc(&rs.issues[a.issue as usize].name)
                    );
                    let treatments = a
                        .treatments
                        .iter()
                        .map(|t| {
                            format!("\"treatment\":{}", esc(t.as_deref().unwrap_or(""))).into()
                        })
                        .collect();
                    (head.into(), treatments)
                })
                .collect()
        });
        w.buf.push(b'[');
        for (i, sc) in list.iter().enumerate() {
            if i > 0 {
                w.buf.push(b',');
            }
            let (head, treatments) = &names[sc.action as usize];
            w.buf.extend_from_slice(b"{\"rank\":");
            w.num(&(i + 1));
            w.buf.push(b',');
            w.buf.extend_from_slice(head.as_bytes());
            w.buf.push(b',');
            w.buf
                .extend_from_slice(treatments[self.channel as usize].as_bytes());
            w.buf.extend_from_slice(b",\"priority\":");
            w.num(&sc.priority);
            w.buf.extend_from_slice(b",\"propensity\":");
            w.num(&sc.propensity);
            w.buf.extend_from_slice(b",\"context_weight\":");
            w.num(&sc.context_weight);
            w.buf.extend_from_slice(b",\"value\":");
            w.num(&sc.value);
            w.buf.extend_from_slice(b",\"lever\":");
            w.num(&sc.lever);
            w.buf.push(b'}');
        }
        w.buf.push(b']');
    }
}

/// The JSON response, through serde: the bytes of
/// [`Decision::to_json_vec`], parsed back into a value any serializer can
/// write (with `serde_json`, `Decision::to_json` is the faster way to the
/// same text).
impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value =
            serde_json::from_slice(&self.to_json_vec()).map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }
}

/// The compact JSON writer of [`Decision::to_json`]: keys are written as
/// they are (they are literals that need no escaping); values go through
/// serde_json, so strings are escaped and numbers formatted (non-finite
/// floats as `null`) exactly as it does.
struct JsonOut {
    buf: Vec<u8>,
    /// No member written yet in the innermost object.
    first: bool,
}

impl JsonOut {
    fn with_capacity(n: usize) -> JsonOut {
        JsonOut {
            buf: Vec::with_capacity(n),
            first: true,
        }
    }
    fn open(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }
    fn close(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }
    #[inline(always)]
    fn key(&mut self, k: &'static str) {
        debug_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }
    fn str(&mut self, v: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, v);
    }
    fn num<T: Serialize>(&mut self, v: &T) {
        let _ = serde_json::to_writer(&mut self.buf, v);
    }
    /// A `Display` value as a JSON string (ids, timestamps, diagnostics).
    fn display(&mut self, v: &dyn std::fmt::Display) {
        use std::io::Write;
        let start = self.buf.len();
        self.buf.push(b'"');
        let _ = write!(self.buf, "{v}");
        let plain = self.buf[start + 1..]
            .iter()
            .all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x80);
        if plain {
            self.buf.push(b'"');
        } else {
            let text = String::from_utf8_lossy(&self.buf[start + 1..]).into_owned();
            self.buf.truncate(start);
            self.str(&text);
        }
    }
}
