//! Reading decision logs back: JSON Lines, plain or in zstd frames, with
//! every damaged stretch (a torn last line, a corrupt frame) reported rather
//! than fatal.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::base::Error;

/// One parsed line of a decision log.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The record.
    pub record: serde_json::Value,
}

/// What reading a log found besides its records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadProblems {
    /// A last line without its newline that does not parse: what a crash
    /// mid-write leaves. Expected at most once per file.
    pub partial_last_lines: Vec<String>,
    /// Lines that do not parse anywhere else: corruption.
    pub corrupt_lines: Vec<String>,
}

/// Read decision-log files (JSON Lines, plain or zstd-compressed), in the
/// order given.
pub fn read_log(paths: &[PathBuf]) -> Result<(Vec<LogLine>, ReadProblems), Error> {
    let mut out = Vec::new();
    let mut problems = ReadProblems::default();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        parse_log_file(path, &bytes, &mut out, &mut problems);
    }
    Ok((out, problems))
}

/// The first bytes of a zstd frame.
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// A stretch of a zstd log file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A complete frame (its size checks out; it may still fail to decode).
    Frame(std::ops::Range<usize>),
    /// Bytes that are no frame, followed by a frame.
    Corrupt(std::ops::Range<usize>),
    /// The start of a frame cut short at the end of the file: what a crash
    /// mid-write leaves.
    Partial(std::ops::Range<usize>),
    /// Trailing bytes that do not start a frame (lines written plain after
    /// the frames, or damage).
    Tail(std::ops::Range<usize>),
}

/// The size of the complete frame at the start of `rest`, if one is.
fn frame_at(rest: &[u8]) -> Option<usize> {
    if !rest.starts_with(&ZSTD_MAGIC) {
        return None;
    }
    match zstd::zstd_safe::find_frame_compressed_size(rest) {
        Ok(n) if n > 0 && n <= rest.len() => Some(n),
        _ => None,
    }
}

/// Split a zstd log file into frames and damage. After damage, reading
/// resumes at the next complete frame, so one bad frame costs only its own
/// records.
pub(crate) fn pieces(bytes: &[u8]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if let Some(n) = frame_at(&bytes[at..]) {
            out.push(Piece::Frame(at..at + n));
            at += n;
            continue;
        }
        let next = (at + 1..bytes.len()).find(|&p| frame_at(&bytes[p..]).is_some());
        let rest = &bytes[at..];
        match next {
            Some(p) => {
                out.push(Piece::Corrupt(at..p));
                at = p;
            }
            None if rest.starts_with(&ZSTD_MAGIC) || ZSTD_MAGIC.starts_with(rest) => {
                out.push(Piece::Partial(at..bytes.len()));
                break;
            }
            None => {
                out.push(Piece::Tail(at..bytes.len()));
                break;
            }
        }
    }
    out
}

/// Parse one log file's bytes: zstd frames (recognised by their first
/// bytes) are decompressed first, then read as [`parse_log`] reads plain
/// JSON Lines, with line numbers counted in the decompressed text. A last
/// frame cut short (what a crash mid-write leaves; it holds only records
/// that were never synced) is reported as a partial last line; a frame
/// that does not decompress, or bytes between frames, are reported as
/// corrupt and skipped (reading resumes at the next frame); plain lines
/// after the frames are read as such. Never fails.
pub fn parse_log_file(
    file: &Path,
    bytes: &[u8],
    out: &mut Vec<LogLine>,
    problems: &mut ReadProblems,
) {
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return parse_log(file, bytes, out, problems);
    }
    let mut text = Vec::new();
    for piece in pieces(bytes) {
        match piece {
            Piece::Frame(r) => {
                let before = text.len();
                if let Err(e) = zstd::stream::copy_decode(&bytes[r.clone()], &mut text) {
                    text.truncate(before);
                    problems.corrupt_lines.push(format!(
                        "{}: byte {}: zstd frame of {} bytes does not decompress: {e}",
                        file.display(),
                        r.start,
                        r.len()
                    ));
                }
            }
            Piece::Corrupt(r) => problems.corrupt_lines.push(format!(
                "{}: byte {}: {} bytes that are not a zstd frame, skipped",
                file.display(),
                r.start,
                r.len()
            )),
            Piece::Partial(r) => problems.partial_last_lines.push(format!(
                "{}: byte {}: partial last zstd frame ({} bytes; a crash while writing?)",
                file.display(),
                r.start,
                r.len()
            )),
            Piece::Tail(r) => text.extend_from_slice(&bytes[r]),
        }
    }
    parse_log(file, &text, out, problems);
}

/// Parse the bytes of one log file (which may be damaged) into records and
/// problems. Never fails: every byte sequence is either records, a partial
/// last line, or corrupt lines.
pub fn parse_log(file: &Path, bytes: &[u8], out: &mut Vec<LogLine>, problems: &mut ReadProblems) {
    let complete = bytes.last() == Some(&b'\n');
    let n_lines = bytes.split(|&b| b == b'\n').count();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let is_last = i + 1 == n_lines;
        match serde_json::from_slice::<serde_json::Value>(raw) {
            Ok(v) if v.is_object() && (complete || !is_last) => out.push(LogLine {
                file: file.to_path_buf(),
                line: i + 1,
                record: v,
            }),
            _ if is_last && !complete => problems.partial_last_lines.push(format!(
                "{}:{}: partial last line ({} bytes; a crash while writing?)",
                file.display(),
                i + 1,
                raw.len()
            )),
            Ok(_) => problems.corrupt_lines.push(format!(
                "{}:{}: not a JSON object",
                file.display(),
                i + 1
            )),
            Err(e) => problems
                .corrupt_lines
                .push(format!("{}:{}: {e}", file.display(), i + 1)),
        }
    }
}
