//! A decision request in JSON, on the retail_bank rule set (with its
//! strategies): a decision or a clear error, never a panic; the
//! hand-written response is valid JSON and says what serde makes of the
//! decision (compared as values: serde_json orders an object's keys by
//! name unless a crate in the build turns on its `preserve_order`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::fuzzing::retail_bank as engine;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = engine().decide_json(json) {
        let written: serde_json::Value =
            serde_json::from_str(&d.to_json()).expect("the response is JSON");
        assert_eq!(written, serde_json::to_value(&d).unwrap());
    }
});
