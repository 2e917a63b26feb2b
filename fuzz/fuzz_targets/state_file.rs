//! A state file (`Engine::load_state`): loaded all or nothing, or a clear
//! error, never a panic; what loads saves and loads back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::Engine;

fn engine() -> Engine {
    Engine::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mini"))
        .expect("the mini fixture loads")
}

/// The file without its first line's `saved` time.
fn body(text: &str) -> String {
    let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut h: serde_json::Value = serde_json::from_str(head).expect("a saved header parses");
    h["saved"] = serde_json::Value::Null;
    format!("{h}\n{rest}")
}

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("nextbest-fuzz-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let input = dir.join("input.jsonl");
    std::fs::write(&input, data).expect("writing the input");
    let e = engine();
    if e.load_state(&input).is_err() {
        return;
    }
    // Loaded: saving and loading into a fresh engine changes nothing.
    let (first, second) = (dir.join("first.jsonl"), dir.join("second.jsonl"));
    e.save_state(&first).expect("saving a loaded state");
    let fresh = engine();
    fresh.load_state(&first).expect("loading a saved state");
    fresh.save_state(&second).expect("saving it again");
    let a = std::fs::read_to_string(&first).expect("read");
    let b = std::fs::read_to_string(&second).expect("read");
    assert_eq!(body(&a), body(&b));
});
