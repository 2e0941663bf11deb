//! Connections: one writer on its own group-commit thread ([`super::batch`]), a pool of
//! `query_only` readers behind a semaphore, and the blocking-pool hop long reads make (short reads
//! run inline).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::batch::Writer;
use super::{migrate, Context, SqliteOptions};
use crate::{MetaError, Result};

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache per connection, in KiB (negative `cache_size` means KiB).
const CACHE_KIB: i64 = 16 * 1024;
/// Prepared statements kept per connection; the store uses fewer distinct statements than this.
const STATEMENT_CACHE: usize = 64;

/// The open database: connections plus, for temporary stores, the files to remove at the end.
pub(super) struct Db {
    path: PathBuf,
    // Dropped first: lets queued writes finish, then closes the writer connection.
    writer: Writer,
    readers: Arc<Readers>,
    // Declared last: dropped after the connections above are closed.
    _temp: Option<TempFiles>,
}

/// Idle read connections; `permits` counts them so waiting happens in async code.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Db {
    /// Opens the writer, migrates, then opens the readers.
    pub(super) fn open(path: &Path, opts: &SqliteOptions, temp: Option<TempFiles>) -> Result<Db> {
        let mut writer = connect(path, opts, Role::Writer)?;
        migrate::run(&mut writer)?;
        let count = opts.read_connections.max(1);
        let idle = (0..count)
            .map(|_| connect(path, opts, Role::Reader))
            .collect::<Result<Vec<_>>>()?;
        Ok(Db {
            path: path.to_path_buf(),
            writer: Writer::start(writer)?,
            readers: Arc::new(Readers {
                idle: Mutex::new(idle),
                permits: Arc::new(Semaphore::new(count)),
            }),
            _temp: temp,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| MetaError::Database("sqlite: read pool closed".into()))?;
        let readers = Arc::clone(&self.readers);
        let out = tokio::task::spawn_blocking(move || {
            let lease = Lease::take(&readers)?;
            let out = f(lease.conn()?);
            drop(lease);
            drop(permit);
            out
        })
        .await;
        out.map_err(joined)?
    }

    /// Runs a short read (an indexed point lookup or one bounded page) on the calling thread when
    /// a read connection is idle, else like [`Db::read`].
    ///
    /// Such a read takes microseconds against SQLite's page cache, while the blocking-pool hop of
    /// [`Db::read`] costs two thread hand-offs and wake-ups, hundreds of microseconds on a loaded
    /// machine (the 10 000-tag walk spent over half its time switching threads). Only callers
    /// that bound their work use this; scans and writes stay on the blocking pool. A panic in `f`
    /// unwinds the calling task only; the lease returns the connection to the pool.
    pub(super) async fn read_short<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let Ok(permit) = self.readers.permits.try_acquire() else {
            return self.read(f).await;
        };
        let lease = Lease::take(&self.readers)?;
        let out = f(lease.conn()?);
        drop(lease);
        drop(permit);
        out
    }

    /// Runs `f` on the writer connection after earlier writes (FIFO), in a group commit with the
    /// writes queued alongside it; returns once that commit is durable.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Runs `f` on the writer (tests inspecting pragmas and plans), inside a write batch.
    #[cfg(test)]
    pub(super) async fn with_writer<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        match self.writer.write(move |c| Ok(f(c))).await {
            Ok(v) => v,
            Err(e) => panic!("writer: {e}"),
        }
    }
}

fn joined(e: tokio::task::JoinError) -> MetaError {
    tracing::error!(error = %e, "sqlite task failed");
    MetaError::Database(format!("sqlite: task failed: {e}"))
}

/// A read connection taken from the pool; returned on drop, even when `f` panics.
struct Lease<'a> {
    conn: Option<Connection>,
    readers: &'a Readers,
}

impl<'a> Lease<'a> {
    fn take(readers: &'a Readers) -> Result<Self> {
        let conn = readers
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or_else(|| MetaError::Database("sqlite: no idle read connection".into()))?;
        Ok(Lease {
            conn: Some(conn),
            readers,
        })
    }

    fn conn(&self) -> Result<&Connection> {
        // `conn` is only `None` inside `drop`.
        self.conn
            .as_ref()
            .ok_or_else(|| MetaError::Database("sqlite: read lease is empty".into()))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self
                .readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            idle.push(conn);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

/// Opens one connection and applies the per-connection pragmas.
fn connect(path: &Path, opts: &SqliteOptions, role: Role) -> Result<Connection> {
    let what = format!("open {}", path.display());
    let conn = Connection::open(path).ctx(&what)?;
    conn.busy_timeout(BUSY_TIMEOUT).ctx("set busy_timeout")?;
    if role == Role::Writer {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx("set journal_mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(MetaError::Database(format!(
                "sqlite: {} does not support WAL (journal_mode is {mode})",
                path.display()
            )));
        }
    }
    let sync = if opts.durable { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", sync)
        .ctx("set synchronous")?;
    conn.pragma_update(None, "foreign_keys", true)
        .ctx("set foreign_keys")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .ctx("set cache_size")?;
    if role == Role::Reader {
        conn.pragma_update(None, "query_only", true)
            .ctx("set query_only")?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A database file (and its `-wal`/`-shm` companions) removed on drop.
pub(super) struct TempFiles {
    path: PathBuf,
}

impl TempFiles {
    /// A fresh, unused path under the system temporary directory.
    pub(super) fn new() -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("berth-meta-{}-{nanos}-{n}.db", std::process::id());
        let path = std::env::temp_dir().join(name);
        if path.exists() {
            return Err(MetaError::Database(format!(
                "sqlite: temporary database {} already exists",
                path.display()
            )));
        }
        Ok(TempFiles { path })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            // Missing companions are normal; nothing else can be done about other failures.
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}
