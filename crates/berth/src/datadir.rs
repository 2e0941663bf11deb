//! Checking that the data directories (the filesystem storage root, the SQLite database's
//! directory) are writable before anything is opened in them.
//!
//! The container image runs as uid 65532, and a volume created by root (a bind mount, a
//! `docker volume` populated as root, a hostPath) is not writable by it. Without this check the
//! first symptom is an SQLite "readonly database" or an I/O error deep in the storage layer; with
//! it, the message names the path, the process's uid and gid, the directory's owner, and the
//! `chown` that fixes it.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Creates `dir` if needed and proves this process can create files in it (and write `file`,
/// when it exists). The error is a complete message for the operator.
pub fn ensure_writable(dir: &Path, file: Option<&Path>) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| explain(dir, &e))?;
    let probe = dir.join(format!(".berth-write-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| explain(dir, &e))?;
    let _ = fs::remove_file(&probe);
    if let Some(f) = file.filter(|f| f.exists()) {
        OpenOptions::new()
            .write(true)
            .open(f)
            .map_err(|e| explain(f, &e))?;
    }
    Ok(())
}

fn explain(path: &Path, e: &std::io::Error) -> String {
    if e.kind() != ErrorKind::PermissionDenied {
        return format!("cannot use {}: {e}", path.display());
    }
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let existing = nearest_existing(path).unwrap_or(path);
    let owner = fs::metadata(existing)
        .map(|m| {
            let mode = m.mode() & 0o7777;
            let (u, g) = (m.uid(), m.gid());
            format!(
                "; {} is owned by uid {u} gid {g}, mode {mode:o}",
                existing.display()
            )
        })
        .unwrap_or_default();
    format!(
        "permission denied: {} is not writable by this process (uid {uid}, gid {gid}){owner}. \
         Give the directory to the user Berth runs as: chown -R {uid}:{gid} {} \
         (the container image runs as uid 65532)",
        path.display(),
        existing.display(),
    )
}

/// `path` or its closest existing ancestor.
fn nearest_existing(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_passes_and_is_left_clean() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        ensure_writable(&dir, Some(&dir.join("db.sqlite"))).unwrap();
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "the probe is removed"
        );
    }

    #[test]
    fn permission_denied_names_the_path_uid_and_chown() {
        let e = std::io::Error::from(ErrorKind::PermissionDenied);
        let msg = explain(Path::new("/"), &e);
        assert!(
            msg.starts_with("permission denied: / is not writable"),
            "{msg}"
        );
        assert!(msg.contains("chown -R "), "{msg}");
        assert!(msg.contains("; / is owned by uid 0 gid 0"), "{msg}");
        let other = explain(Path::new("/x"), &std::io::Error::from(ErrorKind::NotFound));
        assert!(other.starts_with("cannot use /x"), "{other}");
    }
}
