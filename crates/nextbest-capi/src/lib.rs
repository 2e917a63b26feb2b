//! The C ABI: the engine behind an opaque handle, JSON in and JSON out.
//!
//! The header `include/nextbest.h` is generated from this file by cbindgen
//! (in `crates/nextbest-capi`: `cbindgen --config cbindgen.toml --crate
//! nextbest-capi --output ../../include/nextbest.h`); CI regenerates it with
//! `--verify`, so a change here that is not regenerated fails the build.
//!
//! # Contract
//!
//! - **Inputs** are JSON (or a path) as `(const uint8_t *ptr, size_t len)`:
//!   UTF-8, not NUL-terminated, borrowed only for the call. A NULL `ptr` is
//!   `NB_ERR_NULL_ARGUMENT` even when `len` is 0.
//! - **Outputs** are `nb_buf`s that Rust allocates and the caller frees with
//!   `nb_buf_free`. The bytes are UTF-8 JSON, `len` bytes long; one NUL byte
//!   follows them (`ptr[len] == 0`, not counted in `len`), so a buffer can be
//!   printed as a C string. An empty buffer has `ptr == NULL`, `len == cap ==
//!   0`. Every `out`/`err` pointer may be NULL when the caller does not want
//!   that output. A function overwrites the buffers it is given without
//!   freeing them first: pass empty (zeroed or freed) buffers.
//! - **Statuses**: every function that can fail returns an `nb_status`; 0 is
//!   `NB_OK`. On success `err` is left empty; on failure every `out` is left
//!   empty and `err` receives
//!   `{"code": 6, "status": "NB_ERR_INVALID_RULES", "message": "...",
//!   "location": {"file": "actions/a.toml", "line": 3, "column": 9} | null,
//!   "errors": [{"message": "...", "location": {...}}, ...]}`
//!   (`errors` lists every rule error and is empty for other failures;
//!   `location` is the first one's). Status values a caller holds come back
//!   in as plain `int32_t` (`nb_status_str`), never as the enum.
//! - **Panics** never cross the boundary: each function runs in one guard
//!   (`guard`) that turns a panic into `NB_ERR_PANIC`. A panic is a bug in
//!   nextbest; the engine stays usable.
//! - **Threads**: an `nb_engine` may be used from any number of threads at
//!   once (it holds an `Arc<Engine>`; `Engine` is `Send + Sync` and every
//!   method takes `&self`). The one exception is `nb_engine_free`, which is
//!   like `free()`: no other call on that engine may be in flight or start
//!   after it; breaking this is undefined behaviour.

#![deny(unsafe_op_in_unsafe_fn)]

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use nextbest::Engine;
use nextbest::{Error, Location, RuleError};

/// The version of this ABI that `nb_abi_version` returns. It changes when a
/// function's signature or meaning changes incompatibly.
const ABI_VERSION: u32 = 1;

/// The crate version, NUL-terminated, for `nb_version`.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the crate version contains a NUL byte"),
    };

/// What a call returned. 0 (`NB_OK`) is success; every other value names a
/// kind of failure, described in the call's `err` buffer. New kinds may be
/// added at the end: treat unknown values as failures, and name them with
/// `nb_status_str`, which accepts any integer.
#[repr(i32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NbStatus {
    /// Success.
    NB_OK = 0,
    /// A required pointer argument was NULL.
    NB_ERR_NULL_ARGUMENT = 1,
    /// A text argument was not valid UTF-8.
    NB_ERR_INVALID_UTF8 = 2,
    /// A JSON argument was not syntactically valid JSON.
    NB_ERR_INVALID_JSON = 3,
    /// A request or outcome was valid JSON of the wrong shape (missing or
    /// unknown field, bad limit or time, unknown action...).
    NB_ERR_INVALID_REQUEST = 4,
    /// The request names a channel the rule set does not declare.
    NB_ERR_UNKNOWN_CHANNEL = 5,
    /// The rule set did not load (nothing changed); `err` lists every error
    /// with its file, line and column.
    NB_ERR_INVALID_RULES = 6,
    /// The engine configuration was invalid.
    NB_ERR_INVALID_CONFIG = 7,
    /// Reading or writing a file failed (a missing rule directory, the
    /// decision log).
    NB_ERR_IO = 8,
    /// There is no previous version to roll back to.
    NB_ERR_NO_PREVIOUS_VERSION = 9,
    /// Reserved for strategy-script failures. This version never returns
    /// it: a failing strategy hook leaves the decision without that hook
    /// and is listed in the decision's `diagnostics`.
    NB_ERR_SCRIPT = 10,
    /// nextbest panicked (a bug: please report it). The engine stays usable.
    NB_ERR_PANIC = 11,
    /// A context attribute had the wrong type or a value outside its
    /// allowed values.
    NB_ERR_INVALID_CONTEXT = 12,
    /// An error this version of the ABI has no more specific status for.
    NB_ERR_INTERNAL = 13,
}

impl NbStatus {
    /// Every status, in value order.
    pub const ALL: [NbStatus; 14] = [
        NbStatus::NB_OK,
        NbStatus::NB_ERR_NULL_ARGUMENT,
        NbStatus::NB_ERR_INVALID_UTF8,
        NbStatus::NB_ERR_INVALID_JSON,
        NbStatus::NB_ERR_INVALID_REQUEST,
        NbStatus::NB_ERR_UNKNOWN_CHANNEL,
        NbStatus::NB_ERR_INVALID_RULES,
        NbStatus::NB_ERR_INVALID_CONFIG,
        NbStatus::NB_ERR_IO,
        NbStatus::NB_ERR_NO_PREVIOUS_VERSION,
        NbStatus::NB_ERR_SCRIPT,
        NbStatus::NB_ERR_PANIC,
        NbStatus::NB_ERR_INVALID_CONTEXT,
        NbStatus::NB_ERR_INTERNAL,
    ];

