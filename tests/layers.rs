//! The core crate's layers never import upwards.
//!
//! The top-level modules of `src/` are layers, bottom up (the order the
//! crate docs and docs/ARCHITECTURE.md give):
//!
//! | layer | module  | what it is |
//! |------:|---------|------------|
//! | 0 | `base`    | plain types: stages, arms, ids, timestamps, values, scored candidates, outcomes, errors |
//! | 1 | `context` | the schema and the customer context bound to it |
//! | 2 | `expr`    | the condition language |
//! | 3 | `ruleset` | rule directories loaded, validated and compiled |
//! | 4 | `state`   | interaction history, counters, learning counts |
//! | 5 | `decide`  | the path of one decision |
//! | 6 | `audit`   | the decision log and its reader |
//! | 7 | `engine`  | versions, hot swap, configuration |
//! | 8 | `tools`   | simulation, persona tests, diffs, replay, evaluation |
//!
//! A file may use its own layer and the layers below it. This test reads
//! every `crate::` path in the code of each file (comments and `#[cfg(test)]`
//! modules aside: unit tests may build an engine to test a lower layer) and
//! fails on any path that reaches up.

use std::path::{Path, PathBuf};

const LAYERS: &[&str] = &[
    "base", "context", "expr", "ruleset", "state", "decide", "audit", "engine", "tools",
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == module)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: comments removed, and everything from a
/// `#[cfg(test)]` attribute followed by `mod` on.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The top-level modules named by `crate::` paths in `code`, with the
/// line each appears on, including those inside `use crate::{a, b::c}`.
fn used_modules(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                for part in group.split([',', '}']) {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push((name, n + 1));
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((name, n + 1));
            }
            rest = after;
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs"))
            .expect("a file name");
        // `lib.rs` re-exports from every layer; a `tests.rs` is a unit-test
        // module (declared under `#[cfg(test)]`).
        if top == "lib" || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(own) = layer_of(top) else {
            violations.push(format!(
                "src/{}: `{top}` is not a layer; add it to LAYERS (and to the crate docs)",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("reading a source file");
        for (module, line) in used_modules(&code(&text)) {
            checked += 1;
            match layer_of(&module) {
                Some(used) if used > own => violations.push(format!(
                    "src/{}:{line}: `{top}` (layer {own}) uses `crate::{module}` (layer {used})",
                    rel.display()
                )),
                Some(_) => {}
                // A crate-root item (`crate::Engine`): re-exports from any
                // layer, so name the module instead.
                None => violations.push(format!(
                    "src/{}:{line}: `crate::{module}` is a re-export; name its layer's module",
                    rel.display()
                )),
            }
        }
    }
    assert!(checked > 100, "only {checked} crate:: paths found");
    assert!(
        violations.is_empty(),
        "{} upward imports:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn the_scan_sees_grouped_and_inline_paths() {
    let code = code(
        "use crate::{base::Error, ruleset::RuleSet};\n\
         // use crate::engine::Engine;\n\
         fn f() { crate::decide::spare::scratch(); }\n\
         #[cfg(test)]\nmod tests { use crate::engine::Engine; }\n",
    );
    let got: Vec<String> = used_modules(&code).into_iter().map(|(m, _)| m).collect();
    assert_eq!(got, ["base", "ruleset", "decide"]);
}
