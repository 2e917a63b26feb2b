//! The spool: a decision log's files on disk, read as the shipper needs
//! them, whole records with the place just after each.
//!
//! A log is a path `PATH` and its rotated files `PATH.1`, `PATH.2`, ...
//! (the core's `FileSink` renames `PATH` to `PATH.1` and shifts the older
//! ones up when it rotates), read oldest first: `PATH.N`, ..., `PATH.1`,
//! `PATH`. Names change under a reader as the log rotates, so a file is
//! known by its [`FileId`] (device, inode, and a hash of its first record
//! unit), never by its name alone, and the file being read is held open
//! (a file the log deletes on rotation is still read to its end).
//!
//! Only whole records are read: a plain file's lines that end in a
//! newline, a zstd file's complete frames. What follows them (a line or
//! frame still being written, or torn by a crash) is left for later; the
//! log cuts a torn tail off when it reopens the file, never a whole line,
//! so a place after a whole record stays valid.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ShipError;

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The longest record (or decompressed frame) the shipper holds, as the
/// core's reader: a longer one is reported as corrupt and skipped.
pub const MAX_RECORD: usize = 64 << 20;

/// Which file a position is in: stable across renames, and not fooled by
/// an inode that a deleted file left and a new file took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// The device the file is on.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
    /// xxh3 of its first unit: the first line (newline included) of a
    /// plain file, the first frame's bytes of a zstd file.
    pub head: u64,
}

/// How a log file stores its records (by its first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON Lines.
    Plain,
    /// JSON Lines in complete zstd frames.
    Zstd,
}

/// A log file as listed: its name now and its inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its path at the time of listing.
    pub path: PathBuf,
    /// Device and inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// The files of the log at `log` (a file path, or a directory holding the
/// files of exactly one log), oldest first: `PATH.N`, ..., `PATH.1`,
/// `PATH`. Files named otherwise (hidden ones, a position file, other
/// logs) are not the log's.
pub fn list(log: &Path) -> Result<Vec<Listed>, ShipError> {
    let (dir, base) = log_base(log)?;
    // The highest rotation number there is. readdir alone is not the
    // listing: an entry renamed while it runs (every rotation renames
    // each kept file) may be missed, and a file missed between two others
    // would be skipped by a shipper moving to the next one.
    let mut max = None;
    let entries = std::fs::read_dir(&dir).map_err(|e| ShipError::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ShipError::io(&dir, e))?;
        if let Some(n) = rotation_number(&entry.file_name().to_string_lossy(), &base) {
            max = max.max(Some(n));
        }
    }
    let Some(max) = max else {
        return Ok(Vec::new());
    };
    // Then every name by path, from the newest up: a rotation renames
    // PATH.N to PATH.N+1 from the oldest down, so a file it moves is seen
    // before or after its move, at least once (twice: once, below). Two
    // names past the highest: rotations during the sweep.
    let mut found: Vec<(u64, Listed)> = Vec::new();
    for n in 0..=max + 2 {
        let path = if n == 0 {
            dir.join(&base)
        } else {
            dir.join(format!("{base}.{n}"))
        };
        // A name nothing has now is left out: a rotation in progress.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            found.push((
                n,
                Listed {
                    path,
                    dev: meta.dev(),
                    ino: meta.ino(),
                },
            ));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    // The same file seen under two names (renamed while listing): once,
    // at its older place.
    let mut seen = std::collections::HashSet::new();
    found.retain(|f| seen.insert((f.1.dev, f.1.ino)));
    Ok(found.into_iter().map(|f| f.1).collect())
}

/// The directory and base name of the log `log` names.
pub fn log_base(log: &Path) -> Result<(PathBuf, String), ShipError> {
    if log.is_dir() {
        let mut bases = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(log).map_err(|e| ShipError::io(log, e))? {
            let entry = entry.map_err(|e| ShipError::io(log, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_file() {
                continue;
            }
            let base = match name.rsplit_once('.') {
                Some((b, n)) if !b.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
                _ => name.as_str(),
            };
            bases.insert(base.to_string());
        }
        return match bases.len() {
            1 => Ok((log.to_path_buf(), bases.into_iter().next().unwrap_or_default())),
            0 => Err(ShipError::Config(format!(
                "{}: no log files in this directory: name the log's file (the decision_log path)",
                log.display()
            ))),
            _ => Err(ShipError::Config(format!(
                "{}: this directory holds the files of {} logs ({}): name the one to ship by its path",
                log.display(),
                bases.len(),
                bases.into_iter().collect::<Vec<_>>().join(", ")
            ))),
        };
    }
    let base = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ShipError::Config(format!("{}: not a log file path", log.display())))?;
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, base))
}

