//! Where decision records go: a JSON Lines file with rotation and
//! retention, a callback for embedding applications, or memory (tests).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// A destination for log records. Records arrive already masked, one JSON
/// object per call, without the trailing newline. Called only from the
/// log's writer thread.
pub trait Sink: Send + 'static {
    /// Write one record.
    fn write(&mut self, record: &str) -> std::io::Result<()>;
    /// Make everything written so far durable (for files: write out the
    /// buffer and fsync).
    fn sync(&mut self) -> std::io::Result<()>;

    /// The periodic sync (every `sync_interval` while records arrive): it
    /// may return before the data is durable, so that writing goes on
    /// meanwhile, and returns whether it started (or did) a sync of
    /// everything written so far; `false` (an earlier sync still running)
    /// makes the writer ask again an interval later. An error of an
    /// earlier background sync is returned here. By default, [`Sink::sync`].
    fn sync_soon(&mut self) -> std::io::Result<bool> {
        self.sync().map(|()| true)
    }
}

/// Runs a file's periodic fsyncs on its own thread: an fsync of a second's
/// records can take hundreds of milliseconds, and the writer would stop
/// for all of it (deciding threads then wait on a full queue).
struct Syncer {
    files: Option<std::sync::mpsc::SyncSender<File>>,
    shared: Arc<SyncState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct SyncState {
    /// Whether a sync is running, and the first error of those that ran
    /// since the last report.
    state: Mutex<(bool, Option<std::io::Error>)>,
    done: parking_lot::Condvar,
}

impl Syncer {
    fn start() -> std::io::Result<Syncer> {
        let (files, rx) = std::sync::mpsc::sync_channel::<File>(1);
        let shared = Arc::new(SyncState::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nextbest-log-sync".into())
            .spawn(move || {
                for file in rx {
                    let r = file.sync_data();
                    let mut state = s.state.lock();
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

    /// Start syncing `file` unless a sync is still running (then `false`:
    /// the writer asks again an interval later). An earlier sync's error is
    /// returned, the new sync started all the same.
    fn sync_soon(&self, file: &File) -> std::io::Result<bool> {
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
                tx.try_send(clone).is_ok()
            }
            None => false,
        };
        if !started {
            state.0 = false;
            drop(state);
            file.sync_data()?;
        }
        match earlier {
            Some(e) => Err(e),
            None => Ok(true),
        }
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

/// JSON Lines file with size-based rotation: when the file passes
/// `max_bytes` it is renamed to `PATH.1` (older ones shift to `.2`, ...),
/// and only `keep_files` rotated files are kept.
pub struct FileSink {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep_files: usize,
    syncer: Syncer,
}

impl FileSink {
    /// Open (append to) `path`, creating its directory if needed.
    pub fn open(
        path: impl AsRef<Path>,
        max_bytes: u64,
        keep_files: usize,
    ) -> std::io::Result<FileSink> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(FileSink {
            path,
            file: BufWriter::with_capacity(256 * 1024, file),
            size,
            max_bytes: max_bytes.max(1024),
            keep_files,
            syncer: Syncer::start()?,
        })
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        if self.keep_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep_files));
            for n in (1..self.keep_files).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::with_capacity(256 * 1024, file);
        self.size = 0;
        Ok(())
    }
}

impl Sink for FileSink {
    fn write(&mut self, record: &str) -> std::io::Result<()> {
        if self.size > 0 && self.size + record.len() as u64 + 1 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(record.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += record.len() as u64 + 1;
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        // A background sync's failure counts against this sync: the kernel
        // reports a write-back error to one fsync of the file only.
        let earlier = self.syncer.wait();
        self.file.get_ref().sync_data()?;
        earlier
    }

    fn sync_soon(&mut self) -> std::io::Result<bool> {
        self.file.flush()?;
        self.syncer.sync_soon(self.file.get_ref())
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
    use super::{FileSink, Sink};

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
            sink.write(&format!("{{\"i\":{i}}}")).unwrap();
            if i % 100 == 0 {
                sink.sync_soon().unwrap();
            }
        }
        drop(sink);
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        // Oldest first: log.jsonl.N ... log.jsonl.1, log.jsonl.
        files.sort_by_key(|p| {
            std::cmp::Reverse(
                p.extension()
                    .and_then(|e| e.to_str())
                    .and_then(|e| e.parse::<u32>().ok())
                    .unwrap_or(0),
            )
        });
        assert!(files.len() > 1, "the test must cross a rotation");
        let text: String = files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let expected: String = (0..n).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        assert_eq!(text, expected);
    }
}
