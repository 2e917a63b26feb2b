//! Reading decision logs back: JSON Lines, plain or in zstd frames, one
//! record at a time, with every damaged stretch (a torn last line, a
//! corrupt frame) reported rather than fatal, and records of a format this
//! reader does not know refused.
//!
//! [`LogReader`] streams: it holds one read buffer, at most one zstd frame
//! and its text, and one line at a time, whatever the size of the files
//! (a line or a frame larger than 64 MiB is reported as corrupt rather
//! than held). [`read_log`] collects every record for callers that want
//! them all.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::base::Error;

/// The record format versions this reader understands (`"v"`).
pub const FORMAT_VERSIONS: [u64; 1] = [1];

/// One parsed line of a decision log.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number (in the decompressed text, for zstd files).
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

/// The longest line (or decompressed frame) a reader holds: longer ones
/// are reported as corrupt and skipped, so damage cannot make a reader
/// hold a whole file.
const MAX_LINE: usize = 64 << 20;

/// The most bytes a reader holds while looking for the end of a zstd
/// frame, or for the next one after damage.
const MAX_SCAN: usize = 64 << 20;

/// What a reader reads from a file at a time.
const CHUNK: usize = 256 * 1024;

/// The log files that `inputs` name, oldest first: a file stands for
/// itself, a directory for the files in it (not those starting with `.`,
/// not subdirectories), and a name whose last part holds `*` or `?` (and
/// that is not itself a file) for the files it matches. The files of one
/// log (`PATH.N`, ..., `PATH.1`, `PATH`: how the log rotates) are put in
/// that order wherever they were found; different logs keep the order in
/// which they first appear (a directory's in name order). A file named
/// twice is read once.
pub fn log_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut found = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut in_dir = Vec::new();
            for entry in std::fs::read_dir(input).map_err(|e| Error::io(input, e))? {
                let entry = entry.map_err(|e| Error::io(input, e))?;
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                let is_file = entry
                    .file_type()
                    .map_err(|e| Error::io(input, e))?
                    .is_file();
                if is_file && !hidden {
                    in_dir.push(entry.path());
                }
            }
            in_dir.sort();
            found.extend(in_dir);
        } else if !input.exists() && is_pattern(input) {
            let matched = expand(input)?;
            if matched.is_empty() {
                return Err(Error::io(
                    input,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no file matches this pattern",
                    ),
                ));
            }
            found.extend(matched);
        } else {
            found.push(input.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|p| seen.insert(p.clone()));
    // Rotated files of one log, oldest first, at the place the log first
    // appears.
    let mut bases: Vec<PathBuf> = Vec::new();
    let mut keyed: Vec<(usize, std::cmp::Reverse<u64>, PathBuf)> = found
        .into_iter()
        .map(|p| {
            let (base, n) = rotation(&p);
            let group = match bases.iter().position(|b| *b == base) {
                Some(g) => g,
                None => {
                    bases.push(base);
                    bases.len() - 1
                }
            };
            (group, std::cmp::Reverse(n), p)
        })
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1));
    Ok(keyed.into_iter().map(|k| k.2).collect())
}

/// A log file's base path and rotation number: `d.jsonl.3` is (`d.jsonl`,
/// 3); a file that is not a rotated one is its own base, number 0.
fn rotation(path: &Path) -> (PathBuf, u64) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some((base, n)) = name.as_deref().and_then(|n| n.rsplit_once('.')) {
        let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
        if let (true, false, Ok(n)) = (digits, base.is_empty(), n.parse::<u64>()) {
            return (path.with_file_name(base), n);
        }
    }
    (path.to_path_buf(), 0)
}

fn is_pattern(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(['*', '?']))
}

/// The files in the pattern's directory whose names match its last part.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, Error> {
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let wanted: Vec<char> = pattern
        .file_name()
        .map(|n| n.to_string_lossy().chars().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name: Vec<char> = entry.file_name().to_string_lossy().chars().collect();
        let is_file = entry.file_type().map_err(|e| Error::io(&dir, e))?.is_file();
        if is_file && wildcard(&wanted, &name) {
            out.push(pattern.with_file_name(entry.file_name()));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `name` matches `pattern` (`*` any run, `?` any one character).
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == '*')
}

