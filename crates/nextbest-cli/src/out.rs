//! Standard output that survives its reader going away.
//!
//! `nextbest replay log | head` closes the pipe after a few lines. The
//! standard `println!` panics then ("failed printing to stdout"); this
//! crate's `println!` and `print!` (defined here, shadowing std's in every
//! module) note the closed pipe instead, drop the rest of the output and
//! let the command finish its work: a decision log it writes is still
//! flushed and closed as usual. Any other write error (a full disk behind
//! a redirect) is remembered too, and [`finish`] turns it into the exit
//! status with a message, so no report is cut short without a word.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::process::ExitCode;
use std::sync::Mutex;

/// The first error writing standard output met, if any.
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Write `args` (and a newline) to standard output, unless an earlier
/// write failed.
pub(crate) fn write(args: fmt::Arguments<'_>, newline: bool) {
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    if failed.is_some() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        *failed = Some(e);
    }
}

/// The command's exit status, given what happened to its output: a closed
/// pipe changes nothing (the reader chose to stop); any other write error
/// is reported and fails the command.
pub(crate) fn finish(code: ExitCode) -> ExitCode {
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Err(e) = std::io::stdout().flush() {
        failed.get_or_insert(e);
    }
    match failed {
        Some(e) if e.kind() != ErrorKind::BrokenPipe => {
            eprintln!("error: writing to standard output: {e}");
            ExitCode::FAILURE
        }
        _ => code,
    }
}

/// `println!` that stops writing, rather than panicking, when standard
/// output is gone (see the module docs).
macro_rules! println {
    () => {
        $crate::out::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), true)
    };
}

/// `print!` that stops writing, rather than panicking, when standard
/// output is gone (see the module docs).
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), false)
    };
}
