//! An outcome in JSON: recorded or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::fuzzing::retail_bank as engine;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let _ = engine().record_outcome_json(json);
});