/// `Some(0)` for `base`, `Some(n)` for `base.n`, `None` for other names.
fn rotation_number(name: &str, base: &str) -> Option<u64> {
    if name == base {
        return Some(0);
    }
    let n = name.strip_prefix(base)?.strip_prefix('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Where in a file the next record to ship starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Place {
    /// Byte offset of the next unit not wholly shipped: a line of a plain
    /// file, a frame of a zstd file.
    pub offset: u64,
    /// zstd: records of the frame at `offset` already shipped (0 for
    /// plain files).
    pub skip: u64,
    /// Lines before the next record (in the decompressed text, for zstd):
    /// the next record is on line `line + 1`.
    pub line: u64,
}

/// One thing read from a file.
#[derive(Debug)]
pub enum Item<'a> {
    /// A whole record (without its newline), and the place after it.
    Record {
        /// The record's bytes.
        bytes: &'a [u8],
        /// Its 1-based line.
        line: u64,
        /// Where the next record starts.
        after: Place,
    },
    /// Damage skipped (a line over [`MAX_RECORD`], a zstd frame that does
    /// not decompress, bytes that are no frame), and the place after it.
    Damage {
        /// What was wrong, with the line or byte offset.
        what: String,
        /// Where reading goes on.
        after: Place,
    },
}

/// Reads whole records from one log file from a place on, holding the
/// file open.
pub struct FileReader {
    path: PathBuf,
    file: BufReader<File>,
    dev: u64,
    ino: u64,
    head: Option<u64>,
    format: Option<Format>,
    place: Place,
    /// Plain: the line being read. zstd: the decompressed frame.
    text: Vec<u8>,
    /// zstd: the compressed bytes held from `place.offset` on.
    raw: Vec<u8>,
    /// zstd: the records of the decompressed frame still to hand out
    /// (ranges in `text`), and the frame's end.
    lines: std::collections::VecDeque<(usize, usize)>,
    frame_end: u64,
}

impl FileReader {
    /// Open `path` to read from `place` on.
    pub fn open(path: &Path, place: Place) -> Result<FileReader, ShipError> {
        let file = File::open(path).map_err(|e| ShipError::io(path, e))?;
        FileReader::from_file(file, path, place)
    }

    /// Read an open file (named `path` in reports) from `place` on: a
    /// file held open stays readable after the log deletes it.
    pub fn from_file(file: File, path: &Path, place: Place) -> Result<FileReader, ShipError> {
        let meta = file.metadata().map_err(|e| ShipError::io(path, e))?;
        let mut reader = FileReader {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(256 * 1024, file),
            dev: meta.dev(),
            ino: meta.ino(),
            head: None,
            format: None,
            place: Place::default(),
            text: Vec::new(),
            raw: Vec::new(),
            lines: Default::default(),
            frame_end: 0,
        };
        reader.identify()?;
        reader.seek(place)?;
        Ok(reader)
    }

    /// Another handle on the open file.
    pub fn file(&self) -> Result<File, ShipError> {
        self.file
            .get_ref()
            .try_clone()
            .map_err(|e| ShipError::io(&self.path, e))
    }

    /// The path the file was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is the listed file.
    pub fn is(&self, listed: &Listed) -> bool {
        self.dev == listed.dev && self.ino == listed.ino
    }

    /// The file's identity, once its first unit is whole.
    pub fn id(&mut self) -> Result<Option<FileId>, ShipError> {
        self.identify()?;
        Ok(self.head.map(|head| FileId {
            dev: self.dev,
            ino: self.ino,
            head,
        }))
    }

    /// The file's format, once its first bytes are there.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Where the next record starts.
    pub fn place(&self) -> Place {
        self.place
    }

    /// Learn the format and the head hash from the file's first bytes,
    /// if they are there yet (reads them from a second handle).
    fn identify(&mut self) -> Result<(), ShipError> {
        if self.head.is_some() {
            return Ok(());
        }
        // Positioned reads: the handle's offset (shared with its clones)
        // stays where the reader is.
        let mut f = At {
            file: self.file.get_ref(),
            pos: 0,
        };
        let mut head = [0u8; 4];
        let n = read_full(&mut f, &mut head).map_err(|e| ShipError::io(&self.path, e))?;
        if n == 0 || (n < 4 && ZSTD_MAGIC.starts_with(&head[..n])) {
            // Empty, or maybe the start of a frame: wait for more.
            return Ok(());
        }
        let zstd = head == ZSTD_MAGIC;
        self.format = Some(if zstd { Format::Zstd } else { Format::Plain });
        let mut f = BufReader::new(At {
            file: self.file.get_ref(),
            pos: 0,
        });
        let unit = if zstd {
            let mut raw = Vec::new();
            read_frame(&mut f, &mut raw)
                .map_err(|e| ShipError::io(&self.path, e))?
                .map(|n| raw[..n].to_vec())
        } else {
            let mut line = Vec::new();
            (&mut f)
                .take(MAX_RECORD as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| ShipError::io(&self.path, e))?;
            (line.ends_with(b"\n") || line.len() > MAX_RECORD).then_some(line)
        };
        self.head = unit.map(|u| xxhash_rust::xxh3::xxh3_64(&u));
        Ok(())
    }

