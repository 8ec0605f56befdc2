//! The store's data model: versions, labels, runs and case results, plus the
//! input validation shared by every [`super::Store`] implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::time::Millis;

/// A prompt unit as handed to [`super::Store::commit`]: the prompt file, its
/// tests file and the partials it includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFiles {
    /// Prompt name, e.g. `cot/math`.
    pub prompt: String,
    /// Path relative to the project root (`/` separators) -> content.
    pub files: BTreeMap<String, String>,
}

/// An immutable, content-addressed snapshot of a prompt unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Lowercase hex sha256 of the unit (see [`super::hash::canonical_encoding`]).
    pub id: String,
    pub prompt: String,
    /// The prompt's latest version when this one was committed.
    pub parent: Option<String>,
    /// Unix millis, UTC; strictly increasing along a prompt's history.
    pub created_at: Millis,
    pub message: String,
    pub author: String,
    pub files: BTreeMap<String, String>,
}

impl Version {
    /// The unit this version snapshots.
    pub fn unit(&self) -> UnitFiles {
        UnitFiles {
            prompt: self.prompt.clone(),
            files: self.files.clone(),
        }
    }
}

/// Result of a commit: identical content never creates a second version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Created(String),
    Existing(String),
}

impl CommitOutcome {
    /// The version id, whether new or existing.
    pub fn id(&self) -> &str {
        match self {
            CommitOutcome::Created(id) | CommitOutcome::Existing(id) => id,
        }
    }
}

/// A version of a prompt with the labels currently pointing at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub version: Version,
    /// Label names, sorted.
    pub labels: Vec<String>,
}

/// The current value of a named pointer such as `prod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub prompt: String,
    pub label: String,
    pub version: String,
    /// When it was last set (unix millis).
    pub at: Millis,
    pub by: String,
}

/// One entry of the append-only label log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelLogEntry {
    pub prompt: String,
    pub label: String,
    pub at: Millis,
    pub from: Option<String>,
    pub to: String,
    pub by: String,
}

/// Run identifier: 48-bit unix millis followed by a 16-bit counter, shown as
/// 16 lowercase hex digits, so ids sort by start time both as numbers and as
/// strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub u64);

/// Minimum length of a displayed short run id: the 12 hex digits of the start millisecond, so an
/// id printed when a run starts stays unique when later runs begin (8 digits would only change
/// every ~65 s and become ambiguous as soon as another run started within that minute).
pub const MIN_SHORT_RUN: usize = 12;

impl RunId {
    /// The first id that can be issued at `ms`.
    pub fn at_millis(ms: Millis) -> RunId {
        let ms = u64::try_from(ms).unwrap_or(0) & 0xffff_ffff_ffff;
        RunId(ms << 16)
    }

    /// The start time encoded in the id.
    pub fn millis(self) -> Millis {
        // 48 bits always fit in an i64.
        (self.0 >> 16) as Millis
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for RunId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !super::hash::is_lower_hex(s) {
            return Err(StoreError::invalid(
                "run id",
                format!("`{s}` is not 16 lowercase hex digits"),
            ));
        }
        u64::from_str_radix(s, 16)
            .map(RunId)
            .map_err(|e| StoreError::invalid("run id", e.to_string()))
    }
}

impl Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Complete,
    Interrupted,
    Failed,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        })
    }
}

/// What the caller supplies to start a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMeta {
    pub version: String,
    pub prompt: String,
    pub backend: String,
    pub model: String,
    pub parameters: serde_json::Value,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub version: String,
    pub prompt: String,
    pub backend: String,
    pub model: String,
    pub parameters: serde_json::Value,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    /// As read: a `running` run whose owner died reads as `interrupted`.
    pub status: RunStatus,
    pub owner_pid: u32,
}

/// One chat message sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Token counts reported by the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
}

/// The outcome of one sample of one test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Index of the case in the tests file.
    pub case: u32,
    /// Sample index (0-based) when a case is sampled several times.
    pub sample: u32,
    pub case_name: String,
    pub messages: Vec<Message>,
    pub output: String,
    pub finish_reason: Option<String>,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub usage: TokenUsage,
    /// USD.
    pub cost: f64,
    pub error: Option<String>,
    pub cached: bool,
    /// Assertion outcomes; the schema is owned by the assertions module.
    pub assertions: Vec<serde_json::Value>,
    pub passed: Option<bool>,
    /// What a prompting technique adds: every backend call, the vote, the ReAct trace, the
    /// generated prompt, step outputs. The schema is owned by the execution module
    /// (`execution::TechniqueRecord`). Absent in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<serde_json::Value>,
}

