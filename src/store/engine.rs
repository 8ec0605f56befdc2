//! The store logic, written once over an ordered key-value backend ([`Kv`])
//! so the sled store and the in-memory store behave identically.
//!
//! Key layout (one keyspace; keys sort bytewise, integers are big-endian):
//!
//! | key | value |
//! | --- | --- |
//! | `meta/format` | ASCII store format number |
//! | `v/` id | the version's `pv/` key |
//! | `pv/` prompt 0x00 created(8) id | [`Version`] JSON |
//! | `l/` prompt 0x00 label | [`Label`] JSON (current pointer) |
//! | `ll/` seq(8) | [`LabelLogEntry`] JSON, append-only |
//! | `r/` run(8) | [`Run`] JSON as written (status before liveness check) |
//! | `rp/` prompt 0x00 run(8) | empty: runs of a prompt |
//! | `rv/` version-id run(8) | empty: runs of a version |
//! | `rr/` run(8) case(4) sample(4) | [`CaseResult`] JSON |
//!
//! Versions live under `pv/` so a prompt's history is one contiguous range
//! scan (a few leaf pages even on a cold cache) instead of one random read
//! per version; `v/` maps ids to those keys for lookups and prefix search.
//!
//! Every mutation is a single [`Kv::apply`] call (one atomic, durable batch),
//! so a crash never leaves an item half-written. Read-modify-write sequences
//! are serialised by `write_lock`; result inserts are independent single keys
//! and skip it so parallel workers do not contend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Store;
use super::error::StoreError;
use super::hash::{
    MIN_SHORT_VERSION, VERSION_ID_LEN, is_lower_hex, shortest_unique_prefix, version_id,
};
use super::jsonl::{self, Exporter, Lookup};
use super::model::{
    CaseResult, CommitOutcome, HistoryEntry, ImportSummary, Label, LabelLogEntry, MIN_SHORT_RUN,
    Run, RunId, RunMeta, RunStatus, UnitFiles, Version, validate_label, validate_prompt,
    validate_unit,
};
use super::process::{effective, pid_alive};
use super::time::{Millis, now_millis};

/// Store format written by this build (`meta/format`).
pub const STORE_FORMAT: u64 = 1;
/// At most this many candidates are listed in an ambiguity error.
pub const MAX_CANDIDATES: usize = 10;

pub(crate) const FORMAT_KEY: &[u8] = b"meta/format";
const V: &[u8] = b"v/";
const PV: &[u8] = b"pv/";
const L: &[u8] = b"l/";
const LL: &[u8] = b"ll/";
const R: &[u8] = b"r/";
const RP: &[u8] = b"rp/";
const RV: &[u8] = b"rv/";
const RR: &[u8] = b"rr/";

/// Key-value pairs returned by [`Kv::range`].
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One write of a batch: `None` deletes.
pub type Write1 = (Vec<u8>, Option<Vec<u8>>);

/// An ordered byte-key store. Implementations must make [`Kv::apply`]
/// atomic and durable before it returns.
pub trait Kv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries with `start <= key < end` (`end: None` = unbounded), ascending
    /// or descending, at most `limit`.
    fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rev: bool,
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// Applies all writes atomically and durably.
    fn apply(&self, writes: Vec<Write1>) -> Result<(), StoreError>;
}