/// The records of decision-log files (JSON Lines, plain or zstd; see
/// [`log_files`] for what the inputs may be), one at a time and in order,
/// holding at most a buffer, a frame and a line of them in memory.
///
/// Damage is collected in [`LogReader::problems`] and reading goes on. An
/// error (a file that cannot be read, or a record of a format version
/// this reader does not know, named by file and line) ends the iteration.
///
/// ```no_run
/// use nextbest::audit::reader::LogReader;
/// let mut reader = LogReader::open(&["logs/".into()])?;
/// for line in reader.by_ref() {
///     let line = line?;
///     println!("{}:{} {}", line.file.display(), line.line, line.record["kind"]);
/// }
/// println!("{} records from {} files", reader.records(), reader.files().len());
/// # Ok::<(), nextbest::Error>(())
/// ```
pub struct LogReader {
    files: Vec<PathBuf>,
    next_file: usize,
    current: Option<(PathBuf, Lines<'static>)>,
    problems: ReadProblems,
    records: usize,
    stopped: bool,
}

impl LogReader {
    /// A reader of the files `inputs` name ([`log_files`]).
    pub fn open(inputs: &[PathBuf]) -> Result<LogReader, Error> {
        Ok(LogReader::of_files(log_files(inputs)?))
    }

    /// A reader of exactly these files, in this order.
    pub fn of_files(files: Vec<PathBuf>) -> LogReader {
        LogReader {
            files,
            next_file: 0,
            current: None,
            problems: ReadProblems::default(),
            records: 0,
            stopped: false,
        }
    }

    /// The files, in the order they are read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Records read so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Damage found so far.
    pub fn problems(&self) -> &ReadProblems {
        &self.problems
    }

    /// The damage found, taking it.
    pub fn into_problems(self) -> ReadProblems {
        self.problems
    }

    fn step(&mut self) -> Result<Option<LogLine>, Error> {
        loop {
            if let Some((path, lines)) = &mut self.current {
                match lines.next_record(path, &mut self.problems)? {
                    Some(line) => return Ok(Some(line)),
                    None => self.current = None,
                }
            }
            let Some(path) = self.files.get(self.next_file).cloned() else {
                return Ok(None);
            };
            self.next_file += 1;
            let lines = std::fs::File::open(&path)
                .and_then(Lines::new)
                .map_err(|e| Error::io(&path, e))?;
            self.current = Some((path, lines));
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<LogLine, Error>;

    fn next(&mut self) -> Option<Result<LogLine, Error>> {
        if self.stopped {
            return None;
        }
        match self.step() {
            Ok(Some(line)) => {
                self.records += 1;
                Some(Ok(line))
            }
            Ok(None) => {
                self.stopped = true;
                None
            }
            Err(e) => {
                self.stopped = true;
                Some(Err(e))
            }
        }
    }
}

/// Read decision-log files (JSON Lines, plain or zstd-compressed; see
/// [`log_files`] for what `paths` may be) into memory. [`LogReader`]
/// reads them one record at a time instead.
pub fn read_log(paths: &[PathBuf]) -> Result<(Vec<LogLine>, ReadProblems), Error> {
    let mut reader = LogReader::open(paths)?;
    let lines = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok((lines, reader.into_problems()))
}

/// Parse one log file's bytes as [`LogReader`] reads a file: zstd frames
/// (recognised by their first bytes) are decompressed first, then read as
/// JSON Lines, with line numbers counted in the decompressed text. A last
/// frame cut short (what a crash mid-write leaves; it holds only records
/// that were never synced) is reported as a partial last line; a frame
/// that does not decompress, or bytes between frames, are reported as
/// corrupt and skipped (reading resumes at the next frame); plain lines
/// after the frames are read as such. Fails only on a record of a format
/// version this reader does not know.
pub fn parse_log_file(
    file: &Path,
    bytes: &[u8],
    out: &mut Vec<LogLine>,
    problems: &mut ReadProblems,
) -> Result<(), Error> {
    let mut lines = Lines::new(bytes).map_err(|e| Error::io(file, e))?;
    while let Some(line) = lines.next_record(file, problems)? {
        out.push(line);
    }
    Ok(())
}

/// Parse the bytes of one plain log file (which may be damaged) into
/// records and problems: every byte sequence is records, a partial last
/// line, or corrupt lines. Fails only on a record of a format version
/// this reader does not know.
pub fn parse_log(
    file: &Path,
    bytes: &[u8],
    out: &mut Vec<LogLine>,
    problems: &mut ReadProblems,
) -> Result<(), Error> {
    let mut lines = Lines::plain(bytes);
    while let Some(line) = lines.next_record(file, problems)? {
        out.push(line);
    }
    Ok(())
}

/// Refuse a record whose format version (`"v"`) this reader does not
/// know: reading it as version 1 would replay or evaluate something else
/// than what was logged.
fn check_version(file: &Path, line: usize, record: &serde_json::Value) -> Result<(), Error> {
    let message = match record.get("v") {
        Some(v) if v.as_u64().is_some_and(|v| FORMAT_VERSIONS.contains(&v)) => return Ok(()),
        Some(v) => format!(
            "line {line}: the record is of format version {v}, which this nextbest does not read (it reads version {}): read the log with a nextbest that knows version {v}",
            FORMAT_VERSIONS[0]
        ),
        None => format!(
            "line {line}: the record has no format version (\"v\"): not a nextbest decision-log record"
        ),
    };
    Err(Error::io(
        file,
        std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    ))
}

/// The first bytes of a zstd frame.
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// A stretch of a zstd log file's bytes, by file offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A complete frame (its size checks out; it may still fail to decode).
    Frame(Range<u64>),
    /// Bytes that are no frame, followed by a frame (or a stretch of
    /// `MAX_SCAN` bytes holding none).
    Corrupt(Range<u64>),
    /// The start of a frame cut short at the end of the file: what a crash
    /// mid-write leaves.
    Partial(Range<u64>),
    /// Trailing bytes that do not start a frame (lines written plain after
    /// the frames, or damage).
    Tail(Range<u64>),
}

/// Splits a zstd log file into frames and damage as it reads it, holding
/// at most a frame and a read chunk. After damage, reading resumes at the
/// next complete frame, so one bad frame costs only its own records.
pub(crate) struct Frames<R> {
    src: R,
    buf: Vec<u8>,
    /// Where the bytes not yet split off start in `buf`.
    at: usize,
    /// The file offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// The bytes of the piece last returned, in `buf`.
    last: Range<usize>,
}

impl<R: Read> Frames<R> {
    pub(crate) fn new(src: R) -> Frames<R> {
        Frames {
            src,
            buf: Vec::new(),
            at: 0,
            base: 0,
            eof: false,
            last: 0..0,
        }
    }

