//! A decision request in JSON, on the retail_bank rule set (with its
//! strategies): a decision or a clear error, never a panic; the
//! hand-written response is the one serde_json makes of the decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::fuzzing::retail_bank as engine;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = engine().decide_json(json) {
        assert_eq!(d.to_json(), serde_json::to_string(&d).unwrap());
    }
});
