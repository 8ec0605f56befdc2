//! The store's error type: every fallible store operation returns [`StoreError`].
//!
//! Messages are written for the end user of the CLI/TUI, so they name the store
//! path, the offending id or the input line rather than internal details.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another live process holds the store's lock.
    #[error("the store at {} is in use by {}; close it or wait", path.display(), holder(*pid))]
    Locked {
        /// PID of the holder, when its `LOCK.pid` file could be read.
        pid: Option<u32>,
        /// The store directory.
        path: PathBuf,
    },
    /// The store was written by a newer promptdeck with an incompatible layout.
    #[error(
        "the store was written by a newer promptdeck (store format {found}, this build supports up to {supported}); upgrade promptdeck to open it"
    )]
    NewerFormat { found: u64, supported: u64 },
    /// No version id starts with the given prefix.
    #[error("no version matches `{prefix}`")]
    VersionNotFound { prefix: String },
    /// More than one version id starts with the given prefix.
    #[error("version prefix `{prefix}` is ambiguous; it matches {}", candidates.join(", "))]
    AmbiguousVersion {
        prefix: String,
        /// Matching ids (at most [`super::MAX_CANDIDATES`] are listed).
        candidates: Vec<String>,
    },
    /// No run with that id (or id prefix).
    #[error("no run matches `{0}`")]
    RunNotFound(String),
    /// More than one run id starts with the given prefix.
    #[error("run prefix `{prefix}` is ambiguous; it matches {}", candidates.join(", "))]
    AmbiguousRun {
        prefix: String,
        candidates: Vec<String>,
    },
    /// A result was recorded for a run that is no longer running.
    #[error("run {run} is {status}, not running; results can only be added to a running run")]
    RunNotRunning { run: String, status: String },
    /// A caller passed a value the store refuses (bad name, empty unit, ...).
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    /// An import file was rejected; nothing of it was applied.
    #[error("import rejected at line {line}: {message}")]
    Import { line: usize, message: String },
    /// Stored bytes could not be decoded; the store was damaged or written by a bug.
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    /// Error reported by the sled database. Not a `source`: the message already carries it,
    /// and a chain printer would repeat it.
    #[error("{}", describe_db(.0))]
    Db(sled::Error),
    /// Filesystem or stream error.
    #[error("{}", describe_io(.0))]
    Io(#[from] std::io::Error),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e)
    }
}

/// What a user can do something about, for the errors a full disk or a read-only project
/// directory cause: sled's own text ("IO error: File too large") does not say it is the store.
fn storage_hint(io: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind;
    // The kind, not only the OS code: sled re-creates the error of a failed background flush
    // as a custom error that keeps the kind and loses the code.
    match io.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some("the disk is full"),
        ErrorKind::FileTooLarge => {
            Some("a file size limit was reached (the disk is full for this process)")
        }
        ErrorKind::ReadOnlyFilesystem => {
            Some("the project directory is on a read-only file system")
        }
        ErrorKind::PermissionDenied => Some("no permission to write the project directory"),
        _ => None,
    }
}

fn describe_db(e: &sled::Error) -> String {
    match e {
        sled::Error::Io(io) => match storage_hint(io) {
            Some(hint) => format!("cannot write the store (.promptdeck/): {hint}: {io}"),
            None => format!("database error: {io}"),
        },
        other => format!("database error: {other}"),
    }
}

fn describe_io(io: &std::io::Error) -> String {
    match storage_hint(io) {
        Some(hint) => format!("cannot write the store (.promptdeck/): {hint}: {io}"),
        None => format!("I/O error: {io}"),
    }
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
    }
}

impl StoreError {
    pub(crate) fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            what,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_message_names_pid_and_path() {
        let e = StoreError::Locked {
            pid: Some(1234),
            path: PathBuf::from("/x/store"),
        };
        assert_eq!(
            e.to_string(),
            "the store at /x/store is in use by process 1234; close it or wait"
        );
        let e = StoreError::Locked {
            pid: None,
            path: PathBuf::from("/x"),
        };
        assert!(e.to_string().contains("another process"));
    }

    #[test]
    fn storage_errors_say_what_to_fix() {
        let full = StoreError::from(sled::Error::Io(std::io::Error::from_raw_os_error(
            libc::ENOSPC,
        )));
        let text = full.to_string();
        assert!(
            text.starts_with("cannot write the store (.promptdeck/): the disk is full: "),
            "{text}"
        );
        assert!(std::error::Error::source(&full).is_none(), "said once");
        // As sled reports a failed background flush: the kind survives, the code does not.
        let flush = StoreError::from(sled::Error::Io(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            "Os { code: 27 }",
        )));
        assert!(flush.to_string().contains("file size limit"), "{flush}");
        let ro = StoreError::Io(std::io::Error::from_raw_os_error(libc::EROFS));
        assert!(ro.to_string().contains("read-only file system"), "{ro}");
        let other = StoreError::from(sled::Error::Unsupported("x".into()));
        assert!(other.to_string().starts_with("database error: "), "{other}");
    }

    #[test]
    fn ambiguous_lists_candidates() {
        let e = StoreError::AmbiguousVersion {
            prefix: "abc".into(),
            candidates: vec!["abc1".into(), "abc2".into()],
        };
        assert!(e.to_string().contains("abc1, abc2"));
    }
}