    /// The status with value `code`, if there is one. C hands statuses
    /// back as integers; this is the only way one becomes an `NbStatus`.
    pub fn from_code(code: i32) -> Option<NbStatus> {
        NbStatus::ALL.into_iter().find(|s| *s as i32 == code)
    }

    /// The enumerator's name in the header (`"NB_ERR_INVALID_JSON"`), as in
    /// the error JSON's `status` field.
    pub fn name(self) -> &'static str {
        match self {
            NbStatus::NB_OK => "NB_OK",
            NbStatus::NB_ERR_NULL_ARGUMENT => "NB_ERR_NULL_ARGUMENT",
            NbStatus::NB_ERR_INVALID_UTF8 => "NB_ERR_INVALID_UTF8",
            NbStatus::NB_ERR_INVALID_JSON => "NB_ERR_INVALID_JSON",
            NbStatus::NB_ERR_INVALID_REQUEST => "NB_ERR_INVALID_REQUEST",
            NbStatus::NB_ERR_UNKNOWN_CHANNEL => "NB_ERR_UNKNOWN_CHANNEL",
            NbStatus::NB_ERR_INVALID_RULES => "NB_ERR_INVALID_RULES",
            NbStatus::NB_ERR_INVALID_CONFIG => "NB_ERR_INVALID_CONFIG",
            NbStatus::NB_ERR_IO => "NB_ERR_IO",
            NbStatus::NB_ERR_NO_PREVIOUS_VERSION => "NB_ERR_NO_PREVIOUS_VERSION",
            NbStatus::NB_ERR_SCRIPT => "NB_ERR_SCRIPT",
            NbStatus::NB_ERR_PANIC => "NB_ERR_PANIC",
            NbStatus::NB_ERR_INVALID_CONTEXT => "NB_ERR_INVALID_CONTEXT",
            NbStatus::NB_ERR_INTERNAL => "NB_ERR_INTERNAL",
        }
    }

    /// A short description for people, NUL-terminated, as `nb_status_str`
    /// returns it.
    pub fn description(self) -> &'static CStr {
        match self {
            NbStatus::NB_OK => c"ok",
            NbStatus::NB_ERR_NULL_ARGUMENT => c"null argument",
            NbStatus::NB_ERR_INVALID_UTF8 => c"invalid UTF-8",
            NbStatus::NB_ERR_INVALID_JSON => c"invalid JSON",
            NbStatus::NB_ERR_INVALID_REQUEST => c"invalid request",
            NbStatus::NB_ERR_UNKNOWN_CHANNEL => c"unknown channel",
            NbStatus::NB_ERR_INVALID_RULES => c"invalid rules",
            NbStatus::NB_ERR_INVALID_CONFIG => c"invalid configuration",
            NbStatus::NB_ERR_IO => c"I/O error",
            NbStatus::NB_ERR_NO_PREVIOUS_VERSION => c"no previous version",
            NbStatus::NB_ERR_SCRIPT => c"script error",
            NbStatus::NB_ERR_PANIC => c"panic (a bug in nextbest)",
            NbStatus::NB_ERR_INVALID_CONTEXT => c"invalid context",
            NbStatus::NB_ERR_INTERNAL => c"internal error",
        }
    }
}

/// An engine handle (opaque to C). Created by `nb_engine_open`, freed by
/// `nb_engine_free`; safe to share between threads.
#[derive(Debug)]
pub struct NbEngine {
    /// Following the fleet's rule rollout (`"state": {"follow": true}`):
    /// stopped first when the handle is freed. (Not in builds without the
    /// shared store, such as the fuzz targets', whose engines refuse a
    /// `state` section.)
    #[cfg(feature = "redis")]
    _fleet: Option<nextbest::FleetFollower>,
    engine: Arc<Engine>,
}

impl NbEngine {
    /// The engine behind the handle.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

/// Bytes allocated by nextbest and owned by the caller until passed to
/// `nb_buf_free`. `ptr[0..len]` is UTF-8 JSON, followed by one NUL byte not
/// counted in `len`; `cap` is the allocation's size, for `nb_buf_free` only.
/// An empty buffer is `{NULL, 0, 0}`; a zero-initialised `nb_buf` is empty.
#[repr(C)]
#[derive(Debug)]
pub struct NbBuf {
    /// The first byte, or NULL when empty.
    pub ptr: *mut u8,
    /// The number of bytes of content (not counting the trailing NUL).
    pub len: usize,
    /// The allocation's capacity; do not change it.
    pub cap: usize,
}

impl NbBuf {
    /// The empty buffer.
    pub const EMPTY: NbBuf = NbBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Hand `text` over to C, with a NUL byte after it.
    fn from_string(text: String) -> NbBuf {
        NbBuf::from_utf8(text.into_bytes())
    }

    /// `value` as JSON. Serialized straight into a buffer of `capacity`
    /// bytes (it grows if needed): for a decision this saves the
    /// reallocations of `to_string`, which starts at 128 bytes.
    fn json(value: &impl Serialize, capacity: usize) -> Result<NbBuf, Failure> {
        let mut bytes = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut bytes, value)
            .map_err(|e| Failure::new(NbStatus::NB_ERR_INTERNAL, format!("writing JSON: {e}")))?;
        Ok(NbBuf::from_utf8(bytes))
    }

