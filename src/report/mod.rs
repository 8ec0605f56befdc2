//! Test results as users read them: each case's outcome over its samples ([`CaseOutcome`]), the
//! comparison with a baseline (`compare`: regressions, fixes, changed outputs, new and removed
//! cases; the committed baseline file), and the report formats (`formats`: JUnit XML, JSON,
//! Markdown). PURE: callers hand in results and get text back; nothing here reads a clock, a
//! file or the store, so every report is deterministic for the same results.

pub mod compare;
pub mod formats;

use serde::Serialize;

use crate::run::plan::{Verdict, aggregate};
use crate::store::TokenUsage;
use crate::suite::evaluate::AssertionResult;

/// One sample of a case as reports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleOutcome {
    pub sample: u32,
    pub passed: Option<bool>,
    pub score: f64,
    pub output: String,
    /// Why it failed or has no verdict; empty when it passed.
    pub reason: String,
    pub error: Option<String>,
    pub latency_ms: u64,
    pub usage: TokenUsage,
    pub cost: f64,
    pub cached: bool,
    pub assertions: Vec<AssertionResult>,
}

/// Where a case failed: the first failing assertion (or the error), for one-line reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The assertion type as written (`not-contains`), or `None` for a run error or a verdict
    /// that needs more than this run had.
    pub assertion: Option<String>,
    pub reason: String,
    /// The output of the failing sample.
    pub output: String,
}

/// One case of one prompt on one backend, over all its samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseOutcome {
    pub prompt: String,
    pub backend: String,
    pub model: String,
    /// The case's name: its description, or `#N`.
    pub case: String,
    /// 1-based position in the tests file.
    pub index: u32,
    pub verdict: Verdict,
    /// Samples that passed, out of how many, and how many were needed.
    pub passed_samples: u32,
    pub required: u32,
    /// Mean score over the samples.
    pub score: f64,
    pub latency_ms: u64,
    pub usage: TokenUsage,
    pub cost: f64,
    pub failure: Option<Failure>,
    pub samples: Vec<SampleOutcome>,
}

impl CaseOutcome {
    /// Adds up a case's samples (in sample order). `required`: how many must pass.
    pub fn from_samples(
        key: CaseKey,
        model: String,
        required: u32,
        samples: Vec<SampleOutcome>,
    ) -> CaseOutcome {
        let verdicts: Vec<Option<bool>> = samples.iter().map(|s| s.passed).collect();
        let verdict = aggregate(&verdicts, required);
        let count = samples.len().max(1) as f64;
        let failure = if verdict == Verdict::Pass {
            None
        } else {
            samples.iter().find(|s| s.passed != Some(true)).map(|s| {
                let first = s.assertions.iter().find(|a| !a.pass);
                Failure {
                    assertion: match (&s.error, first) {
                        (None, Some(a)) if s.passed == Some(false) => Some(a.assertion.clone()),
                        _ => None,
                    },
                    reason: match (&s.error, first) {
                        (Some(error), _) => error.clone(),
                        (None, Some(a)) if s.passed == Some(false) => a.reason.clone(),
                        _ => s.reason.clone(),
                    },
                    output: s.output.clone(),
                }
            })
        };
        CaseOutcome {
            prompt: key.prompt,
            backend: key.backend,
            model,
            case: key.case,
            index: key.index,
            verdict,
            passed_samples: u32::try_from(verdicts.iter().filter(|v| **v == Some(true)).count())
                .unwrap_or(u32::MAX),
            required,
            score: samples.iter().map(|s| s.score).sum::<f64>() / count,
            latency_ms: samples.iter().map(|s| s.latency_ms).sum(),
            usage: TokenUsage {
                input: samples.iter().map(|s| s.usage.input).sum(),
                output: samples.iter().map(|s| s.usage.output).sum(),
            },
            cost: samples.iter().map(|s| s.cost).sum(),
            failure,
            samples,
        }
    }

    /// The output reports and baselines show: the first sample's.
    pub fn output(&self) -> &str {
        self.samples.first().map_or("", |s| s.output.as_str())
    }

    pub fn key(&self) -> CaseKey {
        CaseKey {
            prompt: self.prompt.clone(),
            backend: self.backend.clone(),
            case: self.case.clone(),
            index: self.index,
        }
    }
}

/// What identifies a case across runs: prompt, backend and case name (the index is carried for
/// ordering and display; a case keeps its identity when cases before it are added or removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CaseKey {
    pub prompt: String,
    pub backend: String,
    pub case: String,
    pub index: u32,
}

/// Counts for the summary line and the reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub cases: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub regressions: usize,
    pub fixes: usize,
    pub changed: usize,
    pub new: usize,
    pub removed: usize,
    pub usage: TokenUsage,
    pub cost: f64,
    pub interrupted: bool,
}

impl Summary {
    pub fn new(
        outcomes: &[CaseOutcome],
        comparison: Option<&compare::Comparison>,
        interrupted: bool,
    ) -> Summary {
        let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
        let changes = |k: compare::ChangeKind| {
            comparison.map_or(0, |c| c.changes.iter().filter(|x| x.kind == k).count())
        };
        Summary {
            cases: outcomes.len(),
            passed: count(Verdict::Pass),
            failed: count(Verdict::Fail),
            errors: count(Verdict::Error),
            regressions: changes(compare::ChangeKind::Regression),
            fixes: changes(compare::ChangeKind::Fix),
            changed: changes(compare::ChangeKind::OutputChanged),
            new: changes(compare::ChangeKind::New),
            removed: changes(compare::ChangeKind::Removed),
            usage: TokenUsage {
                input: outcomes.iter().map(|o| o.usage.input).sum(),
                output: outcomes.iter().map(|o| o.usage.output).sum(),
            },
            cost: outcomes.iter().map(|o| o.cost).sum(),
            interrupted,
        }
    }

    /// `18 passed, 2 failed, 1 error · 1 regression, 2 fixed, 3 changed, 1 new, 0 removed`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} passed, {} failed, {} without verdict",
            self.passed, self.failed, self.errors
        );
        if self.regressions + self.fixes + self.changed + self.new + self.removed > 0 {
            line.push_str(&format!(
                " · vs baseline: {} regressed, {} fixed, {} changed, {} new, {} removed",
                self.regressions, self.fixes, self.changed, self.new, self.removed
            ));
        }
        if self.interrupted {
            line.push_str(" · interrupted");
        }
        line
    }
}

/// A test run's results, ready for any report format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    pub summary: Summary,
    /// What the results were compared with (`baseline label`, a file name), if anything.
    pub baseline: Option<String>,
    pub outcomes: Vec<CaseOutcome>,
    pub changes: Vec<compare::Change>,
}

impl TestReport {
    pub fn new(
        mut outcomes: Vec<CaseOutcome>,
        comparison: Option<compare::Comparison>,
        interrupted: bool,
    ) -> TestReport {
        outcomes.sort_by(|a, b| {
            (&a.prompt, &a.backend, a.index, &a.case)
                .cmp(&(&b.prompt, &b.backend, b.index, &b.case))
        });
        let summary = Summary::new(&outcomes, comparison.as_ref(), interrupted);
        let (baseline, changes) = match comparison {
            Some(c) => (Some(c.baseline), c.changes),
            None => (None, Vec::new()),
        };
        TestReport {
            summary,
            baseline,
            outcomes,
            changes,
        }
    }
}

/// Shortens `text` to at most `max` characters, marking the cut with `…`.
pub fn snippet(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    if trimmed.chars().count() <= max {
        return trimmed.to_owned();
    }
    let mut out: String = trimmed.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
