//! [`SledStore`]: the on-disk store, a sled database under `<dir>/sled` plus
//! the `<dir>/LOCK.pid` holder file.
//!
//! sled 0.34 specifics this file deals with: only one `Db` handle may exist
//! per directory (a second open fails with a lock error, even in the same
//! process), and writes are only synced every 500 ms unless flushed, so
//! [`Kv::apply`] flushes before returning.
//!
//! Locking: sled's exclusive file lock is the real mutual exclusion; when it
//! refuses, [`SledStore::open`] reads `LOCK.pid` to name the holder in
//! [`StoreError::Locked`], retrying briefly when no live holder is named
//! (see [`open_db`]). Directories open in this process are tracked in a
//! registry so a second in-process open fails at once. After a successful
//! open the file is (re)written with this process's PID, which also replaces
//! a stale file left by a process that died, and it is removed again when
//! the store is dropped.

use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::engine::{Entries, Kv, KvStore, Write1};
use super::error::StoreError;
use super::process::pid_alive;

/// Name of the holder file inside the store directory.
pub const LOCK_FILE: &str = "LOCK.pid";

/// sled backend; owns the holder file.
pub struct SledKv {
    db: sled::Db,
    lock_path: PathBuf,
    // Declared last: fields drop in order, so the directory is released from
    // the in-process registry only after the database handle is gone.
    _dir: OpenDirGuard,
}

/// A store persisted with sled; see [`super::Store`].
pub type SledStore = KvStore<SledKv>;

impl KvStore<SledKv> {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// Fails with [`StoreError::Locked`] if another handle has it open and
    /// with [`StoreError::NewerFormat`] if a newer promptdeck wrote it.
    /// Runs left `running` by dead processes are marked `interrupted`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir)?;
        let canonical = fs::canonicalize(dir)?;
        let locked = |pid| StoreError::Locked {
            pid,
            path: dir.to_path_buf(),
        };
        // sled's lock outlives a dropped `Db` for a moment (its I/O threads
        // hold the file), so the in-process case is decided here instead.
        if !open_dirs().insert(canonical.clone()) {
            return Err(locked(Some(std::process::id())));
        }
        let guard = OpenDirGuard(canonical);
        let lock_path = dir.join(LOCK_FILE);
        let db = open_db(&dir.join("sled"), &lock_path).map_err(|e| match e {
            OpenError::Locked(pid) => locked(pid),
            OpenError::Db(e) => e.into(),
        })?;
        // Checked before the holder file is written, so a refused store is
        // left exactly as found.
        let mut store = KvStore::with_backend(SledKv {
            db,
            lock_path: PathBuf::new(),
            _dir: guard,
        });
        store.check_format()?;
        write_pid(&lock_path)?;
        // From here on, dropping the store removes the holder file.
        store.kv.lock_path = lock_path;
        store.mark_stale_runs()?;
        Ok(store)
    }

    /// Bytes used on disk by the store directory.
    pub fn disk_size(&self) -> Result<u64, StoreError> {
        Ok(self.kv.db.size_on_disk()?)
    }
}

/// Store directories this process has open (canonical paths).
fn open_dirs() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    // Insert/remove cannot panic midway, so a poisoned set is still valid.
    OPEN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Removes a directory from [`open_dirs`] when the store (or a failed open)
/// lets go of it.
struct OpenDirGuard(PathBuf);

impl Drop for OpenDirGuard {
    fn drop(&mut self) {
        open_dirs().remove(&self.0);
    }
}

enum OpenError {
    Locked(Option<u32>),
    Db(sled::Error),
}

/// How long to keep retrying a lock that no live process claims.
const LOCK_RETRY: Duration = Duration::from_secs(3);

