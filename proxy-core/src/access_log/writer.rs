//! The writer: a bounded queue of lines to one thread per log.

use std::{
    fmt,
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    thread::Thread,
};

use crossbeam_queue::ArrayQueue;

use crate::ConfigError;

/// Buffers kept for reuse at most; a burst beyond this allocates.
const POOL: usize = 1024;
/// A buffer grown past this (a huge line) is freed rather than kept.
const MAX_KEPT: usize = 16 * 1024;
/// The thread's buffered writer.
const WRITE_BUFFER: usize = 64 * 1024;

/// Where a [`Writer`] counts lines. Called on worker threads (drops) and on the
/// writer thread (writes, failures): keep it to atomics.
pub trait LineCounters: Send + Sync + fmt::Debug + 'static {
    /// A line was written.
    fn line_written(&self);
    /// A line was dropped: the queue was full (or the thread could not start).
    fn line_dropped(&self);
    /// A line could not be written (the file cannot be opened, a write failed).
    fn write_failed(&self);
}

/// Counts of a log's lines, for logs with no metrics of their own.
#[derive(Debug, Default)]
pub struct LineCounts {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl LineCounts {
    /// Lines written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Lines that failed to be written.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl LineCounters for LineCounts {
    fn line_written(&self) {
        self.written.fetch_add(1, Ordering::Relaxed);
    }
    fn line_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
    fn write_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Opens the output (on the writer thread).
type OpenFn = dyn Fn() -> io::Result<Box<dyn Write + Send>> + Send + Sync;
type Open = Arc<OpenFn>;

/// The writing end of one log: a bounded queue of lines to a thread of its own,
/// which appends them to a file (or stdout) through a buffered writer and flushes
/// whenever the queue is empty.
///
/// A worker takes a buffer from a pool the thread refills with the buffers it has
/// written, formats into it and pushes it: no allocation once warm, no lock, no I/O.
/// When the queue is full the line is dropped and counted ([`LineCounters`]). The
/// thread, the queue and the file all come with the first line, so making a writer
/// (building a config, `--validate`) starts nothing and opens nothing. Dropping it
/// ends the thread once it has written what was queued.
pub struct Writer {
    path: Option<PathBuf>,
    capacity: usize,
    counters: Arc<dyn LineCounters>,
    open: Open,
    /// The queue once the thread started; `None` if it could not start.
    queue: OnceLock<Option<Arc<Queue>>>,
}

struct Queue {
    lines: ArrayQueue<String>,
    free: ArrayQueue<String>,
    closed: AtomicBool,
    /// Set by the thread while it writes, cleared once it has flushed.
    busy: AtomicBool,
    thread: OnceLock<Thread>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("started", &self.is_started())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer appending to `path` (created if missing), or to stdout, queueing up
    /// to `capacity` lines. Opens nothing and starts nothing.
    ///
    /// # Errors
    /// What can be told of `path` without touching it: its directory does not exist,
    /// or it is a directory (field `path`).
    pub fn new(
        path: Option<PathBuf>,
        capacity: NonZeroUsize,
        counters: Arc<dyn LineCounters>,
    ) -> Result<Self, ConfigError> {
        if let Some(p) = &path {
            check_path(p)?;
        }
        let target = path.clone();
        let open: Open = Arc::new(move || -> io::Result<Box<dyn Write + Send>> {
            Ok(match &target {
                Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
                None => Box::new(io::stdout()),
            })
        });
        Ok(Self::with_open(path, capacity, counters, open))
    }

    pub(super) fn with_open(
        path: Option<PathBuf>,
        capacity: NonZeroUsize,
        counters: Arc<dyn LineCounters>,
        open: Open,
    ) -> Self {
        Self {
            path,
            capacity: capacity.get(),
            counters,
            open,
            queue: OnceLock::new(),
        }
    }

    /// Whether the writer thread was started (by a first line).
    pub fn is_started(&self) -> bool {
        self.queue.get().is_some()
    }

