//! Files that are re-read when they change (htpasswd, robots).
//!
//! Design decision: poll, don't watch. A caller asks for the current value; at most once per
//! poll interval the file is `stat`ed and, when its (device, inode, size, mtime) fingerprint
//! changed, re-read and re-parsed. This works the same for editors that rewrite in place, tools
//! that rename a new file over the old one, and Kubernetes Secret volumes (which swap a symlink),
//! costs one `stat` per interval, and needs no background task. A file that fails to parse
//! after a change keeps the previous value and logs an error, so a half-edited file never locks
//! everyone out.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a watched file is checked by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

type Parser<T> = Box<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// A parsed file, re-read when it changes on disk.
pub struct Watched<T> {
    path: PathBuf,
    parse: Parser<T>,
    poll: Duration,
    state: Mutex<State<T>>,
}

struct State<T> {
    fingerprint: Option<Fingerprint>,
    value: Arc<T>,
    checked: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Fingerprint {
    fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let m = std::fs::metadata(path)?;
        Ok(Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// Why a watched file could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The contents are invalid.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the line or entry).
        message: String,
    },
}

impl<T> Watched<T> {
    /// Loads `path` now (a missing file gives `missing` when it is `Some`, an error otherwise)
    /// and re-reads it when it changes, checking at most every `poll`.
    pub fn load(
        path: &Path,
        poll: Duration,
        missing: Option<T>,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Watched<T>, LoadError> {
        let parse: Parser<T> = Box::new(parse);
        let (fingerprint, value) = match (read(path, &parse), missing) {
            (Ok((fp, v)), _) => (Some(fp), v),
            (Err(LoadError::Read { source, .. }), Some(m))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                (None, m)
            }
            (Err(e), _) => return Err(e),
        };
        Ok(Watched {
            path: path.to_path_buf(),
            parse,
            poll,
            state: Mutex::new(State {
                fingerprint,
                value: Arc::new(value),
                checked: Instant::now(),
            }),
        })
    }

    /// The file this watches.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current value, re-read first if the poll interval passed and the file changed.
    pub fn get(&self) -> Arc<T> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.checked.elapsed() >= self.poll {
            st.checked = Instant::now();
            self.refresh(&mut st);
        }
        Arc::clone(&st.value)
    }

    fn refresh(&self, st: &mut State<T>) {
        let fp = match Fingerprint::of(&self.path) {
            Ok(fp) => fp,
            Err(e) => {
                if st.fingerprint.is_some() {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot stat watched file; keeping the last good contents");
                }
                return;
            }
        };
        if st.fingerprint == Some(fp) {
            return;
        }
        match read(&self.path, &self.parse) {
            Ok((fp, v)) => {
                tracing::info!(path = %self.path.display(), "reloaded");
                st.fingerprint = Some(fp);
                st.value = Arc::new(v);
            }
            Err(e) => {
                // Remember the bad version so the error is logged once, not every poll.
                st.fingerprint = Some(fp);
                tracing::error!(error = %e, "keeping the last good contents");
            }
        }
    }
}

fn read<T>(path: &Path, parse: &Parser<T>) -> Result<(Fingerprint, T), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Fingerprint first: a change racing with the read is seen again at the next poll.
    let fp = Fingerprint::of(path).map_err(read_err)?;
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let value = parse(&text).map_err(|message| LoadError::Parse {
        path: path.to_path_buf(),
        message,
    })?;
    Ok((fp, value))
}

/// Writes `contents` to `path` atomically (temp file in the same directory, fsync, rename), with
/// mode 0600, so readers and watchers only ever see a complete file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Result<Vec<String>, String> {
        if s.contains("bad") {
            return Err("line says bad".into());
        }
        Ok(s.lines().map(String::from).collect())
    }

    #[test]
    fn reloads_on_change_and_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a\n").unwrap();
        let w = Watched::load(&p, Duration::ZERO, None, lines).unwrap();
        assert_eq!(*w.get(), ["a"]);
        write_atomic(&p, b"a\nb\n").unwrap();
        assert_eq!(*w.get(), ["a", "b"]);
        // in-place rewrite with a different size
        std::fs::write(&p, "c\n").unwrap();
        assert_eq!(*w.get(), ["c"]);
        std::fs::write(&p, "bad\n").unwrap();
        assert_eq!(*w.get(), ["c"], "a broken file keeps the last good value");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(*w.get(), ["c"], "a vanished file keeps the last good value");
        std::fs::write(&p, "d\n").unwrap();
        assert_eq!(*w.get(), ["d"]);
    }

    #[test]
    fn poll_interval_limits_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a\n").unwrap();
        let w = Watched::load(&p, Duration::from_secs(3600), None, lines).unwrap();
        write_atomic(&p, b"b\n").unwrap();
        assert_eq!(*w.get(), ["a"], "not re-checked before the interval");
    }

    #[test]
    fn load_errors_and_missing_default() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert!(matches!(
            Watched::load(&p, DEFAULT_POLL, None, lines),
            Err(LoadError::Read { .. })
        ));
        let w = Watched::load(&p, Duration::ZERO, Some(vec![]), lines).unwrap();
        assert!(w.get().is_empty());
        write_atomic(&p, b"x\n").unwrap();
        assert_eq!(*w.get(), ["x"], "a file created later is picked up");
        std::fs::write(&p, "bad").unwrap();
        let e = Watched::load(&p, DEFAULT_POLL, None, lines).err().unwrap();
        assert!(e.to_string().contains("line says bad"), "{e}");
    }

    #[test]
    fn atomic_writes_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_atomic(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