/// Opens sled, retrying while the lock is held by nobody we can name: a
/// store closed a moment ago (sled's I/O threads release the file lock
/// shortly after the `Db` is dropped) or one whose holder has not written
/// `LOCK.pid` yet. A live holder named in `LOCK.pid` fails at once.
fn open_db(path: &Path, lock_path: &Path) -> Result<sled::Db, OpenError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_error(&e) => {
                let me = std::process::id();
                let holder = read_pid(lock_path).filter(|p| *p != me && pid_alive(*p));
                if holder.is_some() || start.elapsed() >= LOCK_RETRY {
                    return Err(OpenError::Locked(holder));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(OpenError::Db(e)),
        }
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes our PID atomically (temp file + rename) so a reader never sees a
/// half-written number.
fn write_pid(path: &Path) -> Result<(), StoreError> {
    let tmp = path.with_extension("pid.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "{}", std::process::id())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

impl Drop for SledKv {
    fn drop(&mut self) {
        // Every write was already flushed; this only covers sled's own
        // housekeeping. Errors cannot be reported from drop.
        let _ = self.db.flush();
        if !self.lock_path.as_os_str().is_empty()
            && read_pid(&self.lock_path) == Some(std::process::id())
        {
            let _ = fs::remove_file(&self.lock_path);
        }
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rev: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let iter = match end {
            Some(e) => self.db.range(start..e),
            None => self.db.range(start..),
        };
        let pick = |r: sled::Result<(sled::IVec, sled::IVec)>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(StoreError::from)
        };
        if rev {
            iter.rev().take(limit).map(pick).collect()
        } else {
            iter.take(limit).map(pick).collect()
        }
    }

    fn apply(&self, writes: Vec<Write1>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::FORMAT_KEY;
    use super::super::model::*;
    use super::super::{Store, StoreError};
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    fn unit() -> UnitFiles {
        UnitFiles {
            prompt: "crash/p".into(),
            files: [("prompts/crash/p.prompt".to_string(), "hello".to_string())].into(),
        }
    }

    fn result(i: u32) -> CaseResult {
        CaseResult {
            case: i,
            sample: 0,
            case_name: format!("case {i}"),
            messages: vec![Message {
                role: "user".into(),
                content: format!("question {i}"),
            }],
            output: format!("answer {i} {}", "x".repeat(i as usize % 97)),
            finish_reason: Some("stop".into()),
            latency_ms: u64::from(i) * 3,
            ttft_ms: Some(u64::from(i)),
            usage: TokenUsage {
                input: u64::from(i),
                output: u64::from(i) + 1,
            },
            cost: f64::from(i) * 0.000_123,
            error: None,
            cached: i % 2 == 0,
            assertions: vec![serde_json::json!({"i": i})],
            passed: Some(i % 3 != 0),
            technique: None,
        }
    }

    #[test]
    fn reopen_keeps_data_and_removes_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = SledStore::open(dir.path()).unwrap();
            assert_eq!(
                read_pid(&dir.path().join(LOCK_FILE)),
                Some(std::process::id())
            );
            s.commit(&unit(), "m", "a").unwrap().id().to_string()
        };
        assert!(!dir.path().join(LOCK_FILE).exists());
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get_version(&id).unwrap().unwrap().message, "m");
        assert!(s.disk_size().unwrap() > 0);
    }

    #[test]
    fn second_open_in_same_process_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _s = SledStore::open(dir.path()).unwrap();
        match SledStore::open(dir.path()) {
            Err(StoreError::Locked { pid, path }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(path, dir.path());
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    #[test]
    fn stale_pid_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(dir.path().join(LOCK_FILE), format!("{dead}\n")).unwrap();
        let _s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            read_pid(&dir.path().join(LOCK_FILE)),
            Some(std::process::id())
        );
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            assert_eq!(s.kv.get(FORMAT_KEY).unwrap().as_deref(), Some(&b"1"[..]));
            s.kv.apply(vec![(FORMAT_KEY.to_vec(), Some(b"2".to_vec()))])
                .unwrap();
        }
        match SledStore::open(dir.path()) {
            Err(StoreError::NewerFormat { found, supported }) => {
                assert_eq!((found, supported), (2, 1));
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("opened a newer store"),
        }
        assert!(!dir.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn dead_owner_run_is_marked_interrupted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let run_id = {
            let s = SledStore::open(dir.path()).unwrap();
            let v = s.commit(&unit(), "", "").unwrap().id().to_string();
            let id = s
                .begin_run(RunMeta {
                    version: v,
                    prompt: "crash/p".into(),
                    backend: "mock".into(),
                    model: "m".into(),
                    parameters: serde_json::Value::Null,
                })
                .unwrap();
            // Pretend another, now dead, process started it.
            let k = [&b"r/"[..], &id.to_bytes()].concat();
            let mut run: Run = serde_json::from_slice(&s.kv.get(&k).unwrap().unwrap()).unwrap();
            run.owner_pid = dead;
            s.kv.apply(vec![(k, Some(serde_json::to_vec(&run).unwrap()))])
                .unwrap();
            assert_eq!(
                s.get_run(id).unwrap().unwrap().status,
                RunStatus::Interrupted
            );
            id
        };
        let s = SledStore::open(dir.path()).unwrap();
        let k = [&b"r/"[..], &run_id.to_bytes()].concat();
        let raw: Run = serde_json::from_slice(&s.kv.get(&k).unwrap().unwrap()).unwrap();
        assert_eq!(raw.status, RunStatus::Interrupted);
    }

    const CHILD_ENV: &str = "PROMPTDECK_STORE_CRASH_CHILD";

    /// Child mode: write results forever, announcing each committed one.
    fn crash_child(dir: &str) {
        let s = SledStore::open(dir).unwrap();
        let v = s.commit(&unit(), "", "").unwrap().id().to_string();
        let run = s
            .begin_run(RunMeta {
                version: v,
                prompt: "crash/p".into(),
                backend: "mock".into(),
                model: "m".into(),
                parameters: serde_json::json!({"t": 0.5}),
            })
            .unwrap();
        let mut out = std::io::stdout().lock();
        // Leading newline: the harness has already printed `test name ... `.
        writeln!(out, "\nRUN {run}").unwrap();
        out.flush().unwrap();
        for i in 0..100_000u32 {
            s.record_result(run, &result(i)).unwrap();
            writeln!(out, "CASE {i}").unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn sigkill_during_run_keeps_recorded_results() {
        if let Ok(dir) = std::env::var(CHILD_ENV) {
            crash_child(&dir);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        // Test names are module paths without the crate name.
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let name = format!("{module}::sigkill_during_run_keeps_recorded_results");
        let mut total = 0;
        let mut extra = 0;
        for iter in 0..20usize {
            let mut child = Command::new(&exe)
                .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut run = None;
            let mut reported = Vec::new();
            let want = (iter * 37) % 60; // 0..59 results before the kill
            for line in lines.by_ref() {
                let line = line.unwrap();
                if let Some(r) = line.strip_prefix("RUN ") {
                    run = Some(r.parse::<RunId>().unwrap());
                    if iter == 0 {
                        // While the child holds the store we are locked out.
                        match SledStore::open(dir.path()) {
                            Err(StoreError::Locked { pid, .. }) => {
                                assert_eq!(pid, Some(child.id()))
                            }
                            Err(e) => panic!("wrong error {e}"),
                            Ok(_) => panic!("opened a store held by the child"),
                        }
                    }
                } else if let Some(i) = line.strip_prefix("CASE ") {
                    reported.push(i.parse::<u32>().unwrap());
                }
                if run.is_some() && reported.len() >= want {
                    break;
                }
            }
            child.kill().unwrap();
            // Lines the child managed to print before dying are committed too.
            for line in lines {
                let Ok(line) = line else { break };
                if let Some(Ok(i)) = line.strip_prefix("CASE ").map(str::parse::<u32>) {
                    reported.push(i);
                }
            }
            child.wait().unwrap();
            let run = run.expect("child never started a run");
            let s = SledStore::open(dir.path()).unwrap();
            let stored = s.results(run).unwrap();
            for &i in &reported {
                let got = stored.iter().find(|r| r.case == i);
                assert_eq!(got, Some(&result(i)), "iteration {iter}, case {i}");
            }
            // Anything else present must be intact too.
            for r in &stored {
                assert_eq!(r, &result(r.case));
            }
            assert_eq!(
                s.get_run(run).unwrap().unwrap().status,
                RunStatus::Interrupted
            );
            total += reported.len();
            extra += stored.len().saturating_sub(reported.len());
        }
        println!("crash test: {total} reported results verified, {extra} unreported present");
        assert!(total > 0);
    }
}
