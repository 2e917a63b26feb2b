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
        self.file.get_ref().sync_data()
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
