//! What every test against a real Redis shares: where the server is, and a
//! key prefix of its own. Included with `#[path]` by the fleet tests of the
//! core and of the CLI (a file under tests/support is not a test target).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// A `redis-server` of the test's own in `dir` (for tests that stop, kill
/// or restart it), or `None` (skip) as [`redis_url`] and
/// [`OwnServer::start`] say.
#[allow(dead_code)] // not every includer needs it
pub fn own_server(dir: &Path) -> Option<OwnServer> {
    redis_url()?;
    OwnServer::start(dir)
}

/// A key prefix no other test run uses.
#[allow(dead_code)] // not every includer needs it
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("nbtest:{test}:{}:{nanos}:", std::process::id())
}

/// A `redis-server` of this test's own, on a free loopback port, without
/// persistence, stopped, killed and restarted by its pid. Killed when
/// dropped.
#[allow(dead_code)] // not every includer needs it
pub struct OwnServer {
    port: u16,
    pid_file: PathBuf,
}

#[allow(dead_code)]
impl OwnServer {
    /// Start one, or `None` (skip) without the binary outside CI.
    pub fn start(dir: &Path) -> Option<OwnServer> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let s = OwnServer {
            port,
            pid_file: dir.join(format!("redis-{port}.pid")),
        };
        if !s.launch() {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but redis-server cannot be started");
            }
            eprintln!("skipped: no redis-server on the PATH");
            return None;
        }
        Some(s)
    }

    /// Start the server (again) on the port; whether it answers.
    pub fn launch(&self) -> bool {
        let started = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .arg("--pidfile")
            .arg(&self.pid_file)
            .stdout(Stdio::null())
            .status();
        if !started.is_ok_and(|s| s.success()) {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers() && self.pid().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether it answers `PING` within a second.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> Option<String> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the server's pid file");
        let ok = Command::new("kill")
            .args([signal, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }

    /// Kill it and wait until it is gone.
    pub fn kill(&self) {
        let pid = self.pid().expect("the server's pid file");
        self.signal("-KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // A killed server leaves its pid file behind.
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}