    /// The file's length now.
    fn len(&self) -> Result<u64, ShipError> {
        let meta = self.file.get_ref().metadata();
        Ok(meta.map_err(|e| ShipError::io(&self.path, e))?.len())
    }

    /// Go to `place` (from a position file).
    fn seek(&mut self, place: Place) -> Result<(), ShipError> {
        let len = self.len()?;
        if place.offset > len {
            return Err(ShipError::Position(format!(
                "{}: the position is at byte {} but the file has {len} bytes: it was cut or replaced; ship it again from the start by removing the position file",
                self.path.display(),
                place.offset
            )));
        }
        self.file
            .seek(SeekFrom::Start(place.offset))
            .map_err(|e| ShipError::io(&self.path, e))?;
        self.place = Place {
            offset: place.offset,
            skip: 0,
            line: place.line - place.skip,
        };
        for _ in 0..place.skip {
            match self.next_item()? {
                Some(Item::Record { .. }) | Some(Item::Damage { .. }) => {}
                None => {
                    return Err(ShipError::Position(format!(
                        "{}: the position is {} records into the frame at byte {}, which does not hold them",
                        self.path.display(),
                        place.skip,
                        place.offset
                    )))
                }
            }
        }
        Ok(())
    }

    /// The next whole record (or damage), or `None` when what is left is
    /// not whole yet (or there is nothing left). Call again later to read
    /// what was appended meanwhile.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, ShipError> {
        self.identify()?;
        match self.format {
            None => Ok(None),
            Some(Format::Plain) => self.next_line(),
            Some(Format::Zstd) => self.next_in_frame(),
        }
    }

    fn next_line(&mut self) -> Result<Option<Item<'_>>, ShipError> {
        self.text.clear();
        let n = (&mut self.file)
            .take(MAX_RECORD as u64 + 1)
            .read_until(b'\n', &mut self.text)
            .map_err(|e| ShipError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        if !self.text.ends_with(b"\n") {
            if n > MAX_RECORD {
                return self.skip_long_line();
            }
            // Not whole yet: read it again once it is.
            self.file
                .seek(SeekFrom::Start(self.place.offset))
                .map_err(|e| ShipError::io(&self.path, e))?;
            return Ok(None);
        }
        self.place.offset += n as u64;
        self.place.line += 1;
        let bytes = &self.text[..n - 1];
        Ok(Some(Item::Record {
            bytes,
            line: self.place.line,
            after: self.place,
        }))
    }

    /// A line longer than [`MAX_RECORD`]: skip to its end, once it has one.
    fn skip_long_line(&mut self) -> Result<Option<Item<'_>>, ShipError> {
        let mut skipped = self.text.len() as u64;
        loop {
            let buf = self
                .file
                .fill_buf()
                .map_err(|e| ShipError::io(&self.path, e))?;
            if buf.is_empty() {
                self.file
                    .seek(SeekFrom::Start(self.place.offset))
                    .map_err(|e| ShipError::io(&self.path, e))?;
                return Ok(None);
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(k) => {
                    self.file.consume(k + 1);
                    skipped += k as u64 + 1;
                    break;
                }
                None => {
                    let len = buf.len();
                    self.file.consume(len);
                    skipped += len as u64;
                }
            }
        }
        self.place.offset += skipped;
        self.place.line += 1;
        Ok(Some(Item::Damage {
            what: format!(
                "{}:{}: a line longer than {MAX_RECORD} bytes, skipped",
                self.path.display(),
                self.place.line
            ),
            after: self.place,
        }))
    }

    fn next_in_frame(&mut self) -> Result<Option<Item<'_>>, ShipError> {
        while self.lines.is_empty() {
            if let Some(damage) = self.load_frame()? {
                return Ok(Some(damage));
            }
            if self.frame_end <= self.place.offset {
                return Ok(None);
            }
            if self.lines.is_empty() {
                // A frame without records: past it.
                self.place.offset = self.frame_end;
                self.place.skip = 0;
            }
        }
        let Some((start, end)) = self.lines.pop_front() else {
            return Ok(None);
        };
        self.place.line += 1;
        if self.lines.is_empty() {
            self.place.offset = self.frame_end;
            self.place.skip = 0;
        } else {
            self.place.skip += 1;
        }
        Ok(Some(Item::Record {
            bytes: &self.text[start..end],
            line: self.place.line,
            after: self.place,
        }))
    }

    /// Read and decompress the frame at `place.offset` into `lines`, if it
    /// is whole; damage before it is returned (and skipped).
    fn load_frame(&mut self) -> Result<Option<Item<'static>>, ShipError> {
        self.raw.clear();
        self.file
            .seek(SeekFrom::Start(self.place.offset))
            .map_err(|e| ShipError::io(&self.path, e))?;
        let at = self.place.offset;
        self.frame_end = at;
        let n = match read_frame(&mut self.file, &mut self.raw)
            .map_err(|e| ShipError::io(&self.path, e))?
        {
            Some(n) => n,
            None => {
                if self.raw.is_empty()
                    || self.raw.starts_with(&ZSTD_MAGIC)
                    || ZSTD_MAGIC.starts_with(&self.raw)
                {
                    // Nothing yet, or a frame still being written.
                    self.file
                        .seek(SeekFrom::Start(at))
                        .map_err(|e| ShipError::io(&self.path, e))?;
                    return Ok(None);
                }
                return Ok(Some(self.skip_to_next_frame(at)?));
            }
        };
        self.frame_end = at + n as u64;
        // Leave the file at the frame's end, for the next one.
        self.file
            .seek(SeekFrom::Start(self.frame_end))
            .map_err(|e| ShipError::io(&self.path, e))?;
        self.text.clear();
        let capped = Capped {
            out: &mut self.text,
            left: MAX_RECORD,
        };
        if let Err(e) = zstd::stream::copy_decode(&self.raw[..n], capped) {
            self.place = Place {
                offset: self.frame_end,
                skip: 0,
                line: self.place.line,
            };
            return Ok(Some(Item::Damage {
                what: format!(
                    "{}: byte {at}: zstd frame of {n} bytes does not decompress ({e}), skipped (its records are not shipped)",
                    self.path.display()
                ),
                after: self.place,
            }));
        }
        let mut start = 0;
        for (i, &b) in self.text.iter().enumerate() {
            if b == b'\n' {
                self.lines.push_back((start, i));
                start = i + 1;
            }
        }
        if start < self.text.len() {
            // The log writes whole lines into a frame; a frame that ends
            // mid-line is damage, but its text is still a record.
            self.lines.push_back((start, self.text.len()));
        }
        Ok(None)
    }

    /// Bytes at `at` that are not a zstd frame: skip to the next complete
    /// frame (or to the end of what is there).
    fn skip_to_next_frame(&mut self, at: u64) -> Result<Item<'static>, ShipError> {
        let mut rest = Vec::new();
        self.file
            .seek(SeekFrom::Start(at))
            .map_err(|e| ShipError::io(&self.path, e))?;
        (&mut self.file)
            .take(MAX_RECORD as u64)
            .read_to_end(&mut rest)
            .map_err(|e| ShipError::io(&self.path, e))?;
        let mut skip = rest.len();
        let mut from = 1;
        while let Some(k) = rest
            .get(from..)
            .and_then(|r| r.windows(4).position(|w| w == ZSTD_MAGIC))
        {
            let p = from + k;
            if matches!(zstd::zstd_safe::find_frame_compressed_size(&rest[p..]), Ok(n) if n > 0 && n <= rest.len() - p)
            {
                skip = p;
                break;
            }
            from = p + 1;
        }
        self.place = Place {
            offset: at + skip as u64,
            skip: 0,
            line: self.place.line,
        };
        self.file
            .seek(SeekFrom::Start(self.place.offset))
            .map_err(|e| ShipError::io(&self.path, e))?;
        Ok(Item::Damage {
            what: format!(
                "{}: byte {at}: {skip} bytes that are not a zstd frame, skipped",
                self.path.display()
            ),
            after: self.place,
        })
    }

    /// Bytes after the last whole record: a tail still being written, or
    /// torn by a crash.
    pub fn tail_bytes(&mut self) -> Result<u64, ShipError> {
        let len = self.len()?;
        Ok(len.saturating_sub(self.place.offset))
    }
}