impl CaseResult {
    /// A result not yet produced: the case, the sample and the messages sent, nothing back.
    pub fn started(
        case: u32,
        sample: u32,
        case_name: String,
        messages: &[crate::prompt::Message],
    ) -> CaseResult {
        CaseResult {
            case,
            sample,
            case_name,
            messages: messages
                .iter()
                .map(|m| Message {
                    role: m.role.as_str().to_owned(),
                    content: m.content.clone(),
                })
                .collect(),
            output: String::new(),
            finish_reason: None,
            latency_ms: 0,
            ttft_ms: None,
            usage: TokenUsage::default(),
            cost: 0.0,
            error: None,
            cached: false,
            assertions: Vec::new(),
            passed: None,
            technique: None,
        }
    }
}

/// Counts of what an import added (already-present items are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub versions: usize,
    pub labels: usize,
    pub label_log: usize,
    pub runs: usize,
    pub results: usize,
}

/// `passed / results with a verdict`, or `None` when no result has one.
pub fn pass_rate(results: &[CaseResult]) -> Option<f64> {
    let judged = results.iter().filter(|r| r.passed.is_some()).count();
    if judged == 0 {
        return None;
    }
    let passed = results.iter().filter(|r| r.passed == Some(true)).count();
    Some(passed as f64 / judged as f64)
}

/// Prompt names are used inside index keys with a 0x00 separator.
pub fn validate_prompt(prompt: &str) -> Result<(), StoreError> {
    if prompt.is_empty() || prompt.contains('\0') {
        return Err(StoreError::invalid(
            "prompt name",
            format!("{prompt:?} must be non-empty and contain no NUL"),
        ));
    }
    Ok(())
}

/// Labels match `[A-Za-z0-9._-]+`.
pub fn validate_label(label: &str) -> Result<(), StoreError> {
    let ok = !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "label name",
            format!("{label:?} must match [A-Za-z0-9._-]+"),
        ))
    }
}

/// A unit needs a valid prompt and at least one file, with relative,
/// `/`-separated paths and no `.`/`..`/empty components.
pub fn validate_unit(unit: &UnitFiles) -> Result<(), StoreError> {
    validate_prompt(&unit.prompt)?;
    if unit.files.is_empty() {
        return Err(StoreError::invalid(
            "unit",
            "a unit needs at least one file",
        ));
    }
    for path in unit.files.keys() {
        let bad = path.is_empty()
            || path.contains('\\')
            || path.contains('\0')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
        if bad {
            return Err(StoreError::invalid(
                "file path",
                format!("{path:?} must be relative with '/' separators"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_roundtrip_and_order() {
        let a = RunId::at_millis(1_700_000_000_000);
        let b = RunId(a.0 + 1);
        assert_eq!(a.millis(), 1_700_000_000_000);
        assert_eq!(a.to_string().len(), 16);
        assert_eq!(a.to_string().parse::<RunId>().ok(), Some(a));
        assert!(a.to_string() < b.to_string());
        assert!("ABCDEF0123456789".parse::<RunId>().is_err());
        assert!("123".parse::<RunId>().is_err());
        assert_eq!(
            serde_json::to_string(&a).ok().as_deref(),
            Some(format!("\"{a}\"").as_str())
        );
    }

    #[test]
    fn label_names() {
        for ok in ["prod", "staging", "v1.2_rc-3"] {
            assert!(validate_label(ok).is_ok());
        }
        for bad in ["", "a b", "a/b", "é"] {
            assert!(validate_label(bad).is_err());
        }
    }

    #[test]
    fn unit_paths() {
        let mk = |p: &str| UnitFiles {
            prompt: "x".into(),
            files: [(p.to_string(), String::new())].into(),
        };
        assert!(validate_unit(&mk("prompts/a.prompt")).is_ok());
        for bad in ["", "/abs", "a//b", "../x", "a\\b", "a/./b"] {
            assert!(validate_unit(&mk(bad)).is_err(), "{bad}");
        }
        let empty = UnitFiles {
            prompt: "x".into(),
            files: BTreeMap::new(),
        };
        assert!(validate_unit(&empty).is_err());
    }

    #[test]
    fn pass_rate_ignores_unjudged() {
        let mut r = CaseResult {
            case: 0,
            sample: 0,
            case_name: String::new(),
            messages: vec![],
            output: String::new(),
            finish_reason: None,
            latency_ms: 0,
            ttft_ms: None,
            usage: TokenUsage::default(),
            cost: 0.0,
            error: None,
            cached: false,
            assertions: vec![],
            passed: None,
            technique: None,
        };
        assert_eq!(pass_rate(std::slice::from_ref(&r)), None);
        let mut v = vec![r.clone()];
        r.passed = Some(true);
        v.push(r.clone());
        r.passed = Some(false);
        v.push(r);
        assert_eq!(pass_rate(&v), Some(0.5));
    }
}
