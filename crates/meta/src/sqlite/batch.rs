//! Group commit: one writer thread runs queued writes in batches, each batch in one transaction
//! with one `synchronous = FULL` commit (one WAL fsync), and answers every write only after that
//! commit.
//!
//! Concurrent pushes used to pay one fsync per metadata write (upload sessions, blob links,
//! manifests), one after another behind the writer mutex. Here the thread takes the first queued
//! write and whatever queued up behind it (at most [`MAX_BATCH`]), runs each inside its own
//! `SAVEPOINT` (a failing write rolls back only itself and gets its own error), commits once, then
//! wakes the writers. Durability is unchanged: nothing is visible to readers before the commit,
//! and no writer hears "done" before it. When the commit fails, every write of the batch fails.
//! A lone write is a batch of one, so an idle server commits as soon as before.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{MetaError, Result};

/// Most writes committed together.
const MAX_BATCH: usize = 64;

/// Called once the batch's fate is known: `None` when it committed, else why it did not.
type Outcome = Box<dyn FnOnce(Option<&str>) + Send>;
/// One queued write: runs on the writer thread inside the batch's transaction.
type Job = Box<dyn FnOnce(&mut Connection) -> Outcome + Send>;

/// The writer thread and its queue; dropping it lets queued writes finish, then joins the thread
/// (which closes the connection).
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Moves `conn` onto a new writer thread.
    pub(super) fn start(conn: Connection) -> Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue))
            .map_err(|e| MetaError::Database(format!("sqlite: start writer thread: {e}")))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `f` (FIFO) and waits until the batch it ran in committed.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let out = in_savepoint(c, f);
            Box::new(move |failed: Option<&str>| {
                let out = match (out, failed) {
                    (Ok(_), Some(why)) => Err(MetaError::Database(format!("sqlite: {why}"))),
                    (out, _) => out,
                };
                // The caller may have gone away (request cancelled); the write stands regardless.
                let _ = done.send(out);
            })
        });
        let stopped = || MetaError::Database("sqlite: writer thread stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("sqlite writer thread panicked");
            }
        }
    }
}

/// The writer thread: waits for a write, then commits it with everything queued behind it.
fn run(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = VecDeque::from([first]);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push_back(job),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            commit_batch(&mut conn, &mut batch);
        }
    }
}

/// Runs jobs from the front of `batch` in one transaction and commits it. Stops early (leaving
/// the rest in `batch`) when SQLite rolled the whole transaction back under a job (an I/O error,
/// a full disk): the jobs run so far are then answered with that failure.
fn commit_batch(conn: &mut Connection, batch: &mut VecDeque<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // No shared transaction (the lock is held elsewhere past the busy timeout): each job
        // then runs, and commits or fails, on its own.
        tracing::warn!(error = %e, "sqlite: could not begin a group commit; writing one by one");
        if let Some(job) = batch.pop_front() {
            job(conn)(None);
        }
        return;
    }
    let mut ran = Vec::with_capacity(batch.len());
    while let Some(job) = batch.pop_front() {
        ran.push(job(conn));
        if conn.is_autocommit() {
            let why = "the transaction was rolled back by an error in the batch";
            ran.into_iter().for_each(|outcome| outcome(Some(why)));
            return;
        }
    }
    let failed = conn.execute_batch("COMMIT").err().map(|e| {
        tracing::error!(error = %e, "sqlite: group commit failed");
        if !conn.is_autocommit() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "sqlite: rollback after a failed commit failed");
            }
        }
        format!("commit: {e}")
    });
    ran.into_iter()
        .for_each(|outcome| outcome(failed.as_deref()));
}

/// Runs `f` inside a savepoint: released when `f` succeeds, rolled back when it fails or panics.
fn in_savepoint<T>(c: &mut Connection, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
    let db = |what: &str, e: rusqlite::Error| MetaError::Database(format!("sqlite: {what}: {e}"));
    c.execute_batch("SAVEPOINT write")
        .map_err(|e| db("savepoint", e))?;
    let out = catch_unwind(AssertUnwindSafe(|| f(c))).unwrap_or_else(|_| {
        tracing::error!("sqlite: a write panicked; rolled back");
        Err(MetaError::Database("sqlite: write panicked".into()))
    });
    if c.is_autocommit() {
        // SQLite already rolled the whole transaction back; the batch reports it.
        return out;
    }
    let end = if out.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    if let Err(e) = c.execute_batch(end) {
        // The write's changes may still be in the transaction: give the whole batch up rather
        // than commit them.
        tracing::error!(error = %e, "sqlite: ending a savepoint failed; rolling the batch back");
        if let Err(e) = c.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "sqlite: rollback failed");
        }
        return Err(db("end savepoint", e));
    }
    out
}