/// Read one complete zstd frame from `src` into `raw` (which may hold
/// more after it): its length, or `None` if what is there is not (yet) a
/// whole frame (then `raw` holds what was read).
fn read_frame(src: &mut impl Read, raw: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if raw.len() >= 4 {
            if !raw.starts_with(&ZSTD_MAGIC) {
                return Ok(None);
            }
            match zstd::zstd_safe::find_frame_compressed_size(raw) {
                Ok(n) if n > 0 && n <= raw.len() => return Ok(Some(n)),
                Ok(_) => {}
                Err(code) if zstd::zstd_safe::get_error_name(code) == "Src size is incorrect" => {}
                Err(_) => return Ok(None),
            }
            if raw.len() > MAX_RECORD {
                return Ok(None);
            }
        }
        let n = loop {
            match src.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a file from a position with `pread`, leaving its offset alone.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A `Write` that refuses to grow its vector past a limit.
struct Capped<'a> {
    out: &'a mut Vec<u8>,
    left: usize,
}

impl std::io::Write for Capped<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if bytes.len() > self.left {
            return Err(std::io::Error::other(format!(
                "it decompresses to more than {MAX_RECORD} bytes"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn records_from(reader: &mut FileReader) -> Vec<(String, Place)> {
        let mut out = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            match item {
                Item::Record { bytes, after, .. } => {
                    out.push((String::from_utf8(bytes.to_vec()).unwrap(), after))
                }
                Item::Damage { what, .. } => panic!("{what}"),
            }
        }
        out
    }

    fn frame(lines: &[&str]) -> Vec<u8> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        zstd::bulk::compress(text.as_bytes(), 1).unwrap()
    }

    #[test]
    fn a_zstd_file_resumes_in_the_middle_of_a_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl.zst");
        let mut bytes = frame(&["a1", "a2", "a3"]);
        bytes.extend(frame(&["b1", "b2"]));
        std::fs::write(&path, &bytes).unwrap();
        let all = records_from(&mut FileReader::open(&path, Place::default()).unwrap());
        let names: Vec<&str> = all.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["a1", "a2", "a3", "b1", "b2"]);
        // After a2: two records into the first frame, line 2.
        assert_eq!(
            all[1].1,
            Place {
                offset: 0,
                skip: 2,
                line: 2
            }
        );
        // The end of a frame is the next frame's start.
        assert_eq!(all[2].1.skip, 0);
        assert!(all[2].1.offset > 0);
        for (i, (_, place)) in all.iter().enumerate() {
            let rest = records_from(&mut FileReader::open(&path, *place).unwrap());
            assert_eq!(rest, all[i + 1..].to_vec(), "resumed after record {i}");
        }
    }

    #[test]
    fn only_whole_frames_and_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl.zst");
        let whole = frame(&["a1", "a2"]);
        let next = frame(&["b1"]);
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&next[..next.len() - 3]);
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = FileReader::open(&path, Place::default()).unwrap();
        assert_eq!(records_from(&mut reader).len(), 2);
        assert_eq!(reader.tail_bytes().unwrap(), next.len() as u64 - 3);
        // The frame is finished: the same reader reads it.
        bytes.extend_from_slice(&next[next.len() - 3..]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(records_from(&mut reader)[0].0, "b1");

        let plain = dir.path().join("p.jsonl");
        std::fs::write(&plain, b"{\"v\":1}\n{\"v\":1,\"x\"").unwrap();
        let mut reader = FileReader::open(&plain, Place::default()).unwrap();
        assert_eq!(records_from(&mut reader).len(), 1);
        std::fs::write(&plain, b"{\"v\":1}\n{\"v\":1,\"x\":2}\n").unwrap();
        let rest = records_from(&mut reader);
        assert_eq!(rest[0].0, "{\"v\":1,\"x\":2}");
        assert_eq!(
            rest[0].1,
            Place {
                offset: 22,
                skip: 0,
                line: 2
            }
        );
    }

    #[test]
    fn the_files_of_a_log_are_listed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "d.jsonl",
            "d.jsonl.1",
            "d.jsonl.10",
            "d.jsonl.2",
            "other.jsonl",
            ".d.jsonl.ship-position",
            "d.jsonl.x",
        ] {
            std::fs::write(dir.path().join(name), b"{}\n").unwrap();
        }
        let names: Vec<String> = list(&dir.path().join("d.jsonl"))
            .unwrap()
            .iter()
            .map(|l| l.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["d.jsonl.10", "d.jsonl.2", "d.jsonl.1", "d.jsonl"]);
        assert!(
            matches!(list(dir.path()), Err(ShipError::Config(m)) if m.contains("holds the files of"))
        );
    }
}