    /// The bytes of the piece [`Frames::next_piece`] last returned.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[self.last.clone()]
    }

    fn avail(&self) -> usize {
        self.buf.len() - self.at
    }

    /// Read more (at least a chunk, and as much as is held: a large frame
    /// takes a few reads, not one per chunk), dropping what was split off.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.base += self.at as u64;
            self.last = 0..0;
            self.at = 0;
        }
        let want = CHUNK.max(self.buf.len());
        let len = self.buf.len();
        self.buf.resize(len + want, 0);
        let n = loop {
            match self.src.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        self.eof = n == 0;
        Ok(())
    }

    /// The size of the complete frame `off` bytes past `at`, if one starts
    /// there, reading more while the frame may go on past what is held.
    fn frame_at(&mut self, off: usize) -> std::io::Result<Option<usize>> {
        loop {
            let rest = &self.buf[self.at + off..];
            if rest.len() < ZSTD_MAGIC.len() {
                if ZSTD_MAGIC.starts_with(rest) && !self.eof {
                    self.fill()?;
                    continue;
                }
                return Ok(None);
            }
            if !rest.starts_with(&ZSTD_MAGIC) {
                return Ok(None);
            }
            let cut_short = match zstd::zstd_safe::find_frame_compressed_size(rest) {
                Ok(n) if n > 0 && n <= rest.len() => return Ok(Some(n)),
                Ok(_) => true,
                // Only a frame cut short can become whole with more bytes.
                Err(code) => zstd::zstd_safe::get_error_name(code) == "Src size is incorrect",
            };
            if !cut_short || self.eof || rest.len() >= MAX_SCAN {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Split off `n` bytes as a piece.
    fn take(&mut self, n: usize, piece: fn(Range<u64>) -> Piece) -> Piece {
        let start = self.base + self.at as u64;
        self.last = self.at..self.at + n;
        self.at += n;
        piece(start..start + n as u64)
    }

    /// The next piece, or `None` at the end of the file.
    pub(crate) fn next_piece(&mut self) -> std::io::Result<Option<Piece>> {
        if self.avail() == 0 {
            if !self.eof {
                self.fill()?;
            }
            if self.avail() == 0 {
                return Ok(None);
            }
        }
        if let Some(n) = self.frame_at(0)? {
            return Ok(Some(self.take(n, Piece::Frame)));
        }
        // Damage: look for the next whole frame.
        let mut from = 1;
        loop {
            let held = &self.buf[self.at..];
            let next_magic = held
                .get(from..)
                .and_then(|h| h.windows(ZSTD_MAGIC.len()).position(|w| w == ZSTD_MAGIC));
            if let Some(k) = next_magic {
                let p = from + k;
                if self.frame_at(p)?.is_some() {
                    return Ok(Some(self.take(p, Piece::Corrupt)));
                }
                from = p + 1;
                continue;
            }
            if self.eof {
                let rest = &self.buf[self.at..];
                let partial = rest.starts_with(&ZSTD_MAGIC) || ZSTD_MAGIC.starts_with(rest);
                let n = rest.len();
                return Ok(Some(if partial {
                    self.take(n, Piece::Partial)
                } else {
                    self.take(n, Piece::Tail)
                }));
            }
            let held = self.avail();
            if held >= MAX_SCAN {
                // Keep the last bytes: a frame's magic may straddle.
                return Ok(Some(
                    self.take(held - (ZSTD_MAGIC.len() - 1), Piece::Corrupt),
                ));
            }
            from = from.max(held.saturating_sub(ZSTD_MAGIC.len() - 1));
            self.fill()?;
        }
    }
}

/// The last piece of a zstd log file, if it is a partial frame: what the
/// log cuts off when it reopens the file.
pub(crate) fn partial_last_frame(src: impl Read) -> std::io::Result<Option<Range<u64>>> {
    let mut frames = Frames::new(src);
    let mut last = None;
    while let Some(piece) = frames.next_piece()? {
        last = Some(piece);
    }
    Ok(match last {
        Some(Piece::Partial(r)) => Some(r),
        _ => None,
    })
}

/// A `Write` that refuses to grow its vector past a limit: a frame that
/// would decompress to more than a reader holds is reported as corrupt.
struct Capped<'a> {
    out: &'a mut Vec<u8>,
    left: usize,
}

impl std::io::Write for Capped<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if bytes.len() > self.left {
            return Err(std::io::Error::other(format!(
                "it decompresses to more than {MAX_LINE} bytes"
            )));
        }
        self.left -= bytes.len();
        self.out.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a file's text comes from.
enum Source<'a> {
    /// Plain JSON Lines.
    Plain(Box<dyn Read + 'a>),
    /// zstd frames.
    Zstd(Box<Frames<Box<dyn Read + 'a>>>),
}

/// The lines of one log file, plain or zstd, as records and problems.
struct Lines<'a> {
    src: Source<'a>,
    /// Text read and not yet split into lines, from `pos`.
    text: Vec<u8>,
    pos: usize,
    /// Where to look for the next newline (none between `pos` and here).
    scan: usize,
    /// The source is exhausted.
    eof: bool,
    /// Newlines passed so far.
    line: usize,
    /// Skipping the rest of a line longer than `MAX_LINE`.
    skipping: bool,
}

impl<'a> Lines<'a> {
    /// A file's lines, plain or zstd by its first bytes.
    fn new(mut src: impl Read + 'a) -> std::io::Result<Lines<'a>> {
        let mut head = Vec::with_capacity(ZSTD_MAGIC.len());
        (&mut src)
            .take(ZSTD_MAGIC.len() as u64)
            .read_to_end(&mut head)?;
        let zstd = head == ZSTD_MAGIC;
        let src: Box<dyn Read + 'a> = Box::new(std::io::Cursor::new(head).chain(src));
        Ok(Lines::with(if zstd {
            Source::Zstd(Box::new(Frames::new(src)))
        } else {
            Source::Plain(src)
        }))
    }

    /// A plain file's lines.
    fn plain(src: impl Read + 'a) -> Lines<'a> {
        Lines::with(Source::Plain(Box::new(src)))
    }

    fn with(src: Source<'a>) -> Lines<'a> {
        Lines {
            src,
            text: Vec::new(),
            pos: 0,
            scan: 0,
            eof: false,
            line: 0,
            skipping: false,
        }
    }

    /// Add text from the source (appended to `text`); `eof` once there is
    /// none.
    fn refill(&mut self, file: &Path, problems: &mut ReadProblems) -> Result<(), Error> {
        let frames = match &mut self.src {
            Source::Plain(src) => {
                let len = self.text.len();
                self.text.resize(len + CHUNK, 0);
                let n = loop {
                    match src.read(&mut self.text[len..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            self.text.truncate(len);
                            return Err(Error::io(file, e));
                        }
                    }
                };
                self.text.truncate(len + n);
                self.eof = n == 0;
                return Ok(());
            }
            Source::Zstd(frames) => frames,
        };
        loop {
            let Some(piece) = frames.next_piece().map_err(|e| Error::io(file, e))? else {
                self.eof = true;
                return Ok(());
            };
            match piece {
                Piece::Frame(r) => {
                    let before = self.text.len();
                    let out = Capped {
                        out: &mut self.text,
                        left: MAX_LINE,
                    };
                    match zstd::stream::copy_decode(frames.bytes(), out) {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            self.text.truncate(before);
                            problems.corrupt_lines.push(format!(
                                "{}: byte {}: zstd frame of {} bytes does not decompress: {e}",
                                file.display(),
                                r.start,
                                r.end - r.start
                            ));
                        }
                    }
                }
                Piece::Corrupt(r) => problems.corrupt_lines.push(format!(
                    "{}: byte {}: {} bytes that are not a zstd frame, skipped",
                    file.display(),
                    r.start,
                    r.end - r.start
                )),
                Piece::Partial(r) => problems.partial_last_lines.push(format!(
                    "{}: byte {}: partial last zstd frame ({} bytes; a crash while writing?)",
                    file.display(),
                    r.start,
                    r.end - r.start
                )),
                Piece::Tail(_) => {
                    self.text.extend_from_slice(frames.bytes());
                    return Ok(());
                }
            }
        }
    }

    /// The next line: its range in `text` and whether it ended with a
    /// newline (only the last line of a file may not).
    fn next_line(
        &mut self,
        file: &Path,
        problems: &mut ReadProblems,
    ) -> Result<Option<(Range<usize>, bool)>, Error> {
        loop {
            let found = self.text[self.scan..].iter().position(|&b| b == b'\n');
            if let Some(k) = found {
                let end = self.scan + k;
                let range = self.pos..end;
                self.pos = end + 1;
                self.scan = self.pos;
                self.line += 1;
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                return Ok(Some((range, true)));
            }
            self.scan = self.text.len();
            if self.eof {
                if self.pos == self.text.len() || self.skipping {
                    return Ok(None);
                }
                let range = self.pos..self.text.len();
                self.pos = self.text.len();
                self.scan = self.pos;
                self.line += 1;
                return Ok(Some((range, false)));
            }
            if self.text.len() - self.pos > MAX_LINE {
                problems.corrupt_lines.push(format!(
                    "{}:{}: a line longer than {MAX_LINE} bytes, skipped",
                    file.display(),
                    self.line + 1
                ));
                self.skipping = true;
                self.pos = self.text.len();
            }
            // What was split off goes; what is left of a line stays.
            self.text.drain(..self.pos);
            self.scan -= self.pos;
            self.pos = 0;
            if self.skipping {
                self.text.clear();
                self.scan = 0;
            }
            self.refill(file, problems)?;
        }
    }

    /// The next record, reporting damage on the way.
    fn next_record(
        &mut self,
        file: &Path,
        problems: &mut ReadProblems,
    ) -> Result<Option<LogLine>, Error> {
        while let Some((range, complete)) = self.next_line(file, problems)? {
            let raw = &self.text[range];
            if raw.is_empty() {
                continue;
            }
            if !complete {
                problems.partial_last_lines.push(format!(
                    "{}:{}: partial last line ({} bytes; a crash while writing?)",
                    file.display(),
                    self.line,
                    raw.len()
                ));
                continue;
            }
            match serde_json::from_slice::<serde_json::Value>(raw) {
                Ok(record) if record.is_object() => {
                    check_version(file, self.line, &record)?;
                    return Ok(Some(LogLine {
                        file: file.to_path_buf(),
                        line: self.line,
                        record,
                    }));
                }
                Ok(_) => problems.corrupt_lines.push(format!(
                    "{}:{}: not a JSON object",
                    file.display(),
                    self.line
                )),
                Err(e) => {
                    problems
                        .corrupt_lines
                        .push(format!("{}:{}: {e}", file.display(), self.line))
                }
            }
        }
        Ok(None)
    }
}
