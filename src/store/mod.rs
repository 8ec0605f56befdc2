//! promptdeck's storage: content-addressed prompt versions, labels with an
//! append-only log, and runs with their per-case results.
//!
//! The [`Store`] trait is the whole API; [`SledStore`] persists it on disk
//! and [`MemoryStore`] keeps it in memory for tests of callers. Both are the
//! same logic ([`engine::KvStore`]) over different key-value backends.
//!
//! # Versions
//! A version's id is the lowercase hex sha256 of the canonical encoding of
//! its unit (prompt name, then each file's path and content, length-prefixed,
//! in path order; see [`hash::canonical_encoding`]). Committing content that
//! already exists returns [`CommitOutcome::Existing`] and stores nothing.
//! Short ids are the shortest unique prefix of at least 7 hex digits.
//!
//! # Durability
//! Every mutating call is one atomic sled batch followed by a flush, so when
//! it returns the change is on disk, and a process killed at any moment
//! (even SIGKILL) leaves each item either fully written or absent.
//!
//! # Locking
//! One handle at a time may open a store directory. [`SledStore::open`]
//! relies on sled's own exclusive file lock as the signal: if sled cannot
//! take it, the store is in use and `open` fails with [`StoreError::Locked`],
//! naming the holder's PID read from `<dir>/LOCK.pid` (the holder writes its
//! PID there after opening and removes the file when the store is dropped).
//! A second open of the same directory inside one process fails at once
//! with this process's PID. When sled's lock is held but `LOCK.pid` names
//! no other live process (a store dropped a moment ago, whose sled I/O
//! threads still hold the file, or a holder that has not written its PID
//! yet), `open` retries for up to 3 s before reporting `Locked` with
//! `pid: None`. A `LOCK.pid` left by a process that died is stale: its sled
//! lock died with it, so the next `open` succeeds and overwrites the file.
//!
//! # Runs
//! A run records its owner's PID. A run still `running` whose owner is not
//! alive (checked via `/proc/<pid>` on Linux; assumed alive elsewhere) reads
//! as `interrupted`, and is rewritten as `interrupted` when a store is opened.
//!
//! # Format
//! The key `meta/format` holds the store format ([`STORE_FORMAT`]). A store
//! written by a newer format is refused with [`StoreError::NewerFormat`].

pub mod engine;
pub mod error;
pub mod hash;
pub mod jsonl;
pub mod memory;
pub mod model;
pub mod process;
pub mod sled_store;
pub mod time;

use std::io::{BufRead, Write};

pub use engine::{KvStore, MAX_CANDIDATES, STORE_FORMAT};
pub use error::StoreError;
pub use jsonl::EXPORT_FORMAT;
pub use memory::MemoryStore;
pub use model::{
    CaseResult, CommitOutcome, HistoryEntry, ImportSummary, Label, LabelLogEntry, Message, Run,
    RunId, RunMeta, RunStatus, TokenUsage, UnitFiles, Version, pass_rate,
};
pub use sled_store::SledStore;
pub use time::{Millis, format_rfc3339, now_millis};

/// Everything promptdeck persists. All methods take `&self`; implementations
/// are safe to share between threads.
pub trait Store: Send + Sync {
    /// Stores a new version of `unit.prompt` unless identical content exists.
    /// The new version's parent is the prompt's latest version.
    fn commit(
        &self,
        unit: &UnitFiles,
        message: &str,
        author: &str,
    ) -> Result<CommitOutcome, StoreError>;
    /// A version by full id.
    fn get_version(&self, id: &str) -> Result<Option<Version>, StoreError>;
    /// The most recently created version of a prompt.
    fn latest_version(&self, prompt: &str) -> Result<Option<Version>, StoreError>;
    /// A prompt's versions, newest first, with their current labels.
    fn history(&self, prompt: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Names of all prompts with at least one version, sorted.
    fn prompts(&self) -> Result<Vec<String>, StoreError>;
    /// Shortest unique prefix (at least 7 hex digits) of a version id.
    fn short_id(&self, id: &str) -> String;
    /// The unique version id starting with `prefix` (case-insensitive).
    fn resolve_version_prefix(&self, prefix: &str) -> Result<String, StoreError>;

    /// Points `label` of `prompt` at `version` (which must belong to
    /// `prompt`) and appends to the label log; returns the log entry.
    fn set_label(
        &self,
        prompt: &str,
        label: &str,
        version: &str,
        by: &str,
    ) -> Result<LabelLogEntry, StoreError>;
    fn get_label(&self, prompt: &str, label: &str) -> Result<Option<Label>, StoreError>;
    /// Current labels, sorted by (prompt, label).
    fn list_labels(&self, prompt: Option<&str>) -> Result<Vec<Label>, StoreError>;
    /// Log entries of a label (of one prompt or all), oldest first.
    fn label_log(
        &self,
        label: &str,
        prompt: Option<&str>,
    ) -> Result<Vec<LabelLogEntry>, StoreError>;

    /// Starts a run of an existing version of `meta.prompt`.
    fn begin_run(&self, meta: RunMeta) -> Result<RunId, StoreError>;
    /// Durably stores one result; a result with the same (case, sample)
    /// replaces the previous one.
    fn record_result(&self, run: RunId, result: &CaseResult) -> Result<(), StoreError> {
        self.record_results(run, std::slice::from_ref(result))
    }
    /// Durably stores several results in one atomic write.
    fn record_results(&self, run: RunId, results: &[CaseResult]) -> Result<(), StoreError>;
    /// Sets the final status (anything but `running`) and end time.
    fn finish_run(&self, run: RunId, status: RunStatus) -> Result<(), StoreError>;
    fn get_run(&self, run: RunId) -> Result<Option<Run>, StoreError>;
    /// Runs (of one prompt or all), newest first.
    fn list_runs(&self, prompt: Option<&str>) -> Result<Vec<Run>, StoreError>;
    /// A run's results ordered by (case, sample).
    fn results(&self, run: RunId) -> Result<Vec<CaseResult>, StoreError>;
    /// Runs of a version, newest first.
    fn runs_for_version(&self, version: &str) -> Result<Vec<Run>, StoreError>;
    /// Shortest unique prefix (at least 8 hex digits) of a run id.
    fn short_run_id(&self, run: RunId) -> String;
    /// The unique run id starting with `prefix` (case-insensitive).
    fn resolve_run_prefix(&self, prefix: &str) -> Result<RunId, StoreError>;
    /// `passed / results with a verdict` for a run; `None` if none judged.
    fn pass_rate(&self, run: RunId) -> Result<Option<f64>, StoreError> {
        Ok(pass_rate(&self.results(run)?))
    }

    /// Writes everything as JSON Lines: the header, versions (oldest first by
    /// created_at then id), labels (by prompt, label), the label log (in log
    /// order), then each run (oldest first) followed by its results.
    fn export(&self, w: &mut dyn Write) -> Result<(), StoreError>;
    /// Imports an export. The whole input is validated first (version ids
    /// are recomputed, references checked); on any error nothing is applied.
    /// Idempotent: present versions, runs, results and label-log entries are
    /// skipped; a label is overwritten only by a more recently set one.
    fn import(&self, r: &mut dyn BufRead) -> Result<ImportSummary, StoreError>;
}

#[cfg(test)]
mod tests;