    /// Hand UTF-8 `bytes` over to C, with a NUL byte after them.
    fn from_utf8(mut bytes: Vec<u8>) -> NbBuf {
        if bytes.is_empty() {
            return NbBuf::EMPTY;
        }
        let len = bytes.len();
        bytes.reserve_exact(1);
        bytes.push(0);
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        NbBuf {
            ptr: bytes.as_mut_ptr(),
            len,
            cap: bytes.capacity(),
        }
    }

    /// The content as text (tests and Rust callers).
    ///
    /// # Safety
    /// `self` must be empty or have come from nextbest and not been freed.
    pub unsafe fn as_str(&self) -> &str {
        if self.ptr.is_null() {
            return "";
        }
        // SAFETY: nextbest wrote `len` bytes of UTF-8 at `ptr` (caller's
        // promise that the buffer is ours and live).
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.ptr, self.len)) }
    }
}

/// A failed call: its status and what to tell the caller.
#[derive(Debug)]
struct Failure {
    status: NbStatus,
    message: String,
    rule_errors: Vec<RuleError>,
}

impl Failure {
    fn new(status: NbStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            rule_errors: Vec::new(),
        }
    }

    fn null(what: &str) -> Failure {
        Failure::new(NbStatus::NB_ERR_NULL_ARGUMENT, format!("`{what}` is NULL"))
    }

    /// An engine error. `json` is the JSON input the call parsed, if any:
    /// the engine reports malformed JSON and a wrong shape alike as an
    /// invalid request or configuration, so the syntax is checked again
    /// here, on the error path only, to tell them apart.
    fn from_error(error: Error, json: Option<&str>) -> Failure {
        let bad_syntax =
            || json.is_some_and(|j| serde_json::from_str::<serde::de::IgnoredAny>(j).is_err());
        let status = match &error {
            Error::Rules(_) | Error::Governance(_) => NbStatus::NB_ERR_INVALID_RULES,
            Error::InvalidContext { .. } => NbStatus::NB_ERR_INVALID_CONTEXT,
            Error::InvalidRequest(_) | Error::InvalidConfig(_) if bad_syntax() => {
                NbStatus::NB_ERR_INVALID_JSON
            }
            Error::InvalidRequest(_) => NbStatus::NB_ERR_INVALID_REQUEST,
            Error::UnknownChannel { .. } => NbStatus::NB_ERR_UNKNOWN_CHANNEL,
            Error::InvalidConfig(_) => NbStatus::NB_ERR_INVALID_CONFIG,
            Error::Rollback(_) => NbStatus::NB_ERR_NO_PREVIOUS_VERSION,
            Error::Io { .. } | Error::State(_) => NbStatus::NB_ERR_IO,
            // `Error` is non-exhaustive: a variant added later maps here
            // until it is given a status of its own.
            #[allow(unreachable_patterns)]
            _ => NbStatus::NB_ERR_INTERNAL,
        };
        Failure {
            status,
            message: error.to_string(),
            rule_errors: error
                .rule_errors()
                .map(<[RuleError]>::to_vec)
                .unwrap_or_default(),
        }
    }

    /// A caught panic. The payload is dropped under its own guard: a
    /// payload whose `Drop` panics is leaked rather than unwound into C.
    fn panic(payload: Box<dyn Any + Send>) -> Failure {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(p);
        }
        Failure::new(
            NbStatus::NB_ERR_PANIC,
            format!("nextbest panicked (a bug; please report it): {what}"),
        )
    }

    fn to_json(&self) -> String {
        let report = ErrorJson {
            code: self.status as i32,
            status: self.status.name(),
            message: &self.message,
            location: self
                .rule_errors
                .first()
                .map(|e| LocationJson::of(&e.location)),
            errors: self
                .rule_errors
                .iter()
                .map(|e| RuleErrorJson {
                    message: &e.message,
                    location: LocationJson::of(&e.location),
                })
                .collect(),
        };
        serde_json::to_string(&report).unwrap_or_else(|_| {
            format!(
                r#"{{"code":{},"status":"{}","message":"","location":null,"errors":[]}}"#,
                report.code, report.status
            )
        })
    }
}

/// The error JSON, fields in the order a reader wants them.
#[derive(Serialize)]
struct ErrorJson<'a> {
    code: i32,
    status: &'static str,
    message: &'a str,
    location: Option<LocationJson<'a>>,
    errors: Vec<RuleErrorJson<'a>>,
}

#[derive(Serialize)]
struct RuleErrorJson<'a> {
    message: &'a str,
    location: LocationJson<'a>,
}

#[derive(Serialize)]
struct LocationJson<'a> {
    file: std::borrow::Cow<'a, str>,
    line: usize,
    column: usize,
}

impl LocationJson<'_> {
    fn of(l: &Location) -> LocationJson<'_> {
        LocationJson {
            file: l.file.to_string_lossy(),
            line: l.line,
            column: l.column,
        }
    }
}

/// `out_version`'s JSON.
#[derive(Serialize)]
struct VersionJson<'a> {
    version: u64,
    name: &'a str,
    hash: &'a str,
}

