//! A damaged decision log: every line is a record, a reported partial last
//! line or a reported corrupt line, never a panic. The same bytes read as
//! a log file (zstd frames when they start with zstd's magic number) never
//! panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::audit::reader::{parse_log, parse_log_file, ReadProblems};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let mut problems = ReadProblems::default();
    // An error is a record of a format version this reader does not
    // know: refused, not a panic.
    let _ = parse_log(
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

    // As a file: a partial last frame and a partial last line at most.
    let mut out = Vec::new();
    let mut problems = ReadProblems::default();
    let _ = parse_log_file(
        std::path::Path::new("fuzz.jsonl.zst"),
        data,
        &mut out,
        &mut problems,
    );
    assert!(problems.partial_last_lines.len() <= 2);
});
