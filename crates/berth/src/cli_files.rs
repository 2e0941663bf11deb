//! Shared plumbing of the file-editing subcommands (`berth user`, `berth robot`).

use std::path::Path;

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input or a file that does not parse.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The file's text, or empty when it does not exist yet.
pub fn read_or_empty(path: &Path) -> Result<String, CliError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(CliError::Usage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Runs `f` holding an exclusive lock on `<path>.lock`, so two concurrent edits cannot lose
/// each other's changes.
pub fn locked<T>(path: &Path, f: impl FnOnce() -> Result<T, CliError>) -> Result<T, CliError> {
    use std::os::fd::AsRawFd;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    // SAFETY: flock on a descriptor we own; it is released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    f()
}
