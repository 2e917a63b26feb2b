//! Where decision records go: a JSON Lines file (plain or zstd-compressed)
//! with rotation and retention, a callback for embedding applications, or
//! memory (tests).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::reader::{partial_last_frame, ZSTD_MAGIC};

/// A destination for log records. Records arrive already masked, one JSON
/// object per call, without the trailing newline. Called only from the
/// log's writer thread.
///
/// A sink that stores records at once (memory, a callback) implements
/// [`Sink::write`] and [`Sink::sync`]: the log counts a record written
/// when `write` returns `Ok`, lost when it returns an error, and synced
/// when a later `sync` returns `Ok`. A sink that buffers records and may
/// retry them reports its own counts through [`Sink::progress`].
pub trait Sink: Send + 'static {
    /// Write one record.
    fn write(&mut self, record: &str) -> std::io::Result<()>;

    /// Write one record given as bytes: the log's writer calls this one.
    /// Records are valid UTF-8; by default they are checked and passed to
    /// [`Sink::write`] (a record that were not would be replaced by an
    /// error record). Sinks that store bytes override it to skip the check.
    fn write_bytes(&mut self, record: &[u8]) -> std::io::Result<()> {
        self.write(
            std::str::from_utf8(record)
                .unwrap_or(r#"{"v":1,"kind":"error","message":"the record was not valid UTF-8"}"#),
        )
    }
    /// Make everything written so far durable (for files: write out the
    /// buffer and fsync).
    fn sync(&mut self) -> std::io::Result<()>;

    /// The periodic sync (every `sync_interval` while records arrive): it
    /// may return before the data is durable, so that writing goes on
    /// meanwhile, and returns whether it started (or did) a sync of
    /// everything written so far; `false` (an earlier sync still running)
    /// makes the writer ask again a poll (0.5 ms) later, so it should be
    /// cheap then. An error of an earlier background sync is returned
    /// here. By default, [`Sink::sync`].
    fn sync_soon(&mut self) -> std::io::Result<bool> {
        self.sync().map(|()| true)
    }

    /// The sink's own counts of the records handed to it, for sinks that
    /// buffer records (then an error from [`Sink::write`] means the sink
    /// is failing, not that the record is lost). `None` (the default):
    /// the log counts them from the results of `write` and `sync`.
    fn progress(&self) -> Option<SinkProgress> {
        None
    }

    /// The file the sink writes, named in errors.
    fn path(&self) -> Option<&Path> {
        None
    }
}

/// What a buffering sink has done with the records handed to it (see
/// [`Sink::progress`]). Every record handed over ends up written or lost;
/// until then it waits in the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkProgress {
    /// Records wholly handed to the file (the operating system has them).
    pub written: u64,
    /// Records among them that a successful fsync covered.
    pub synced: u64,
    /// Records given up: not written (the sink gave up retrying), or
    /// written but an fsync covering them failed (they may be missing).
    pub lost: u64,
    /// Bytes cut off the file when it was opened: a torn last line (or
    /// zstd frame) that a crash left.
    pub repaired_bytes: u64,
}

/// Durability counts shared between a file sink and its syncing thread:
/// every fsync settles the records written before it started, as synced
/// or (when it failed) lost.
#[derive(Default)]
struct Durability {
    /// Records whose fsync has run, successfully or not.
    settled: AtomicU64,
    synced: AtomicU64,
    lost: AtomicU64,
}

impl Durability {
    /// An fsync that started when `records` had been written returned `ok`.
    /// Called under the syncer's lock or by the writer with no sync
    /// running, so never twice at once.
    fn settle(&self, records: u64, ok: bool) {
        let settled = self.settled.load(Ordering::Relaxed);
        if records <= settled {
            return;
        }
        let n = records - settled;
        if ok {
            self.synced.fetch_add(n, Ordering::Relaxed);
        } else {
            // The kernel reports a write-back error once and may have
            // dropped the pages: these records may not be on disk.
            self.lost.fetch_add(n, Ordering::Relaxed);
        }
        self.settled.store(records, Ordering::Relaxed);
    }
}