/// The one guard every exported function runs in: empties `err`, runs
/// `body`, turns an error or a panic into a status and (if `err` is not
/// NULL) the error JSON. Nothing unwinds out of it.
///
/// # Safety
/// `err` is NULL or valid for writes.
unsafe fn guard(err: *mut NbBuf, body: impl FnOnce() -> Result<(), Failure>) -> NbStatus {
    // SAFETY: caller's promise on `err`.
    unsafe { put(err, NbBuf::EMPTY) };
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return NbStatus::NB_OK,
        Ok(Err(f)) => f,
        Err(payload) => Failure::panic(payload),
    };
    let status = failure.status;
    // SAFETY: as above.
    let report = catch_unwind(AssertUnwindSafe(|| unsafe {
        put(err, NbBuf::from_string(failure.to_json()))
    }));
    if let Err(p) = report {
        std::mem::forget(p);
    }
    status
}

/// Write `buf` through `dst`, or drop it when the caller passed NULL.
///
/// # Safety
/// `dst` is NULL or valid for writes.
unsafe fn put(dst: *mut NbBuf, buf: NbBuf) {
    if dst.is_null() {
        // SAFETY: `buf` is ours (from `NbBuf::from_utf8` or empty).
        unsafe { free_buf(buf) };
    } else {
        // SAFETY: caller's promise; the old value is overwritten, not
        // dropped (NbBuf has no Drop).
        unsafe { dst.write(buf) };
    }
}

/// Free a buffer's allocation.
///
/// # Safety
/// `buf` is empty or came from `NbBuf::from_utf8` and was not freed.
unsafe fn free_buf(buf: NbBuf) {
    if !buf.ptr.is_null() {
        // SAFETY: `ptr` and `cap` are a Vec<u8>'s, and `len < cap`.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

/// Borrow `(ptr, len)` as UTF-8 text; `what` names the argument in errors.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes for `'a`.
unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: caller's promise.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            NbStatus::NB_ERR_INVALID_UTF8,
            format!("`{what}` is not valid UTF-8: {e}"),
        )
    })
}

/// Borrow the engine behind a handle.
///
/// # Safety
/// `handle` is NULL or a live handle from `nb_engine_open`.
unsafe fn engine_ref<'a>(handle: *const NbEngine) -> Result<&'a Engine, Failure> {
    // SAFETY: caller's promise.
    match unsafe { handle.as_ref() } {
        Some(h) => Ok(&h.engine),
        None => Err(Failure::null("engine")),
    }
}

/// `{"version": N, "name": "...", "hash": "..."}` of version `number` (the
/// one a load or rollback made live), or of the live version if a
/// concurrent load has already pushed `number` out of the history.
fn version_buf(engine: &Engine, number: u64) -> Result<NbBuf, Failure> {
    let live = engine.current();
    if live.number() != number {
        if let Some(v) = engine.versions().into_iter().find(|v| v.version == number) {
            let json = VersionJson {
                version: v.version,
                name: &v.name,
                hash: &v.hash,
            };
            return NbBuf::json(&json, 128);
        }
    }
    let json = VersionJson {
        version: live.number(),
        name: live.rules().name(),
        hash: live.rules().hash(),
    };
    NbBuf::json(&json, 128)
}

/// The ABI version of this library: 1. Compare it with the header's
/// expectations before calling anything else.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub extern "C" fn nb_abi_version() -> u32 {
    catch_unwind(|| ABI_VERSION).unwrap_or(ABI_VERSION)
}

/// The library's version (`"0.1.0"`), a static NUL-terminated string.
/// Never free it.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub extern "C" fn nb_version() -> *const c_char {
    catch_unwind(|| VERSION.as_ptr()).unwrap_or(VERSION.as_ptr())
}

/// A static NUL-terminated description of `status` (`"invalid JSON"`), for
/// any value: unknown values give `"unknown status"`. Never free it.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub extern "C" fn nb_status_str(status: i32) -> *const c_char {
    const UNKNOWN: &CStr = c"unknown status";
    catch_unwind(|| {
        NbStatus::from_code(status)
            .map_or(UNKNOWN, NbStatus::description)
            .as_ptr()
    })
    .unwrap_or(UNKNOWN.as_ptr())
}

/// Open an engine from a JSON configuration
/// `{"rules_dir": "...", "keep_versions": 10, "decision_log": {"path": "...",
/// "on_error": "fail"}}` (`rules_dir` or `governance_repo` is required, or
/// `"state": {"url": ..., "follow": true}` to serve the fleet's live rule
/// version and follow its rollout, docs/FLEET.md; the decision log's keys
/// are those of docs/OPERATIONS.md). Loads, validates
/// and compiles the rule directory, or the live revision of the governance
/// repository `governance_repo` (refused unless approved and untampered).
/// On success `*out` is the new handle (free it with `nb_engine_free`); on
/// failure `*out` is NULL and `err` says why (`NB_ERR_INVALID_RULES` lists
/// every rule error with its location, or says why a governed revision was
/// refused).
///
/// # Safety
/// `config` is valid for reads of `config_len` bytes; `out` is valid for
/// writes; `err` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nb_engine_open(
    config: *const u8,
    config_len: usize,
    out: *mut *mut NbEngine,
    err: *mut NbBuf,
) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        guard(err, || {
            if out.is_null() {
                return Err(Failure::null("out"));
            }
            out.write(std::ptr::null_mut());
            let config = text(config, config_len, "config")?;
            let engine = Engine::from_config_json(config)
                .map_err(|e| Failure::from_error(e, Some(config)))?;
            let engine = Arc::new(engine);
            // (The configuration parsed above, so this parses too.)
            #[cfg(feature = "redis")]
            let follow = serde_json::from_str::<nextbest::EngineOptions>(config)
                .ok()
                .and_then(|o| o.state)
                .filter(|s| s.follow);
            #[cfg(feature = "redis")]
            let fleet = match follow {
                Some(state) => Some(
                    engine
                        .follow_fleet(&state)
                        .map_err(|e| Failure::from_error(e, Some(config)))?,
                ),
                None => None,
            };
            let handle = Box::new(NbEngine {
                #[cfg(feature = "redis")]
                _fleet: fleet,
                engine,
            });
            out.write(Box::into_raw(handle));
            Ok(())
        })
    }
}

