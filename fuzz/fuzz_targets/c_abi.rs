//! Every C ABI entry point fed arbitrary bytes. The first byte picks the
//! function; the rest is its input. Statuses only, never a panic or a
//! crash; every buffer handed out is freed.
#![no_main]

/// The C ABI (the `nextbest-capi` crate builds it as a static and a shared
/// library only, so its source is compiled into this binary to be called
/// from Rust).
#[path = "../../crates/nextbest-capi/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod capi;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use capi::*;

struct Handle(*mut NbEngine);
// SAFETY: the handle is documented as safe to share between threads.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn engine() -> *mut NbEngine {
    static E: OnceLock<Handle> = OnceLock::new();
    E.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mini");
        let config = format!(r#"{{"rules_dir": "{dir}"}}"#);
        let mut out = std::ptr::null_mut();
        let mut err = NbBuf::EMPTY;
        // SAFETY: valid pointers and lengths.
        let status = unsafe { nb_engine_open(config.as_ptr(), config.len(), &mut out, &mut err) };
        assert_eq!(status, NbStatus::NB_OK);
        unsafe { nb_buf_free(&mut err) };
        Handle(out)
    })
    .0
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let e = engine();
    let mut out = NbBuf::EMPTY;
    let mut err = NbBuf::EMPTY;
    // SAFETY: every pointer is valid (or deliberately NULL) and every length
    // matches its buffer.
    unsafe {
        match which % 10 {
            0 => {
                nb_decide(e, input.as_ptr(), input.len(), &mut out, &mut err);
            }
            1 => {
                nb_record_outcome(e, input.as_ptr(), input.len(), &mut err);
            }
            2 => {
                // Read-only: rule directories are only read.
                nb_engine_load_rules(e, input.as_ptr(), input.len(), &mut out, &mut err);
            }
            3 => {
                // Configurations that would write files are skipped.
                let text = String::from_utf8_lossy(input);
                if !text.contains("log") && !text.contains("archive") && !text.contains('\\') {
                    let mut h = std::ptr::null_mut();
                    nb_engine_open(input.as_ptr(), input.len(), &mut h, &mut err);
                    nb_engine_free(h);
                }
            }
            4 => {
                nb_engine_rollback(e, &mut out, &mut err);
            }
            5 => {
                nb_engine_stats(e, &mut out);
            }
            6 => {
                let code = input
                    .get(..4)
                    .map_or(0, |b| i32::from_le_bytes(b.try_into().unwrap()));
                let s = nb_status_str(code);
                assert!(!s.is_null());
            }
            7 => {
                // NULL everywhere it may be NULL, and where it may not.
                nb_decide(
                    e,
                    std::ptr::null(),
                    input.len(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
                nb_decide(
                    std::ptr::null(),
                    input.as_ptr(),
                    input.len(),
                    &mut out,
                    &mut err,
                );
                nb_record_outcome(e, std::ptr::null(), 0, std::ptr::null_mut());
            }
            8 => {
                // The path's bytes cross as given when they are not UTF-8
                // (an error); a UTF-8 path is replaced by a scratch file, so
                // the fuzzer never writes elsewhere.
                if std::str::from_utf8(input).is_err() {
                    nb_engine_save_state(e, input.as_ptr(), input.len(), &mut err);
                } else {
                    let path = std::env::temp_dir()
                        .join(format!("nextbest-fuzz-c-abi-{}.jsonl", std::process::id()));
                    let path = path.to_string_lossy().into_owned();
                    nb_engine_save_state(e, path.as_ptr(), path.len(), &mut err);
                }
            }
            _ => {
                nb_decide(
                    e,
                    input.as_ptr(),
                    input.len(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
        nb_buf_free(&mut out);
        nb_buf_free(&mut err);
    }
});