/// Runs a file's periodic fsyncs on its own thread: an fsync of a second's
/// records can take hundreds of milliseconds, and the writer would stop
/// for all of it (deciding threads then wait on a full queue).
struct Syncer {
    files: Option<std::sync::mpsc::SyncSender<(File, u64)>>,
    shared: Arc<SyncState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct SyncState {
    /// Whether a sync is running, and the first error of those that ran
    /// since the last report.
    state: Mutex<(bool, Option<std::io::Error>)>,
    done: parking_lot::Condvar,
    durability: Durability,
}

impl Syncer {
    fn start() -> std::io::Result<Syncer> {
        let (files, rx) = std::sync::mpsc::sync_channel::<(File, u64)>(1);
        let shared = Arc::new(SyncState::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nextbest-log-sync".into())
            .spawn(move || {
                for (file, records) in rx {
                    let r = file.sync_data();
                    let mut state = s.state.lock();
                    s.durability.settle(records, r.is_ok());
                    if let Err(e) = r {
                        state.1.get_or_insert(e);
                    }
                    state.0 = false;
                    s.done.notify_all();
                }
            })?;
        Ok(Syncer {
            files: Some(files),
            shared,
            thread: Some(thread),
        })
    }

    /// Whether a sync is running.
    fn busy(&self) -> bool {
        self.shared.state.lock().0
    }

    /// Start syncing `file` (`records` written) unless a sync is still
    /// running (then `false`: the writer asks again a poll later). An
    /// earlier sync's error is returned, the new sync started all the same.
    fn sync_soon(&self, file: &File, records: u64) -> std::io::Result<bool> {
        let mut state = self.shared.state.lock();
        if state.0 {
            return Ok(false);
        }
        let earlier = state.1.take();
        let started = match &self.files {
            Some(tx) => {
                let clone = match file.try_clone() {
                    Ok(c) => c,
                    Err(e) => return Err(earlier.unwrap_or(e)),
                };
                state.0 = true;
                // The thread takes one file at a time and is idle (not
                // busy): the slot is free.
                tx.try_send((clone, records)).is_ok()
            }
            None => false,
        };
        if !started {
            state.0 = false;
            let r = file.sync_data();
            self.shared.durability.settle(records, r.is_ok());
            r?;
        }
        match earlier {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Start syncing `file` (`records` written) if no sync is running; an
    /// earlier sync's error is left for the next [`Syncer::sync_soon`] or
    /// [`Syncer::wait`]. Returns whether it started one.
    fn start_if_idle(&self, file: &File, records: u64) -> bool {
        let mut state = self.shared.state.lock();
        if state.0 {
            return false;
        }
        let Some(tx) = &self.files else { return false };
        let Ok(clone) = file.try_clone() else {
            return false;
        };
        state.0 = true;
        if tx.try_send((clone, records)).is_err() {
            state.0 = false;
            return false;
        }
        true
    }

    /// Wait for a running sync, and return the error of any since the
    /// last report.
    fn wait(&self) -> std::io::Result<()> {
        let mut state = self.shared.state.lock();
        while state.0 {
            self.shared.done.wait(&mut state);
        }
        state.1.take().map_or(Ok(()), Err)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.files.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a [`FileSink`] stores its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileFormat {
    /// Plain JSON Lines (the default).
    #[default]
    Plain,
    /// JSON Lines compressed with zstd at this level, as a sequence of
    /// complete frames: `zstd -dc FILE` (or `zstdcat`) reads it, and so do
    /// `nextbest replay` and `nextbest evaluate`. Each frame holds whole
    /// lines, and one ends at every sync, so a crash leaves at most a
    /// partial last frame, holding only records not yet synced.
    Zstd(i32),
}

/// The compressor of a zstd file and the frame it writes.
struct Compressing {
    compressor: zstd::bulk::Compressor<'static>,
    /// The frame being written.
    frame: Vec<u8>,
}

/// Records waiting in a file sink, at most: past it (the disk refuses for
/// good) new records are given up, counted as lost, rather than memory.
const MAX_PENDING: usize = 64 << 20;

/// Plain records are handed to the file, or compressed into a zstd frame,
/// when this many bytes wait (or at a sync): large enough for zstd's
/// matches and few system calls, small enough to stay in cache.
const BUFFER_BYTES: usize = 256 * 1024;

/// A background sync starts whenever this many bytes have been handed to
/// the file since the last one (besides the sync interval): the disk then
/// writes while records are formatted, rather than all at the next sync,
/// and `flush` waits only for the rest (RocksDB's `bytes_per_sync`).
const SYNC_BYTES: u64 = 8 << 20;

/// JSON Lines file with size-based rotation: when the file passes
/// `max_bytes` it is renamed to `PATH.1` (older ones shift to `.2`, ...),
/// and only `keep_files` rotated files are kept. Compressed files
/// ([`FileFormat::Zstd`]) rotate when their compressed size passes
/// `max_bytes`, at the end of a frame.
///
/// Records wait in a buffer until `BUFFER_BYTES` of them (256 KiB) or a
/// sync; each is counted written once the file has all of it. When the
/// file refuses (a full disk), the records stay buffered and are retried
/// at the next sync, up to 64 MiB of them; past that, new records are
/// given up and counted lost ([`SinkProgress`]). A plain file always ends
/// in a whole record unless a write was cut short (a crash, a full disk);
/// opening the file cuts such a torn last line (or zstd frame) off.
pub struct FileSink {
    path: PathBuf,
    file: File,
    /// Plain: lines not yet handed to the file. zstd: lines not yet
    /// compressed into a frame.
    pending: Vec<u8>,
    /// Records in `pending`.
    pending_records: u64,
    /// Bytes in the file (compressed bytes, for zstd).
    size: u64,
    max_bytes: u64,
    keep_files: usize,
    /// Rotated files older than this are deleted too.
    keep_for: Option<std::time::Duration>,
    /// A shipper's spool: rotated files it still needs are kept.
    spool: Option<Arc<super::Spool>>,
    syncer: Syncer,
    /// Bytes handed to the file since the last sync started.
    unsynced: u64,
    zstd: Option<Compressing>,
    /// The last hand-off failed: records only wait until a sync retries
    /// (a full disk is not asked again for every record).
    refused: bool,
    /// Records wholly handed to the file.
    written: u64,
    /// Records given up because too many waited.
    given_up: u64,
    repaired_bytes: u64,
}

impl FileSink {
    /// Open (append to) `path` as plain JSON Lines, creating its directory
    /// if needed.
    pub fn open(
        path: impl AsRef<Path>,
        max_bytes: u64,
        keep_files: usize,
    ) -> std::io::Result<FileSink> {
        FileSink::open_as(path, max_bytes, keep_files, FileFormat::Plain)
    }

    /// Open `path` in `format`, creating its directory if needed, and
    /// append to it. What a crash mid-write left at the end of the file
    /// (a partial last line, or zstd frame) is cut off first, so new
    /// records follow whole ones ([`SinkProgress::repaired_bytes`] says how
    /// many bytes); an existing file in the other format is then rotated.
    pub fn open_as(
        path: impl AsRef<Path>,
        max_bytes: u64,
        keep_files: usize,
        format: FileFormat,
    ) -> std::io::Result<FileSink> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let zstd = match format {
            FileFormat::Plain => None,
            FileFormat::Zstd(level) => Some(compressing(level)?),
        };
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        // Only regular files can be read back and cut (not /dev/full, a
        // pipe, a terminal).
        let regular = file.metadata()?.is_file();
        let zstd_file = regular && size >= 4 && {
            let mut head = [0u8; 4];
            File::open(&path)?.read_exact(&mut head)?;
            head == ZSTD_MAGIC
        };
        let repaired_bytes = if regular {
            let keep = if zstd_file {
                partial_last_frame(std::io::BufReader::new(File::open(&path)?))?
                    .map_or(size, |r| r.start)
            } else {
                whole_lines(&path, size)?
            };
            if keep < size {
                // Cut before anything is appended, and durably: a record
                // written after it must not follow the torn bytes.
                file.set_len(keep)?;
                file.sync_data()?;
            }
            size - keep
        } else {
            0
        };
        let size = size - repaired_bytes;
        // Frames after plain lines, or plain lines after frames, would make
        // a file neither reader can read whole: a file in the other format
        // is rotated.
        let other_format = size > 0 && zstd_file != zstd.is_some();
        let mut sink = FileSink {
            path,
            file,
            pending: Vec::with_capacity(BUFFER_BYTES + 64 * 1024),
            pending_records: 0,
            size,
            max_bytes: max_bytes.max(1024),
            keep_files,
            keep_for: None,
            spool: None,
            syncer: Syncer::start()?,
            unsynced: 0,
            zstd,
            refused: false,
            written: 0,
            given_up: 0,
            repaired_bytes,
        };
        if other_format {
            sink.rotate()?;
        }
        Ok(sink)
    }

    /// Delete rotated files older than `keep_for` (by their last write)
    /// when the log rotates, besides those past `keep_files`.
    pub fn keep_for(mut self, keep_for: Option<std::time::Duration>) -> FileSink {
        self.keep_for = keep_for;
        self
    }

    /// Keep every file `spool`'s shipper still needs, whatever
    /// `keep_files` and `keep_for` say.
    pub(crate) fn keep_unshipped(&mut self, spool: Arc<super::Spool>) {
        self.spool = Some(spool);
    }

    /// How many rotated files to keep after the rotation about to happen
    /// (the current file becomes `PATH.1`), of the `m` there are
    /// (`PATH.1` ..= `PATH.m`).
    fn keep_after_rotation(&self, m: usize) -> usize {
        let mut keep = self.keep_files;
        if let Some(age) = self.keep_for {
            // Oldest last: the current file (new number 1) and the young
            // rotated files before the first old one.
            let young = (1..=m)
                .take_while(|&n| {
                    std::fs::metadata(self.rotated(n))
                        .and_then(|meta| meta.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|e| e <= age)
                })
                .count();
            keep = keep.min(young + 1);
        }
        if let Some(spool) = &self.spool {
            // The needed file and everything newer stay; a shipper that has
            // not said yet, or whose file is not here, needs them all.
            let id = |p: &Path| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
            };
            let needed = spool.oldest_needed().and_then(|want| {
                (0..=m).find(|&n| {
                    let p = if n == 0 {
                        self.path.clone()
                    } else {
                        self.rotated(n)
                    };
                    id(&p) == Some(want)
                })
            });
            keep = keep.max(needed.map_or(m + 1, |n| n + 1));
        }
        keep
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Sync the file, move it aside and start a new one. Called with
    /// nothing pending (a whole file).
    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let m = (1..).take_while(|&n| self.rotated(n).exists()).count();
        let keep = self.keep_after_rotation(m);
        // Files that would be numbered past `keep` go, oldest first.
        for n in (keep.max(1)..=m).rev() {
            let _ = std::fs::remove_file(self.rotated(n));
        }
        if keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..keep.min(m + 1)).rev() {
                std::fs::rename(self.rotated(n), self.rotated(n + 1))?;
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Hand every pending record to the file: plain lines as they are, or
    /// compressed into one complete zstd frame (then rotate if the file
    /// has passed its size). On an error the records that did not reach
    /// the file stay pending, to be retried.
    fn hand_off(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            self.refused = false;
            return Ok(());
        }
        let r = match &mut self.zstd {
            None => self.hand_off_plain(),
            Some(z) => {
                z.frame.clear();
                z.frame
                    .reserve(zstd::zstd_safe::compress_bound(self.pending.len()));
                z.compressor
                    .compress_to_buffer(&self.pending, &mut z.frame)?;
                match self.file.write_all(&z.frame) {
                    Ok(()) => {
                        let bytes = z.frame.len();
                        self.size += bytes as u64;
                        self.written += self.pending_records;
                        self.pending_records = 0;
                        self.pending.clear();
                        self.handed(bytes);
                        Ok(())
                    }
                    Err(e) => {
                        // What was written of the frame is cut off again,
                        // so the file keeps ending in a whole frame.
                        if self.file.set_len(self.size).is_err() {
                            // Left in the file: readers report the bytes as
                            // damage between frames.
                            self.size = self.file.metadata().map_or(self.size, |m| m.len());
                        }
                        Err(e)
                    }
                }
            }
        };
        self.refused = r.is_err();
        if r.is_ok() && self.zstd.is_some() && self.size >= self.max_bytes {
            self.rotate()?;
        }
        r
    }

    /// Write the pending plain lines, counting the records the file got
    /// whole even when a write fails part-way (the rest stays pending: a
    /// retry completes the line).
    fn hand_off_plain(&mut self) -> std::io::Result<()> {
        let mut done = 0;
        let r = loop {
            match self.file.write(&self.pending[done..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    if done == self.pending.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let whole = if r.is_ok() {
            self.pending_records
        } else {
            self.pending[..done].iter().filter(|&&b| b == b'\n').count() as u64
        };
        self.written += whole;
        self.pending_records -= whole;
        self.size += done as u64;
        self.pending.drain(..done);
        if r.is_ok() {
            self.handed(done);
        }
        r
    }

    /// Count `bytes` handed to the file, and start a background sync every
    /// [`SYNC_BYTES`].
    fn handed(&mut self, bytes: usize) {
        self.unsynced += bytes as u64;
        if self.unsynced >= SYNC_BYTES {
            // Started or not (one is running), the next try is SYNC_BYTES
            // later.
            self.syncer.start_if_idle(&self.file, self.written);
            self.unsynced = 0;
        }
    }
}

/// A zstd compressor at `level`, checked, with frame checksums.
fn compressing(level: i32) -> std::io::Result<Compressing> {
    let range = zstd::compression_level_range();
    if !range.contains(&level) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "`compression_level` {level} is not a zstd level: use one in {}..={} (1 is the default; higher packs tighter, negative is faster)",
                range.start(),
                range.end()
            ),
        ));
    }
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    // A flipped bit is then a frame reported corrupt, not records silently
    // changed.
    compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(Compressing {
        compressor,
        frame: Vec::new(),
    })
}

/// The length of the plain file at `path` (`size` bytes) up to the end of
/// its last whole line: what follows is a line a crash cut short. Reads the
/// file backwards from its end, a block at a time.
fn whole_lines(path: &Path, size: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let mut block = vec![0u8; BLOCK as usize];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let bytes = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(bytes)?;
        if let Some(i) = bytes.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Sink for FileSink {
    fn write(&mut self, record: &str) -> std::io::Result<()> {
        self.write_bytes(record.as_bytes())
    }

    /// The bytes as they are (the file holds bytes; the records the log
    /// writes are UTF-8).
    fn write_bytes(&mut self, record: &[u8]) -> std::io::Result<()> {
        if self.pending.len() + record.len() + 1 > MAX_PENDING {
            self.given_up += 1;
            return Err(std::io::Error::other(format!(
                "a decision-log record was given up: writing failed until more than {MAX_PENDING} bytes of records waited"
            )));
        }
        let mut result = Ok(());
        if self.zstd.is_none() && !self.refused {
            // A plain file rotates before the record that would take it
            // past its size, so that it ends in a whole record.
            let size = self.size + self.pending.len() as u64;
            if size > 0 && size + record.len() as u64 + 1 > self.max_bytes {
                result = self.hand_off().and_then(|()| self.rotate());
            }
        }
        self.pending.extend_from_slice(record);
        self.pending.push(b'\n');
        self.pending_records += 1;
        if result.is_ok() && !self.refused && self.pending.len() >= BUFFER_BYTES {
            result = self.hand_off();
        }
        result
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.hand_off()?;
        self.unsynced = 0;
        // A background sync's failure counts against this sync: the kernel
        // reports a write-back error to one fsync of the file only.
        let earlier = self.syncer.wait();
        let r = self.file.sync_data();
        let ok = r.is_ok() && earlier.is_ok();
        self.syncer.shared.durability.settle(self.written, ok);
        r?;
        earlier
    }

    fn sync_soon(&mut self) -> std::io::Result<bool> {
        // Asked again every poll while a sync runs: leave the pending
        // records and the bytes toward the next early sync alone until one
        // can start.
        if self.syncer.busy() {
            return Ok(false);
        }
        self.hand_off()?;
        self.unsynced = 0;
        self.syncer.sync_soon(&self.file, self.written)
    }

    fn progress(&self) -> Option<SinkProgress> {
        let d = &self.syncer.shared.durability;
        Some(SinkProgress {
            written: self.written,
            synced: d.synced.load(Ordering::Relaxed),
            lost: self.given_up + d.lost.load(Ordering::Relaxed),
            repaired_bytes: self.repaired_bytes,
        })
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

impl Drop for FileSink {
    /// Hand what is pending to the file (not synced: call [`Sink::sync`]
    /// for that).
    fn drop(&mut self) {
        let _ = self.hand_off();
    }
}

/// Keeps records in memory; clone the handle to read them.
#[derive(Clone, Default)]
pub struct MemorySink {
    records: Arc<Mutex<Vec<String>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }
    /// The records written so far.
    pub fn records(&self) -> Vec<String> {
        self.records.lock().clone()
    }
}

impl Sink for MemorySink {
    fn write(&mut self, record: &str) -> std::io::Result<()> {
        self.records.lock().push(record.to_string());
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Calls a function with each record (for embedding applications that ship
/// records themselves).
pub struct CallbackSink<F: FnMut(&str) + Send + 'static>(pub F);

impl<F: FnMut(&str) + Send + 'static> Sink for CallbackSink<F> {
    fn write(&mut self, record: &str) -> std::io::Result<()> {
        (self.0)(record);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{FileFormat, FileSink, Sink};
    use crate::audit::reader::{parse_log_file, ReadProblems};

    /// Background syncs never lose or reorder what is written around them,
    /// across a rotation too; the first one starts at once.
    #[test]
    fn background_syncs_keep_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut sink = FileSink::open(&path, 8 * 1024, 10).unwrap();
        assert!(sink.sync_soon().unwrap(), "nothing is syncing yet");
        let n = 5_000;
        for i in 0..n {
            sink.write(&format!("{{\"i\":{i},\"v\":1}}")).unwrap();
            if i % 100 == 0 {
                sink.sync_soon().unwrap();
            }
        }
        drop(sink);
        let files = oldest_first(dir.path());
        assert!(files.len() > 1, "the test must cross a rotation");
        let text: String = files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let expected: String = (0..n).map(|i| format!("{{\"i\":{i},\"v\":1}}\n")).collect();
        assert_eq!(text, expected);
    }

    /// The files in `dir` (one log), oldest first: `PATH.N` ... `PATH.1`,
    /// `PATH`.
    fn oldest_first(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort_by_key(|p| {
            std::cmp::Reverse(
                p.extension()
                    .and_then(|e| e.to_str())
                    .and_then(|e| e.parse::<u32>().ok())
                    .unwrap_or(0),
            )
        });
        files
    }

    /// The files of a log, oldest first, their records in order.
    fn records_of(dir: &std::path::Path) -> (Vec<String>, ReadProblems, usize) {
        let files = oldest_first(dir);
        let mut out = Vec::new();
        let mut problems = ReadProblems::default();
        for f in &files {
            parse_log_file(f, &std::fs::read(f).unwrap(), &mut out, &mut problems).unwrap();
        }
        let records = out.iter().map(|l| l.record.to_string()).collect();
        (records, problems, files.len())
    }

    /// zstd files hold every record, in order, across syncs and rotations,
    /// and reopening one starts a new file instead of appending after what
    /// may be a partial frame.
    #[test]
    fn compressed_files_keep_every_record_across_rotations_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl.zst");
        let n = 20_000;
        let expected: Vec<String> = (0..n)
            .map(|i| format!("{{\"i\":{i},\"pad\":\"{}\",\"v\":1}}", "x".repeat(i % 97)))
            .collect();
        let mut sink = FileSink::open_as(&path, 4096, 100, FileFormat::Zstd(1)).unwrap();
        for (i, r) in expected[..n / 2].iter().enumerate() {
            sink.write(r).unwrap();
            if i % 1000 == 0 {
                sink.sync_soon().unwrap();
            }
        }
        sink.sync().unwrap();
        drop(sink);
        let mut sink = FileSink::open_as(&path, 4096, 100, FileFormat::Zstd(3)).unwrap();
        for r in &expected[n / 2..] {
            sink.write(r).unwrap();
        }
        drop(sink);
        let (records, problems, files) = records_of(dir.path());
        assert!(files > 3, "the test must cross rotations ({files} files)");
        assert!(
            problems.partial_last_lines.is_empty() && problems.corrupt_lines.is_empty(),
            "{problems:?}"
        );
        assert_eq!(records.len(), expected.len());
        let first_difference = records.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first_difference, None);
        // Compressed well below the plain size.
        let plain: usize = expected.iter().map(|r| r.len() + 1).sum();
        let packed: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(packed * 4 < plain as u64, "{packed} of {plain} bytes");
    }

    /// A zstd file cut anywhere (a crash mid-write) reads as a prefix of
    /// its records, at least every record synced before the cut, with at
    /// most the last frame reported partial and nothing corrupt.
    #[test]
    fn a_cut_compressed_file_keeps_every_synced_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl.zst");
        let mut sink = FileSink::open_as(&path, 1 << 30, 1, FileFormat::Zstd(1)).unwrap();
        let mut expected = Vec::new();
        // (file size, records) after each sync.
        let mut synced = vec![(0u64, 0usize)];
        for i in 0..400 {
            let r = format!("{{\"i\":{i},\"v\":1}}");
            sink.write(&r).unwrap();
            expected.push(r);
            if i % 37 == 0 {
                sink.sync().unwrap();
                synced.push((std::fs::metadata(&path).unwrap().len(), expected.len()));
            }
        }
        sink.sync().unwrap();
        synced.push((std::fs::metadata(&path).unwrap().len(), expected.len()));
        drop(sink);
        let bytes = std::fs::read(&path).unwrap();
        for cut in 0..=bytes.len() {
            let mut out = Vec::new();
            let mut problems = ReadProblems::default();
            parse_log_file(&path, &bytes[..cut], &mut out, &mut problems).unwrap();
            let got: Vec<String> = out.iter().map(|l| l.record.to_string()).collect();
            let floor = synced
                .iter()
                .filter(|s| s.0 <= cut as u64)
                .map(|s| s.1)
                .max();
            assert!(
                got.len() >= floor.unwrap(),
                "cut {cut}: lost synced records"
            );
            assert!(got[..] == expected[..got.len()], "cut {cut}: not a prefix");
            assert!(problems.corrupt_lines.is_empty(), "cut {cut}: {problems:?}");
            assert!(problems.partial_last_lines.len() <= 1, "cut {cut}");
            let at_boundary = synced.iter().any(|s| s.0 == cut as u64);
            assert_eq!(
                problems.partial_last_lines.is_empty(),
                at_boundary,
                "cut {cut}"
            );
        }
        // Crash mid-frame, then restart: the partial frame is cut off and
        // the new records follow the whole ones.
        let cut = (synced[1].0 + synced[2].0) / 2;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let mut sink = FileSink::open_as(&path, 1 << 30, 1, FileFormat::Zstd(1)).unwrap();
        for i in 0..10 {
            sink.write(&format!("{{\"after\":{i},\"v\":1}}")).unwrap();
        }
        drop(sink);
        let (records, problems, _) = records_of(dir.path());
        assert_eq!(records.len(), synced[1].1 + 10, "{problems:?}");
        assert_eq!(records[synced[1].1], "{\"after\":0,\"v\":1}");
        assert!(problems.partial_last_lines.is_empty(), "{problems:?}");
        assert!(problems.corrupt_lines.is_empty(), "{problems:?}");
        assert_eq!(records_of(dir.path()).2, 1, "appended, not rotated");
    }

    /// Reopening a whole compressed file appends to it, whatever
    /// `keep_files` says (zero keeps no rotated files: nothing may be
    /// rotated away on open).
    #[test]
    fn reopening_a_compressed_file_appends_even_when_no_rotated_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl.zst");
        for round in 0..3 {
            let mut sink = FileSink::open_as(&path, 1 << 30, 0, FileFormat::Zstd(1)).unwrap();
            sink.write(&format!("{{\"round\":{round},\"v\":1}}"))
                .unwrap();
            sink.sync().unwrap();
        }
        let (records, problems, files) = records_of(dir.path());
        assert_eq!(
            records,
            [
                "{\"round\":0,\"v\":1}",
                "{\"round\":1,\"v\":1}",
                "{\"round\":2,\"v\":1}"
            ]
        );
        assert_eq!(files, 1);
        assert!(problems.partial_last_lines.is_empty() && problems.corrupt_lines.is_empty());
    }

    /// A damaged frame in the middle costs its own records only: reading
    /// resumes at the next frame, and the damage is reported.
    #[test]
    fn a_damaged_frame_costs_only_its_own_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl.zst");
        let mut sink = FileSink::open_as(&path, 1 << 30, 1, FileFormat::Zstd(1)).unwrap();
        let mut ends = Vec::new();
        for frame in 0..3 {
            for i in 0..50 {
                sink.write(&format!("{{\"frame\":{frame},\"i\":{i},\"v\":1}}"))
                    .unwrap();
            }
            sink.sync().unwrap();
            ends.push(std::fs::metadata(&path).unwrap().len() as usize);
        }
        drop(sink);
        let clean = std::fs::read(&path).unwrap();
        // A flipped byte inside the second frame's data, then the second
        // frame's header cut away.
        for damage in [DamageKind::Flip, DamageKind::CutHeader] {
            let mut bytes = clean.clone();
            match damage {
                DamageKind::Flip => bytes[(ends[0] + ends[1]) / 2] ^= 0x40,
                DamageKind::CutHeader => {
                    bytes.drain(ends[0]..ends[0] + 6);
                }
            }
            let mut out = Vec::new();
            let mut problems = ReadProblems::default();
            parse_log_file(&path, &bytes, &mut out, &mut problems).unwrap();
            let frames: Vec<i64> = out
                .iter()
                .map(|l| l.record["frame"].as_i64().unwrap())
                .collect();
            assert_eq!(frames.iter().filter(|&&f| f == 0).count(), 50, "{damage:?}");
            assert_eq!(frames.iter().filter(|&&f| f == 2).count(), 50, "{damage:?}");
            assert!(!frames.contains(&1), "{damage:?}");
            assert_eq!(problems.corrupt_lines.len(), 1, "{damage:?}: {problems:?}");
            assert!(problems.partial_last_lines.is_empty(), "{damage:?}");
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum DamageKind {
        Flip,
        CutHeader,
    }

    /// A file in the other format is rotated, not appended to: plain lines
    /// after zstd frames (or frames after lines) would be unreadable.
    #[test]
    fn switching_formats_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let formats = [FileFormat::Zstd(1), FileFormat::Plain, FileFormat::Zstd(1)];
        for (i, format) in formats.into_iter().enumerate() {
            let mut sink = FileSink::open_as(&path, 1 << 30, 5, format).unwrap();
            sink.write(&format!("{{\"i\":{i},\"v\":1}}")).unwrap();
            sink.sync().unwrap();
        }
        let (records, problems, files) = records_of(dir.path());
        assert_eq!(
            records,
            [
                "{\"i\":0,\"v\":1}",
                "{\"i\":1,\"v\":1}",
                "{\"i\":2,\"v\":1}"
            ]
        );
        assert_eq!(files, 3);
        assert!(problems.partial_last_lines.is_empty() && problems.corrupt_lines.is_empty());
    }
}