/// Free an engine: stops its decision log after writing everything queued.
/// NULL is fine.
///
/// # Safety
/// `engine` is NULL or a handle from `nb_engine_open` not freed before.
/// Like `free()`: no other call on this engine may be in flight on any
/// thread, or start afterwards; breaking this is undefined behaviour.
#[no_mangle]
pub unsafe extern "C" fn nb_engine_free(engine: *mut NbEngine) {
    // SAFETY: caller's promises.
    unsafe {
        guard(std::ptr::null_mut(), || {
            if !engine.is_null() {
                drop(Box::from_raw(engine));
            }
            Ok(())
        });
    }
}

/// Decide: the next best actions for a JSON request
/// `{"customer_id": "C1", "channel": "call_center", "context": {...},
/// "limit": 2, "explain": false, "now": "2026-01-01T00:00:00Z"}`.
/// On success `out` receives the decision JSON (`decision_id`, `ruleset`,
/// `actions` with `rank`, `action`, `treatment`, `priority` and its factors,
/// ...). `NB_ERR_IO` when the decision log cannot take the decision's
/// record and its `on_error` is `"fail"` (the default): the decision is
/// not made, and what it took from engine state is given back. Safe to
/// call from many threads at once.
///
/// # Safety
/// `engine` is a live handle; `request` is valid for reads of
/// `request_len` bytes; `out` and `err` are NULL or valid for writes and
/// not the same buffer.
#[no_mangle]
pub unsafe extern "C" fn nb_decide(
    engine: *const NbEngine,
    request: *const u8,
    request_len: usize,
    out: *mut NbBuf,
    err: *mut NbBuf,
) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        put(out, NbBuf::EMPTY);
        guard(err, || {
            let engine = engine_ref(engine)?;
            let request = text(request, request_len, "request")?;
            let decision = engine
                .decide_json(request)
                .map_err(|e| Failure::from_error(e, Some(request)))?;
            put(out, NbBuf::from_utf8(decision.to_json_vec()));
            Ok(())
        })
    }
}

/// Record an outcome JSON `{"customer_id": "C1", "action": "CARD_GOLD",
/// "channel": "call_center", "outcome": "accepted"}` (optional
/// `decision_id`, `timestamp`). The channel must exist in the live version
/// and the action in a kept one. `NB_ERR_IO` when the decision log cannot
/// take its record (`on_error = "fail"`): nothing is recorded. Safe to
/// call from many threads at once.
///
/// # Safety
/// `engine` is a live handle; `outcome` is valid for reads of
/// `outcome_len` bytes; `err` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nb_record_outcome(
    engine: *const NbEngine,
    outcome: *const u8,
    outcome_len: usize,
    err: *mut NbBuf,
) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        guard(err, || {
            let engine = engine_ref(engine)?;
            let outcome = text(outcome, outcome_len, "outcome")?;
            engine
                .record_outcome_json(outcome)
                .map_err(|e| Failure::from_error(e, Some(outcome)))
        })
    }
}

/// Hot swap: load, validate and compile the rule directory `rules_dir` (a
/// UTF-8 path) and make it live; decisions in flight finish on the version
/// they started with. Loading content identical to the live version's is a
/// no-op. On failure nothing changes. `out_version` receives
/// `{"version": N, "name": "...", "hash": "..."}` of the version made live.
///
/// # Safety
/// `engine` is a live handle; `rules_dir` is valid for reads of
/// `rules_dir_len` bytes; `out_version` and `err` are NULL or valid for
/// writes and not the same buffer.
#[no_mangle]
pub unsafe extern "C" fn nb_engine_load_rules(
    engine: *const NbEngine,
    rules_dir: *const u8,
    rules_dir_len: usize,
    out_version: *mut NbBuf,
    err: *mut NbBuf,
) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        put(out_version, NbBuf::EMPTY);
        guard(err, || {
            let engine = engine_ref(engine)?;
            let dir = text(rules_dir, rules_dir_len, "rules_dir")?;
            let number = engine
                .reload(Path::new(dir))
                .map_err(|e| Failure::from_error(e, None))?;
            put(out_version, version_buf(engine, number)?);
            Ok(())
        })
    }
}

/// Serve the previous kept version again, at once. `out_version` receives
/// `{"version": N, "name": "...", "hash": "..."}` of the version now
/// serving; with no previous version the status is
/// `NB_ERR_NO_PREVIOUS_VERSION` and nothing changes.
///
/// # Safety
/// `engine` is a live handle; `out_version` and `err` are NULL or valid for
/// writes and not the same buffer.
#[no_mangle]
pub unsafe extern "C" fn nb_engine_rollback(
    engine: *const NbEngine,
    out_version: *mut NbBuf,
    err: *mut NbBuf,
) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        put(out_version, NbBuf::EMPTY);
        guard(err, || {
            let engine = engine_ref(engine)?;
            let number = engine
                .rollback()
                .map_err(|e| Failure::from_error(e, None))?;
            put(out_version, version_buf(engine, number)?);
            Ok(())
        })
    }
}