    /// Whether every line queued so far has been written and flushed (or failed):
    /// for a shutdown that waits for the last lines.
    pub fn is_idle(&self) -> bool {
        match self.queue.get() {
            Some(Some(q)) => q.lines.is_empty() && !q.busy.load(Ordering::SeqCst),
            _ => true,
        }
    }

    /// Queues one line that `fill` writes into a buffer (empty, newline to be
    /// included); drops and counts it when the queue is full. Never blocks; the
    /// first line starts the writer thread.
    pub fn write_with(&self, fill: impl FnOnce(&mut String)) {
        let Some(queue) = self.queue.get_or_init(|| self.start()) else {
            self.counters.line_dropped();
            return;
        };
        let mut line = queue.free.pop().unwrap_or_default();
        fill(&mut line);
        match queue.lines.push(line) {
            Ok(()) => {
                if let Some(t) = queue.thread.get() {
                    t.unpark();
                }
            }
            Err(line) => {
                self.counters.line_dropped();
                recycle(&queue.free, line);
            }
        }
    }

    fn start(&self) -> Option<Arc<Queue>> {
        let queue = Arc::new(Queue {
            lines: ArrayQueue::new(self.capacity),
            free: ArrayQueue::new(self.capacity.min(POOL)),
            closed: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let (q, open, counters) = (queue.clone(), self.open.clone(), self.counters.clone());
        let path = self.path.clone();
        match std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(&q, &*open, &*counters, path.as_deref()))
        {
            Ok(handle) => {
                let _ = queue.thread.set(handle.thread().clone());
                Some(queue)
            }
            Err(error) => {
                tracing::error!(%error, "access log writer thread could not start");
                None
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(Some(queue)) = self.queue.get() {
            queue.closed.store(true, Ordering::Release);
            if let Some(t) = queue.thread.get() {
                t.unpark();
            }
        }
    }
}

fn recycle(free: &ArrayQueue<String>, mut line: String) {
    if line.capacity() <= MAX_KEPT {
        line.clear();
        let _ = free.push(line);
    }
}

/// The writer thread: opens the output with the first line (again with a later line
/// if that failed), writes every queued line, flushes when the queue is empty, and
/// ends once the writer is dropped and the queue drained.
fn run(queue: &Queue, open: &OpenFn, counters: &dyn LineCounters, path: Option<&Path>) {
    let mut out: Option<BufWriter<Box<dyn Write + Send>>> = None;
    let mut reported = false;
    loop {
        // Read before draining: every line pushed before the writer was dropped is
        // then written.
        let closed = queue.closed.load(Ordering::Acquire);
        // Before taking lines: a queue seen empty while not busy is all written.
        queue.busy.store(true, Ordering::SeqCst);
        if out.is_none() && !queue.lines.is_empty() {
            match open() {
                Ok(w) => out = Some(BufWriter::with_capacity(WRITE_BUFFER, w)),
                Err(error) if !reported => {
                    reported = true;
                    tracing::error!(?path, %error, "access log cannot be opened");
                }
                Err(_) => {}
            }
        }
        let mut wrote = false;
        while let Some(line) = queue.lines.pop() {
            match out.as_mut().map(|w| w.write_all(line.as_bytes())) {
                Some(Ok(())) => counters.line_written(),
                Some(Err(_)) | None => counters.write_failed(),
            }
            wrote = true;
            recycle(&queue.free, line);
        }
        if wrote {
            if let Some(w) = out.as_mut() {
                if w.flush().is_err() {
                    counters.write_failed();
                }
            }
        }
        queue.busy.store(false, Ordering::SeqCst);
        if closed {
            return;
        }
        std::thread::park();
    }
}

/// What can be checked of a log file without touching it: its directory exists, and
/// it is not a directory itself.
fn check_path(p: &Path) -> Result<(), ConfigError> {
    let bad = |why: &str| ConfigError::new("path", format!("{}: {why}", p.display()));
    if p.is_dir() {
        return Err(bad("is a directory"));
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(bad("its directory does not exist"));
    }
    Ok(())
}
