//! A decision request in JSON, on the retail_bank rule set (with its
//! strategies): a decision or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::fuzzing::retail_bank as engine;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = engine().decide_json(json) {
        let _ = d.to_json();
    }
});