/// Counters and the version history as JSON: `current`, `versions`,
/// `loads_succeeded`, `loads_failed`, `last_load_error`, `decisions`
/// (per arm), `decision_errors`, `outcomes`, `script_errors`, `log`,
/// `history` (`{"customers": N, "events": M}`).
///
/// # Safety
/// `engine` is a live handle; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nb_engine_stats(engine: *const NbEngine, out: *mut NbBuf) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        put(out, NbBuf::EMPTY);
        guard(std::ptr::null_mut(), || {
            let engine = engine_ref(engine)?;
            put(out, NbBuf::json(&engine.stats(), 1024)?);
            Ok(())
        })
    }
}

/// Return once every decision and outcome recorded before this call is
/// written to the decision log and synced to disk. Without a decision log
/// there is nothing to do.
///
/// # Safety
/// `engine` is a live handle; `err` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nb_engine_flush(engine: *const NbEngine, err: *mut NbBuf) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        guard(err, || {
            let engine = engine_ref(engine)?;
            engine.flush().map_err(|e| Failure::from_error(e, None))
        })
    }
}

/// Save the interaction history, outcome counts and volume counters to the
/// file at `path` (UTF-8, not NUL-terminated), atomically: a temporary file
/// in the same directory, synced, then renamed over `path`, so a crash
/// leaves the old file or the new one. Open an engine with
/// `"state_file": "<path>"` in its configuration to load it.
///
/// # Safety
/// `engine` is a live handle; `path` is valid for reads of `path_len`
/// bytes; `err` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nb_engine_save_state(
    engine: *const NbEngine,
    path: *const u8,
    path_len: usize,
    err: *mut NbBuf,
) -> NbStatus {
    // SAFETY: caller's promises, passed on.
    unsafe {
        guard(err, || {
            let engine = engine_ref(engine)?;
            let path = text(path, path_len, "path")?;
            engine
                .save_state(Path::new(path))
                .map_err(|e| Failure::from_error(e, None))
        })
    }
}

