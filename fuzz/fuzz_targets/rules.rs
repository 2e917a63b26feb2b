//! A whole rule set from arbitrary text: `ruleset.toml`, an actions file,
//! a strategy script and a predictive model (`models/m.toml`, when there is
//! a fourth part), separated by lines holding `%%`. Loading must return a
//! rule set or located errors, never panic; a rule set that loads must
//! decide on an empty context without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::{Context, DecisionRequest, Engine, RuleSet, RuleSource, Timestamp};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split("\n%%\n");
    let ruleset = parts.next().unwrap_or_default();
    let actions = parts.next().unwrap_or_default();
    let script = parts.next().unwrap_or_default();
    let mut src = RuleSource::new()
        .file("ruleset.toml", ruleset)
        .file("actions/a.toml", actions)
        .file("strategies/s.rhai", script);
    if let Some(model) = parts.next() {
        src = src.file("models/m.toml", model);
    }
    match RuleSet::compile(&src) {
        Ok(rs) => {
            let channels: Vec<String> = rs.channel_names().map(str::to_string).collect();
            let engine = Engine::new(rs);
            for ch in channels {
                let ctx = Context::builder(&engine.schema()).build().unwrap();
                let req = DecisionRequest::new("F1", ch, ctx)
                    .explain(true)
                    .at(Timestamp(1_795_428_000));
                if let Ok(d) = engine.decide(&req) {
                    let _ = d.to_json();
                }
            }
        }
        Err(e) => {
            // Every rule error names a place.
            let _ = e.to_string();
        }
    }
});