/// The store: all of [`Store`] over a [`Kv`] backend. Use the
/// [`super::SledStore`] and [`super::MemoryStore`] aliases.
pub struct KvStore<K: Kv> {
    pub(crate) kv: K,
    write_lock: Mutex<()>,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Smallest byte string greater than every string starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Order-preserving encoding of a signed timestamp.
fn millis_key(ms: Millis) -> [u8; 8] {
    // Flipping the sign bit maps i64 order onto u64 order.
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StoreError::Corrupt(format!(
            "entry {:?} cannot be decoded: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn run_id_from_tail(key: &[u8]) -> Result<RunId, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map(|b| RunId(u64::from_be_bytes(b)))
        .ok_or_else(|| StoreError::Corrupt("run index key too short".into()))
}

fn prompt_prefix(tag: &[u8], prompt: &str) -> Vec<u8> {
    key(&[tag, prompt.as_bytes(), &[0]])
}

impl<K: Kv> KvStore<K> {
    pub(crate) fn with_backend(kv: K) -> Self {
        KvStore {
            kv,
            write_lock: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`, so a poisoned lock holds nothing broken.
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scan(&self, prefix: &[u8], rev: bool) -> Result<Entries, StoreError> {
        self.kv
            .range(prefix, prefix_end(prefix).as_deref(), rev, usize::MAX)
    }

    fn last_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .kv
            .range(prefix, prefix_end(prefix).as_deref(), true, 1)?
            .into_iter()
            .next()
            .map(|(k, _)| k))
    }

    fn get_json<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        self.kv.get(k)?.map(|v| decode(k, &v)).transpose()
    }

    /// Neighbouring keys of `k` under `prefix`, with the prefix stripped.
    fn neighbours(&self, prefix: &[u8], k: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let strip = |r: Result<Entries, StoreError>| {
            r.ok()
                .and_then(|v| v.into_iter().next())
                .and_then(|(key, _)| key.get(prefix.len()..).map(<[u8]>::to_vec))
        };
        let end = prefix_end(prefix);
        let prev = strip(self.kv.range(prefix, Some(k), true, 1));
        let after = key(&[k, &[0]]);
        let next = strip(self.kv.range(&after, end.as_deref(), false, 1));
        (prev, next)
    }

    fn version_writes(v: &Version) -> Result<Vec<Write1>, StoreError> {
        let pv = key(&[
            &prompt_prefix(PV, &v.prompt),
            &millis_key(v.created_at),
            v.id.as_bytes(),
        ]);
        Ok(vec![
            (key(&[V, v.id.as_bytes()]), Some(pv.clone())),
            (pv, Some(encode(v)?)),
        ])
    }

    fn run_writes(run: &Run) -> Result<Vec<Write1>, StoreError> {
        let id = run.id.to_bytes();
        Ok(vec![
            (key(&[R, &id]), Some(encode(run)?)),
            (
                key(&[&prompt_prefix(RP, &run.prompt), &id]),
                Some(Vec::new()),
            ),
            (key(&[RV, run.version.as_bytes(), &id]), Some(Vec::new())),
        ])
    }

    fn result_key(run: RunId, case: u32, sample: u32) -> Vec<u8> {
        key(&[
            RR,
            &run.to_bytes(),
            &case.to_be_bytes(),
            &sample.to_be_bytes(),
        ])
    }

    fn next_log_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.last_with_prefix(LL)? {
            Some(k) => run_id_from_tail(&k)?.0.saturating_add(1),
            None => 0,
        })
    }

    /// Stored run record, without the liveness adjustment.
    fn raw_run(&self, run: RunId) -> Result<Option<Run>, StoreError> {
        self.get_json(&key(&[R, &run.to_bytes()]))
    }

    fn runs_from_index(&self, prefix: &[u8]) -> Result<Vec<Run>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.scan(prefix, true)? {
            if let Some(run) = self.get_run(run_id_from_tail(&k)?)? {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// Rewrites `running` runs whose owner process is gone as `interrupted`.
    pub(crate) fn mark_stale_runs(&self) -> Result<usize, StoreError> {
        let _g = self.lock();
        let mut writes = Vec::new();
        for (k, v) in self.scan(R, false)? {
            let mut run: Run = decode(&k, &v)?;
            if run.status == RunStatus::Running && !pid_alive(run.owner_pid) {
                run.status = RunStatus::Interrupted;
                writes.push((k, Some(encode(&run)?)));
            }
        }
        let n = writes.len();
        if n > 0 {
            self.kv.apply(writes)?;
        }
        Ok(n)
    }

    /// Checks or initialises `meta/format`.
    pub(crate) fn check_format(&self) -> Result<(), StoreError> {
        match self.kv.get(FORMAT_KEY)? {
            None => self.kv.apply(vec![(
                FORMAT_KEY.to_vec(),
                Some(STORE_FORMAT.to_string().into_bytes()),
            )]),
            Some(bytes) => {
                let found = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| StoreError::Corrupt("unreadable meta/format".into()))?;
                if found > STORE_FORMAT {
                    Err(StoreError::NewerFormat {
                        found,
                        supported: STORE_FORMAT,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl<K: Kv> Lookup for KvStore<K> {
    fn version_prompt(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get_version(id)?.map(|v| v.prompt))
    }
    fn run_exists(&self, id: RunId) -> Result<bool, StoreError> {
        Ok(self.kv.get(&key(&[R, &id.to_bytes()]))?.is_some())
    }
}

impl<K: Kv> Store for KvStore<K> {
    fn commit(
        &self,
        unit: &UnitFiles,
        message: &str,
        author: &str,
    ) -> Result<CommitOutcome, StoreError> {
        validate_unit(unit)?;
        let id = version_id(unit);
        let _g = self.lock();
        if self.kv.get(&key(&[V, id.as_bytes()]))?.is_some() {
            return Ok(CommitOutcome::Existing(id));
        }
        let parent = self.latest_version(&unit.prompt)?;
        // Strictly increasing times keep a prompt's history order equal to
        // commit order even for commits within the same millisecond.
        let created_at = match &parent {
            Some(p) => now_millis().max(p.created_at.saturating_add(1)),
            None => now_millis(),
        };
        let v = Version {
            id: id.clone(),
            prompt: unit.prompt.clone(),
            parent: parent.map(|p| p.id),
            created_at,
            message: message.to_string(),
            author: author.to_string(),
            files: unit.files.clone(),
        };
        self.kv.apply(Self::version_writes(&v)?)?;
        Ok(CommitOutcome::Created(id))
    }

    fn get_version(&self, id: &str) -> Result<Option<Version>, StoreError> {
        match self.kv.get(&key(&[V, id.as_bytes()]))? {
            Some(pv) => self
                .get_json(&pv)?
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("version {id} is indexed but missing"))),
            None => Ok(None),
        }
    }

    fn latest_version(&self, prompt: &str) -> Result<Option<Version>, StoreError> {
        let prefix = prompt_prefix(PV, prompt);
        self.kv
            .range(&prefix, prefix_end(&prefix).as_deref(), true, 1)?
            .into_iter()
            .next()
            .map(|(k, v)| decode(&k, &v))
            .transpose()
    }

    fn history(&self, prompt: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut labels: HashMap<String, Vec<String>> = HashMap::new();
        for l in self.list_labels(Some(prompt))? {
            labels.entry(l.version).or_default().push(l.label);
        }
        let mut out = Vec::new();
        for (k, v) in self.scan(&prompt_prefix(PV, prompt), true)? {
            let version: Version = decode(&k, &v)?;
            let labels = labels.remove(&version.id).unwrap_or_default();
            out.push(HistoryEntry { version, labels });
        }
        Ok(out)
    }

    fn prompts(&self) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in self.scan(PV, false)? {
            let rest = k.get(PV.len()..).unwrap_or_default();
            let name = rest.split(|b| *b == 0).next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            if out.last().map(String::as_str) != Some(&name) {
                out.push(name.into_owned());
            }
        }
        Ok(out)
    }

    fn short_id(&self, id: &str) -> String {
        let (prev, next) = self.neighbours(V, &key(&[V, id.as_bytes()]));
        let prev = prev.map(|p| String::from_utf8_lossy(&p).into_owned());
        let next = next.map(|p| String::from_utf8_lossy(&p).into_owned());
        shortest_unique_prefix(id, prev.as_deref(), next.as_deref(), MIN_SHORT_VERSION)
    }

    fn resolve_version_prefix(&self, prefix: &str) -> Result<String, StoreError> {
        let p = prefix.trim().to_ascii_lowercase();
        if !is_lower_hex(&p) || p.len() > VERSION_ID_LEN {
            return Err(StoreError::invalid(
                "version id",
                format!("`{prefix}` is not a hex version id or prefix"),
            ));
        }
        let start = key(&[V, p.as_bytes()]);
        let found = self.kv.range(
            &start,
            prefix_end(&start).as_deref(),
            false,
            MAX_CANDIDATES + 1,
        )?;
        let mut ids: Vec<String> = found
            .into_iter()
            .filter_map(|(k, _)| {
                k.get(V.len()..)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
            })
            .collect();
        match ids.len() {
            0 => Err(StoreError::VersionNotFound {
                prefix: prefix.to_string(),
            }),
            1 => Ok(ids.remove(0)),
            _ => {
                ids.truncate(MAX_CANDIDATES);
                Err(StoreError::AmbiguousVersion {
                    prefix: prefix.to_string(),
                    candidates: ids,
                })
            }
        }
    }

    fn set_label(
        &self,
        prompt: &str,
        label: &str,
        version: &str,
        by: &str,
    ) -> Result<LabelLogEntry, StoreError> {
        validate_prompt(prompt)?;
        validate_label(label)?;
        let v = self
            .get_version(version)?
            .ok_or_else(|| StoreError::VersionNotFound {
                prefix: version.to_string(),
            })?;
        if v.prompt != prompt {
            return Err(StoreError::invalid(
                "label target",
                format!(
                    "version {} belongs to prompt `{}`, not `{prompt}`",
                    v.id, v.prompt
                ),
            ));
        }
        let _g = self.lock();
        let label_key = key(&[&prompt_prefix(L, prompt), label.as_bytes()]);
        let old: Option<Label> = self.get_json(&label_key)?;
        let at = now_millis();
        let entry = LabelLogEntry {
            prompt: prompt.to_string(),
            label: label.to_string(),
            at,
            from: old.map(|l| l.version),
            to: version.to_string(),
            by: by.to_string(),
        };
        let current = Label {
            prompt: prompt.to_string(),
            label: label.to_string(),
            version: version.to_string(),
            at,
            by: by.to_string(),
        };
        let seq = self.next_log_seq()?;
        self.kv.apply(vec![
            (label_key, Some(encode(&current)?)),
            (key(&[LL, &seq.to_be_bytes()]), Some(encode(&entry)?)),
        ])?;
        Ok(entry)
    }

    fn get_label(&self, prompt: &str, label: &str) -> Result<Option<Label>, StoreError> {
        self.get_json(&key(&[&prompt_prefix(L, prompt), label.as_bytes()]))
    }

    fn list_labels(&self, prompt: Option<&str>) -> Result<Vec<Label>, StoreError> {
        let prefix = match prompt {
            Some(p) => prompt_prefix(L, p),
            None => L.to_vec(),
        };
        self.scan(&prefix, false)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    fn label_log(
        &self,
        label: &str,
        prompt: Option<&str>,
    ) -> Result<Vec<LabelLogEntry>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.scan(LL, false)? {
            let e: LabelLogEntry = decode(&k, &v)?;
            if e.label == label && prompt.is_none_or(|p| p == e.prompt) {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn begin_run(&self, meta: RunMeta) -> Result<RunId, StoreError> {
        validate_prompt(&meta.prompt)?;
        match self.get_version(&meta.version)? {
            None => {
                return Err(StoreError::VersionNotFound {
                    prefix: meta.version,
                });
            }
            Some(v) if v.prompt != meta.prompt => {
                return Err(StoreError::invalid(
                    "run",
                    format!(
                        "version {} belongs to prompt `{}`, not `{}`",
                        v.id, v.prompt, meta.prompt
                    ),
                ));
            }
            Some(_) => {}
        }
        let _g = self.lock();
        let now = now_millis();
        let mut id = RunId::at_millis(now);
        if let Some(k) = self.last_with_prefix(R)? {
            let last = run_id_from_tail(&k)?;
            if last >= id {
                id = RunId(last.0.saturating_add(1));
            }
        }
        let run = Run {
            id,
            version: meta.version,
            prompt: meta.prompt,
            backend: meta.backend,
            model: meta.model,
            parameters: meta.parameters,
            started_at: now,
            ended_at: None,
            status: RunStatus::Running,
            owner_pid: std::process::id(),
        };
        self.kv.apply(Self::run_writes(&run)?)?;
        Ok(id)
    }

    fn record_results(&self, run: RunId, results: &[CaseResult]) -> Result<(), StoreError> {
        let stored = self
            .raw_run(run)?
            .ok_or_else(|| StoreError::RunNotFound(run.to_string()))?;
        if stored.status != RunStatus::Running {
            return Err(StoreError::RunNotRunning {
                run: run.to_string(),
                status: stored.status.to_string(),
            });
        }
        let mut writes = Vec::with_capacity(results.len());
        for r in results {
            writes.push((Self::result_key(run, r.case, r.sample), Some(encode(r)?)));
        }
        self.kv.apply(writes)
    }

    fn finish_run(&self, run: RunId, status: RunStatus) -> Result<(), StoreError> {
        if status == RunStatus::Running {
            return Err(StoreError::invalid(
                "run status",
                "a run cannot be finished as `running`",
            ));
        }
        let _g = self.lock();
        let mut stored = self
            .raw_run(run)?
            .ok_or_else(|| StoreError::RunNotFound(run.to_string()))?;
        stored.status = status;
        stored.ended_at = Some(now_millis());
        self.kv
            .apply(vec![(key(&[R, &run.to_bytes()]), Some(encode(&stored)?))])
    }

    fn get_run(&self, run: RunId) -> Result<Option<Run>, StoreError> {
        Ok(self.raw_run(run)?.map(effective))
    }

    fn list_runs(&self, prompt: Option<&str>) -> Result<Vec<Run>, StoreError> {
        match prompt {
            Some(p) => self.runs_from_index(&prompt_prefix(RP, p)),
            None => self
                .scan(R, true)?
                .into_iter()
                .map(|(k, v)| decode(&k, &v).map(effective))
                .collect(),
        }
    }

    fn results(&self, run: RunId) -> Result<Vec<CaseResult>, StoreError> {
        if self.raw_run(run)?.is_none() {
            return Err(StoreError::RunNotFound(run.to_string()));
        }
        self.scan(&key(&[RR, &run.to_bytes()]), false)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    fn runs_for_version(&self, version: &str) -> Result<Vec<Run>, StoreError> {
        self.runs_from_index(&key(&[RV, version.as_bytes()]))
    }

    fn short_run_id(&self, run: RunId) -> String {
        let (prev, next) = self.neighbours(R, &key(&[R, &run.to_bytes()]));
        let hex = |b: Option<Vec<u8>>| {
            b.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map(|b| RunId(u64::from_be_bytes(b)).to_string())
        };
        shortest_unique_prefix(
            &run.to_string(),
            hex(prev).as_deref(),
            hex(next).as_deref(),
            MIN_SHORT_RUN,
        )
    }

    fn resolve_run_prefix(&self, prefix: &str) -> Result<RunId, StoreError> {
        let p = prefix.trim().to_ascii_lowercase();
        if !is_lower_hex(&p) || p.len() > 16 {
            return Err(StoreError::invalid(
                "run id",
                format!("`{prefix}` is not a hex run id or prefix"),
            ));
        }
        // All ids with this hex prefix lie in [prefix000.., prefixfff..].
        let pad = |c: &str| format!("{p}{}", c.repeat(16 - p.len()));
        let lo = u64::from_str_radix(&pad("0"), 16)
            .map_err(|e| StoreError::invalid("run id", e.to_string()))?;
        let hi = u64::from_str_radix(&pad("f"), 16)
            .map_err(|e| StoreError::invalid("run id", e.to_string()))?;
        let start = key(&[R, &lo.to_be_bytes()]);
        let end = key(&[R, &hi.to_be_bytes(), &[0]]);
        let found = self
            .kv
            .range(&start, Some(&end), false, MAX_CANDIDATES + 1)?;
        let mut ids = found
            .iter()
            .map(|(k, _)| run_id_from_tail(k))
            .collect::<Result<Vec<_>, _>>()?;
        match ids.len() {
            0 => Err(StoreError::RunNotFound(prefix.to_string())),
            1 => Ok(ids.remove(0)),
            _ => Err(StoreError::AmbiguousRun {
                prefix: prefix.to_string(),
                candidates: ids
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(RunId::to_string)
                    .collect(),
            }),
        }
    }

    fn export(&self, w: &mut dyn Write) -> Result<(), StoreError> {
        let mut out = Exporter::new(w)?;
        let mut versions = self
            .scan(PV, false)?
            .into_iter()
            .map(|(k, v)| decode::<Version>(&k, &v))
            .collect::<Result<Vec<_>, _>>()?;
        versions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        for v in &versions {
            out.version(v)?;
        }
        drop(versions);
        for l in self.list_labels(None)? {
            out.label(&l)?;
        }
        for (k, v) in self.scan(LL, false)? {
            out.label_log(&decode(&k, &v)?)?;
        }
        for (k, v) in self.scan(R, false)? {
            let run = effective(decode::<Run>(&k, &v)?);
            out.run(&run)?;
            for r in self.results(run.id)? {
                out.result(run.id, &r)?;
            }
        }
        out.finish()
    }

    fn import(&self, r: &mut dyn BufRead) -> Result<ImportSummary, StoreError> {
        let parsed = jsonl::parse(r, self)?;
        let _g = self.lock();
        let mut sum = ImportSummary::default();
        let mut writes = Vec::new();
        for v in &parsed.versions {
            if self.kv.get(&key(&[V, v.id.as_bytes()]))?.is_none() {
                writes.extend(Self::version_writes(v)?);
                sum.versions += 1;
            }
        }
        // Labels: the most recently set pointer wins, so re-importing an old
        // export never rolls a label back.
        let mut pending: BTreeMap<Vec<u8>, Label> = BTreeMap::new();
        for l in &parsed.labels {
            let k = key(&[&prompt_prefix(L, &l.prompt), l.label.as_bytes()]);
            let current = match pending.get(&k) {
                Some(p) => Some(p.clone()),
                None => self.get_json::<Label>(&k)?,
            };
            if current.is_none_or(|c| l.at > c.at) {
                pending.insert(k, l.clone());
            }
        }
        sum.labels = pending.len();
        for (k, l) in pending {
            writes.push((k, Some(encode(&l)?)));
        }
        let mut known: HashSet<LabelLogEntry> = HashSet::new();
        for (k, v) in self.scan(LL, false)? {
            known.insert(decode(&k, &v)?);
        }
        let mut seq = self.next_log_seq()?;
        for e in &parsed.label_log {
            if known.insert(e.clone()) {
                writes.push((key(&[LL, &seq.to_be_bytes()]), Some(encode(e)?)));
                seq = seq.saturating_add(1);
                sum.label_log += 1;
            }
        }
        for run in &parsed.runs {
            if self.raw_run(run.id)?.is_none() {
                writes.extend(Self::run_writes(run)?);
                sum.runs += 1;
            }
        }
        for (run, res) in &parsed.results {
            let k = Self::result_key(*run, res.case, res.sample);
            if self.kv.get(&k)?.is_none() {
                writes.push((k, Some(encode(res)?)));
                sum.results += 1;
            }
        }
        if !writes.is_empty() {
            self.kv.apply(writes)?;
        }
        Ok(sum)
    }
}