/// Free a buffer nextbest filled and leave it empty (`{NULL, 0, 0}`), so
/// freeing twice is harmless. NULL and empty buffers are fine.
///
/// # Safety
/// `buf` is NULL, or points to an empty buffer or one filled by nextbest
/// whose fields the caller has not changed.
#[no_mangle]
pub unsafe extern "C" fn nb_buf_free(buf: *mut NbBuf) {
    // SAFETY: caller's promises.
    unsafe {
        guard(std::ptr::null_mut(), || {
            if let Some(b) = buf.as_mut() {
                free_buf(std::mem::replace(b, NbBuf::EMPTY));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::{null, null_mut};

    /// A fixture rule directory (the unit tests run in this crate's
    /// directory; the fixtures are the workspace's).
    fn fixture(name: &str) -> String {
        format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn open(dir: &str) -> *mut NbEngine {
        let config = format!(r#"{{"rules_dir": "{dir}"}}"#);
        let mut engine = null_mut();
        let mut err = NbBuf::EMPTY;
        let status =
            unsafe { nb_engine_open(config.as_ptr(), config.len(), &mut engine, &mut err) };
        assert_eq!(status, NbStatus::NB_OK, "{}", unsafe { err.as_str() });
        assert!(err.ptr.is_null());
        engine
    }

    fn error_json(buf: &mut NbBuf) -> serde_json::Value {
        let v = serde_json::from_str(unsafe { buf.as_str() }).expect("err is JSON");
        unsafe { nb_buf_free(buf) };
        v
    }

    #[test]
    fn statuses_are_numbered_in_order_and_named_uniquely() {
        for (i, s) in NbStatus::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            assert_eq!(NbStatus::from_code(i as i32), Some(*s));
            let d = unsafe { CStr::from_ptr(nb_status_str(i as i32)) };
            assert_eq!(d, s.description());
            assert_ne!(d.to_bytes(), b"unknown status");
        }
        let names: std::collections::HashSet<_> = NbStatus::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), NbStatus::ALL.len());
        for code in [-1, 14, 9999, i32::MIN, i32::MAX] {
            assert_eq!(NbStatus::from_code(code), None);
            assert_eq!(
                unsafe { CStr::from_ptr(nb_status_str(code)) },
                c"unknown status"
            );
        }
    }

    /// An engine opened with `"state": {"follow": true}` and no rule
    /// directory serves the fleet's live version under its number, and
    /// follows a publish; freeing the handle stops the follower. Needs
    /// `NEXTBEST_TEST_REDIS_URL` (skipped without it, failed under CI).
    #[cfg(feature = "redis")]
    #[test]
    fn an_engine_opened_to_follow_the_fleet_follows_it() {
        use nextbest::state::{fleet::StateConfig, redis::FleetRollout};
        let Some(url) = std::env::var("NEXTBEST_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs NEXTBEST_TEST_REDIS_URL"
            );
            eprintln!("skipped: set NEXTBEST_TEST_REDIS_URL to run the fleet test");
            return;
        };
        let prefix = format!("nbtest:capi_follow:{}:", std::process::id());
        let store = FleetRollout::connect(&StateConfig {
            key_prefix: prefix.clone(),
            ..StateConfig::new(url.clone())
        })
        .expect("connect");
        let rules = |d: &str| nextbest::RuleSet::from_dir(fixture(d)).expect("rules");
        let first = store.publish(&rules("mini"), "test").expect("publish");
        let config = serde_json::json!({"state": {"url": url, "key_prefix": prefix,
            "timeout_ms": 500, "follow": true, "heartbeat_ms": 100}})
        .to_string();
        let mut engine = null_mut();
        let mut err = NbBuf::EMPTY;
        let status =
            unsafe { nb_engine_open(config.as_ptr(), config.len(), &mut engine, &mut err) };
        assert_eq!(status, NbStatus::NB_OK, "{}", unsafe { err.as_str() });
        let serving = || unsafe { (*engine).engine.current().number() };
        assert_eq!(serving(), first);
        let second = store.publish(&rules("mini_v2"), "test").expect("publish");
        let start = std::time::Instant::now();
        while serving() != second {
            assert!(start.elapsed().as_secs() < 5, "not followed within 5 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(store.instances().expect("instances").len(), 1);
        unsafe { nb_engine_free(engine) };
        assert!(store.instances().expect("instances").is_empty());
    }

    #[test]
    fn version_is_the_crate_version() {
        assert_eq!(nb_abi_version(), 1);
        let v = unsafe { CStr::from_ptr(nb_version()) };
        assert_eq!(v.to_str(), Ok(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn a_panic_becomes_a_status_and_an_error() {
        let mut err = NbBuf::EMPTY;
        let status = unsafe { guard(&mut err, || panic!("on purpose")) };
        assert_eq!(status, NbStatus::NB_ERR_PANIC);
        let e = error_json(&mut err);
        assert_eq!(e["code"], 11);
        assert_eq!(e["status"], "NB_ERR_PANIC");
        assert!(e["message"]
            .as_str()
            .is_some_and(|m| m.contains("on purpose")));
        assert!(e["location"].is_null());
    }

    #[test]
    fn buffers_carry_a_trailing_nul_and_free_to_empty() {
        let mut buf = NbBuf::from_string("{}".into());
        assert_eq!(buf.len, 2);
        assert!(buf.cap > buf.len);
        assert_eq!(unsafe { *buf.ptr.add(2) }, 0);
        unsafe { nb_buf_free(&mut buf) };
        assert!(buf.ptr.is_null() && buf.len == 0 && buf.cap == 0);
        unsafe { nb_buf_free(&mut buf) };
        unsafe { nb_buf_free(null_mut()) };
        let empty = NbBuf::from_string(String::new());
        assert!(empty.ptr.is_null());
    }

    #[test]
    fn decide_returns_the_decision_json_and_leaves_err_empty() {
        let engine = open(&fixture("mini"));
        let req = br#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":90000,"segment":"gold"}}"#;
        let (mut out, mut err) = (NbBuf::EMPTY, NbBuf::EMPTY);
        let status = unsafe { nb_decide(engine, req.as_ptr(), req.len(), &mut out, &mut err) };
        assert_eq!(status, NbStatus::NB_OK);
        assert!(err.ptr.is_null());
        let d: serde_json::Value = serde_json::from_str(unsafe { out.as_str() }).unwrap();
        assert_eq!(d["actions"][0]["action"], "CARD_BASIC");
        assert_eq!(d["actions"][1]["action"], "CARD_GOLD");
        unsafe {
            nb_buf_free(&mut out);
            nb_engine_free(engine);
        }
    }

    #[test]
    fn each_failure_has_its_status_and_out_stays_empty() {
        let engine = open(&fixture("mini"));
        let cases: [(&[u8], NbStatus); 6] = [
            (b"{not json", NbStatus::NB_ERR_INVALID_JSON),
            (b"\xff\xfe", NbStatus::NB_ERR_INVALID_UTF8),
            (br#"{"customer_id":"C1"}"#, NbStatus::NB_ERR_INVALID_REQUEST),
            (
                br#"{"customer_id":"C1","channel":"fax"}"#,
                NbStatus::NB_ERR_UNKNOWN_CHANNEL,
            ),
            (
                br#"{"customer_id":"C1","channel":"email","context":{"age":"old"}}"#,
                NbStatus::NB_ERR_INVALID_CONTEXT,
            ),
            (
                br#"{"customer_id":"C1","channel":"email","limit":0}"#,
                NbStatus::NB_ERR_INVALID_REQUEST,
            ),
        ];
        for (req, want) in cases {
            let (mut out, mut err) = (NbBuf::EMPTY, NbBuf::EMPTY);
            let status = unsafe { nb_decide(engine, req.as_ptr(), req.len(), &mut out, &mut err) };
            assert_eq!(status, want, "{}", String::from_utf8_lossy(req));
            assert!(out.ptr.is_null());
            let e = error_json(&mut err);
            assert_eq!(e["code"], want as i32);
            assert_eq!(e["status"], want.name());
        }
        let status = unsafe { nb_decide(engine, null(), 0, null_mut(), null_mut()) };
        assert_eq!(status, NbStatus::NB_ERR_NULL_ARGUMENT);
        let status = unsafe { nb_decide(null(), b"{}".as_ptr(), 2, null_mut(), null_mut()) };
        assert_eq!(status, NbStatus::NB_ERR_NULL_ARGUMENT);
        unsafe { nb_engine_free(engine) };
    }

    /// Open an engine from `config`, or return the error JSON.
    fn open_with(config: &str) -> Result<*mut NbEngine, serde_json::Value> {
        let mut engine = null_mut();
        let mut err = NbBuf::EMPTY;
        let status =
            unsafe { nb_engine_open(config.as_ptr(), config.len(), &mut engine, &mut err) };
        if status == NbStatus::NB_OK {
            Ok(engine)
        } else {
            Err(error_json(&mut err))
        }
    }

    /// Decide for the mini fixture: the status and the error JSON, if any.
    fn decide_mini(engine: *mut NbEngine) -> (NbStatus, Option<serde_json::Value>) {
        let req =
            br#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":90000}}"#;
        let (mut out, mut err) = (NbBuf::EMPTY, NbBuf::EMPTY);
        let status = unsafe { nb_decide(engine, req.as_ptr(), req.len(), &mut out, &mut err) };
        unsafe { nb_buf_free(&mut out) };
        let e = (!err.ptr.is_null()).then(|| error_json(&mut err));
        (status, e)
    }

    /// The decision log's failure policy comes from the configuration
    /// JSON: on a full device (`/dev/full`), `"on_error": "fail"` makes
    /// `nb_decide` return `NB_ERR_IO` naming the file once the log has
    /// failed, and the stats count it as refused; `"degrade"` decides on.
    #[test]
    fn the_log_failure_policy_comes_from_the_config_json() {
        let config = |on_error: &str| {
            format!(
                r#"{{"rules_dir": "{}", "decision_log": {{"path": "/dev/full", "on_error": "{on_error}", "when_full": "block", "block_timeout_ms": 50}}}}"#,
                fixture("mini")
            )
        };
        for on_error in ["fail", "degrade"] {
            let engine = open_with(&config(on_error)).unwrap();
            assert_eq!(decide_mini(engine).0, NbStatus::NB_OK);
            let mut err = NbBuf::EMPTY;
            let status = unsafe { nb_engine_flush(engine, &mut err) };
            assert_eq!(status, NbStatus::NB_ERR_IO);
            let e = error_json(&mut err);
            assert!(e["message"].as_str().unwrap().contains("/dev/full"), "{e}");
            let (status, e) = decide_mini(engine);
            let mut buf = NbBuf::EMPTY;
            assert_eq!(
                unsafe { nb_engine_stats(engine, &mut buf) },
                NbStatus::NB_OK
            );
            let stats: serde_json::Value = serde_json::from_str(unsafe { buf.as_str() }).unwrap();
            unsafe { nb_buf_free(&mut buf) };
            assert_eq!(stats["log"]["failing"], true, "{stats}");
            if on_error == "fail" {
                assert_eq!(status, NbStatus::NB_ERR_IO);
                let e = e.unwrap();
                assert!(e["message"].as_str().unwrap().contains("/dev/full"), "{e}");
                assert_eq!(stats["log"]["refused"], 1, "{stats}");
            } else {
                assert_eq!(status, NbStatus::NB_OK, "{e:?}");
                assert_eq!(stats["log"]["refused"], 0, "{stats}");
            }
            unsafe { nb_engine_free(engine) };
        }
        let e = open_with(&config("ignore")).err().unwrap();
        assert_eq!(e["status"], "NB_ERR_INVALID_CONFIG", "{e}");
        assert!(e["message"].as_str().unwrap().contains("ignore"), "{e}");
    }

    #[test]
    fn rule_errors_are_all_listed_with_locations() {
        let config = format!(r#"{{"rules_dir": "{}"}}"#, fixture("broken"));
        let mut engine = std::ptr::NonNull::<NbEngine>::dangling().as_ptr(); // overwritten with NULL
        let mut err = NbBuf::EMPTY;
        let status =
            unsafe { nb_engine_open(config.as_ptr(), config.len(), &mut engine, &mut err) };
        assert_eq!(status, NbStatus::NB_ERR_INVALID_RULES);
        assert!(engine.is_null());
        let e = error_json(&mut err);
        let errors = e["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(e["location"], errors[0]["location"]);
        assert!(e["location"]["line"].as_u64().is_some_and(|l| l > 0));
    }

    #[test]
    fn a_governance_repo_in_the_config_is_opened_as_one() {
        // A rule directory is not a governance repository: the key is read
        // (not an unknown key) and the refusal says why.
        let config = format!(r#"{{"governance_repo": "{}"}}"#, fixture("mini"));
        let mut engine = null_mut();
        let mut err = NbBuf::EMPTY;
        let status =
            unsafe { nb_engine_open(config.as_ptr(), config.len(), &mut engine, &mut err) };
        assert_eq!(status, NbStatus::NB_ERR_INVALID_RULES);
        assert!(engine.is_null());
        let e = error_json(&mut err);
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains("is not a governance repository (no governance.toml)"),
            "{message}"
        );
    }

    #[test]
    fn load_and_rollback_report_the_version_made_live() {
        let engine = open(&fixture("mini"));
        let dir = fixture("mini_v2");
        let dir = dir.as_str();
        let mut v = NbBuf::EMPTY;
        let status =
            unsafe { nb_engine_load_rules(engine, dir.as_ptr(), dir.len(), &mut v, null_mut()) };
        assert_eq!(status, NbStatus::NB_OK);
        let j: serde_json::Value = serde_json::from_str(unsafe { v.as_str() }).unwrap();
        assert_eq!(j["version"], 2);
        assert_eq!(j["name"], "mini");
        unsafe { nb_buf_free(&mut v) };
        assert_eq!(
            unsafe { nb_engine_rollback(engine, &mut v, null_mut()) },
            NbStatus::NB_OK
        );
        let j: serde_json::Value = serde_json::from_str(unsafe { v.as_str() }).unwrap();
        assert_eq!(j["version"], 1);
        unsafe { nb_buf_free(&mut v) };
        let mut err = NbBuf::EMPTY;
        assert_eq!(
            unsafe { nb_engine_rollback(engine, &mut v, &mut err) },
            NbStatus::NB_ERR_NO_PREVIOUS_VERSION
        );
        assert!(v.ptr.is_null());
        assert_eq!(error_json(&mut err)["status"], "NB_ERR_NO_PREVIOUS_VERSION");
        unsafe { nb_engine_free(engine) };
    }
}
