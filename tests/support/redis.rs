//! What every test against a real Redis shares: where the server is, and a
//! key prefix of its own. Included with `#[path]` by the fleet tests of the
//! core and of the CLI (a file under tests/support is not a test target).

/// The server to test against (`NEXTBEST_TEST_REDIS_URL`), or `None`
/// (skip, saying so) outside CI. With `CI` set a missing server fails the
/// test: .ci/run must start one.
pub fn redis_url() -> Option<String> {
    match std::env::var("NEXTBEST_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but NEXTBEST_TEST_REDIS_URL is not: .ci/run must start redis-server")
        }
        _ => {
            eprintln!("skipped: set NEXTBEST_TEST_REDIS_URL=redis://127.0.0.1:PORT/0 to run the Redis fleet tests");
            None
        }
    }
}

/// A key prefix no other test run uses.
#[allow(dead_code)] // not every includer needs it
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("nbtest:{test}:{}:{nanos}:", std::process::id())
}
