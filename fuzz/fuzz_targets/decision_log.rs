//! A damaged decision log: every line is a record, a reported partial last
//! line or a reported corrupt line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::audit::replay::{parse_log, ReadProblems};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let mut problems = ReadProblems::default();
    parse_log(
        std::path::Path::new("fuzz.jsonl"),
        data,
        &mut out,
        &mut problems,
    );
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(out.len() + problems.partial_last_lines.len() + problems.corrupt_lines.len() <= lines);
    assert!(problems.partial_last_lines.len() <= 1);
});
