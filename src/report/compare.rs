//! Comparing a test run with its baseline, and the baseline file.
//!
//! A baseline is a list of [`BaselineCase`]s: each case's verdict and output, from a stored run
//! (the version a label points at, a version, a run) or from a baseline file committed beside
//! the prompts. The comparison classifies every difference: a regression (passed, now does
//! not), a fix (did not pass, now does), a changed output (same verdict, other text; with a
//! short word diff), a new case and a removed one. Only prompt × backend pairs that this run
//! covered can have removed cases, so testing one prompt does not report every other prompt's
//! cases as removed.
//!
//! The baseline file is JSON written deterministically: cases sorted by prompt, backend, case
//! index and name, keys in a fixed order, no timestamps, so regenerating it from the same
//! results gives the same bytes and a review shows only real changes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::CaseOutcome;
use crate::run::plan::Verdict;

/// The format number of the baseline file; bumped on incompatible changes.
pub const BASELINE_FORMAT: u32 = 1;
/// Characters of a word diff shown for a changed output.
pub const DIFF_CHARS: usize = 160;

/// One case of a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineCase {
    pub prompt: String,
    pub backend: String,
    pub case: String,
    #[serde(default)]
    pub index: u32,
    pub verdict: Verdict,
    pub output: String,
}

impl BaselineCase {
    pub fn from_outcome(outcome: &CaseOutcome) -> BaselineCase {
        BaselineCase {
            prompt: outcome.prompt.clone(),
            backend: outcome.backend.clone(),
            case: outcome.case.clone(),
            index: outcome.index,
            verdict: outcome.verdict,
            output: outcome.output().to_owned(),
        }
    }
}

/// The committed baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineFile {
    pub format: u32,
    pub cases: Vec<BaselineCase>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineFileError {
    #[error("{line}:{column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("baseline file format {found} is newer than this promptdeck reads ({BASELINE_FORMAT})")]
    NewerFormat { found: u32 },
}

impl BaselineFile {
    /// A baseline of `outcomes`, merged over `previous` (cases of prompt × backend pairs this run
    /// did not cover are kept, so updating after testing one prompt keeps the others).
    pub fn build(outcomes: &[CaseOutcome], previous: Option<&BaselineFile>) -> BaselineFile {
        let covered: BTreeSet<(&str, &str)> = outcomes
            .iter()
            .map(|o| (o.prompt.as_str(), o.backend.as_str()))
            .collect();
        let mut cases: Vec<BaselineCase> = previous
            .map(|p| {
                p.cases
                    .iter()
                    .filter(|c| !covered.contains(&(c.prompt.as_str(), c.backend.as_str())))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        cases.extend(outcomes.iter().map(BaselineCase::from_outcome));
        cases.sort_by(|a, b| {
            (&a.prompt, &a.backend, a.index, &a.case)
                .cmp(&(&b.prompt, &b.backend, b.index, &b.case))
        });
        BaselineFile {
            format: BASELINE_FORMAT,
            cases,
        }
    }

    /// The file's text: pretty JSON with a final newline.
    pub fn to_text(&self) -> String {
        // Serializing plain strings, numbers and enums cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn parse(text: &str) -> Result<BaselineFile, BaselineFileError> {
        let file: BaselineFile =
            serde_json::from_str(text).map_err(|e| BaselineFileError::Syntax {
                line: e.line(),
                column: e.column(),
                // serde_json appends " at line L column C", which the error already leads with.
                message: e
                    .to_string()
                    .rsplit_once(" at line ")
                    .map_or_else(|| e.to_string(), |(m, _)| m.to_owned()),
            })?;
        if file.format > BASELINE_FORMAT {
            return Err(BaselineFileError::NewerFormat { found: file.format });
        }
        Ok(file)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Passed in the baseline, does not now.
    Regression,
    /// Did not pass in the baseline, passes now.
    Fix,
    /// Same verdict, different output.
    OutputChanged,
    /// Not in the baseline.
    New,
    /// In the baseline, no longer a case.
    Removed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Regression => "regression",
            ChangeKind::Fix => "fixed",
            ChangeKind::OutputChanged => "changed",
            ChangeKind::New => "new",
            ChangeKind::Removed => "removed",
        }
    }
}

/// One difference from the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub prompt: String,
    pub backend: String,
    pub case: String,
    pub before: Option<Verdict>,
    pub after: Option<Verdict>,
    /// A one-line word diff of the output (`[-old-]{+new+}`) when the output changed.
    pub diff: Option<String>,
}

/// The differences of a run from its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// What the run was compared with, for messages: `label baseline`, `baseline.json`, ...
    pub baseline: String,
    /// Sorted by kind, then prompt, backend and case.
    pub changes: Vec<Change>,
}

impl Comparison {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }
}

/// Compares `current` with `baseline`.
pub fn compare(current: &[CaseOutcome], baseline: &[BaselineCase], name: &str) -> Comparison {
    let key = |p: &str, b: &str, c: &str| (p.to_owned(), b.to_owned(), c.to_owned());
    let before: BTreeMap<(String, String, String), &BaselineCase> = baseline
        .iter()
        .map(|c| (key(&c.prompt, &c.backend, &c.case), c))
        .collect();
    let covered: BTreeSet<(&str, &str)> = current
        .iter()
        .map(|o| (o.prompt.as_str(), o.backend.as_str()))
        .collect();
    let mut seen = BTreeSet::new();
    let mut changes = Vec::new();
    for outcome in current {
        let k = key(&outcome.prompt, &outcome.backend, &outcome.case);
        let change = |kind, before: Option<Verdict>, diff| Change {
            kind,
            prompt: outcome.prompt.clone(),
            backend: outcome.backend.clone(),
            case: outcome.case.clone(),
            before,
            after: Some(outcome.verdict),
            diff,
        };
        let Some(old) = before.get(&k) else {
            changes.push(change(ChangeKind::New, None, None));
            continue;
        };
        seen.insert(k);
        let diff = (old.output != outcome.output())
            .then(|| crate::diff::summarize_word_diff(&old.output, outcome.output(), DIFF_CHARS));
        let was = old.verdict == Verdict::Pass;
        let is = outcome.verdict == Verdict::Pass;
        let kind = match (was, is) {
            (true, false) => Some(ChangeKind::Regression),
            (false, true) => Some(ChangeKind::Fix),
            _ if diff.is_some() => Some(ChangeKind::OutputChanged),
            _ => None,
        };
        if let Some(kind) = kind {
            changes.push(change(kind, Some(old.verdict), diff));
        }
    }
    for old in baseline {
        let k = key(&old.prompt, &old.backend, &old.case);
        if covered.contains(&(old.prompt.as_str(), old.backend.as_str())) && !seen.contains(&k) {
            changes.push(Change {
                kind: ChangeKind::Removed,
                prompt: old.prompt.clone(),
                backend: old.backend.clone(),
                case: old.case.clone(),
                before: Some(old.verdict),
                after: None,
                diff: None,
            });
        }
    }
    changes.sort_by(|a, b| {
        (a.kind, &a.prompt, &a.backend, &a.case).cmp(&(b.kind, &b.prompt, &b.backend, &b.case))
    });
    Comparison {
        baseline: name.to_owned(),
        changes,
    }
}

/// Which `promptdeck test` outcomes fail the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// Any case that does not pass (and any regression).
    Any,
    /// Only changes for the worse: a regression, or a case that does not pass and was not
    /// already failing in the baseline (a new case, or one the baseline lacks).
    Regression,
}

/// The cases that fail the command under `fail_on`.
pub fn failing<'a>(
    outcomes: &'a [CaseOutcome],
    baseline: &[BaselineCase],
    fail_on: FailOn,
) -> Vec<&'a CaseOutcome> {
    let known_failures: BTreeSet<(&str, &str, &str)> = baseline
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| (c.prompt.as_str(), c.backend.as_str(), c.case.as_str()))
        .collect();
    outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::Pass)
        .filter(|o| match fail_on {
            FailOn::Any => true,
            FailOn::Regression => {
                !known_failures.contains(&(o.prompt.as_str(), o.backend.as_str(), o.case.as_str()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CaseKey, SampleOutcome};
    use crate::store::TokenUsage;

    pub(crate) fn outcome(prompt: &str, case: &str, pass: bool, output: &str) -> CaseOutcome {
        CaseOutcome::from_samples(
            CaseKey {
                prompt: prompt.into(),
                backend: "local".into(),
                case: case.into(),
                index: 1,
            },
            "m".into(),
            1,
            vec![SampleOutcome {
                sample: 0,
                passed: Some(pass),
                score: if pass { 1.0 } else { 0.0 },
                output: output.into(),
                reason: String::new(),
                error: None,
                latency_ms: 10,
                usage: TokenUsage::default(),
                cost: 0.0,
                cached: false,
                assertions: vec![],
            }],
        )
    }

    fn base(prompt: &str, case: &str, verdict: Verdict, output: &str) -> BaselineCase {
        BaselineCase {
            prompt: prompt.into(),
            backend: "local".into(),
            case: case.into(),
            index: 1,
            verdict,
            output: output.into(),
        }
    }

    #[test]
    fn classifies_every_difference() {
        let current = vec![
            outcome("p", "regressed", false, "The answer is 8."),
            outcome("p", "fixed", true, "ok"),
            outcome("p", "changed", true, "The answer is 7!"),
            outcome("p", "same", true, "same"),
            outcome("p", "new", true, "x"),
        ];
        let baseline = vec![
            base("p", "regressed", Verdict::Pass, "The answer is 7."),
            base("p", "fixed", Verdict::Fail, "ok"),
            base("p", "changed", Verdict::Pass, "The answer is 7."),
            base("p", "same", Verdict::Pass, "same"),
            base("p", "gone", Verdict::Pass, "y"),
            base("other", "untouched", Verdict::Pass, "z"),
        ];
        let c = compare(&current, &baseline, "label baseline");
        let kinds: Vec<(ChangeKind, &str)> = c
            .changes
            .iter()
            .map(|x| (x.kind, x.case.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Regression, "regressed"),
                (ChangeKind::Fix, "fixed"),
                (ChangeKind::OutputChanged, "changed"),
                (ChangeKind::New, "new"),
                (ChangeKind::Removed, "gone"),
            ]
        );
        assert_eq!(
            c.changes[0].diff.as_deref(),
            Some("The answer is [-7-]{+8+}.")
        );
        assert_eq!(c.changes[1].diff, None);
    }

    #[test]
    fn fail_on_regression_forgives_known_failures_only() {
        let current = vec![
            outcome("p", "known", false, ""),
            outcome("p", "regressed", false, ""),
            outcome("p", "new", false, ""),
            outcome("p", "ok", true, ""),
        ];
        let baseline = vec![
            base("p", "known", Verdict::Fail, ""),
            base("p", "regressed", Verdict::Pass, ""),
            base("p", "ok", Verdict::Pass, ""),
        ];
        let names = |v: Vec<&CaseOutcome>| v.iter().map(|o| o.case.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(failing(&current, &baseline, FailOn::Any)),
            ["known", "regressed", "new"]
        );
        assert_eq!(
            names(failing(&current, &baseline, FailOn::Regression)),
            ["regressed", "new"]
        );
    }

    #[test]
    fn baseline_file_is_sorted_stable_and_merges() {
        let previous = BaselineFile {
            format: 1,
            cases: vec![
                base("z", "kept", Verdict::Fail, "old"),
                base("p", "replaced", Verdict::Fail, "old"),
            ],
        };
        let outcomes = vec![
            outcome("p", "b", true, "two"),
            outcome("p", "a", false, "one"),
        ];
        let file = BaselineFile::build(&outcomes, Some(&previous));
        let names: Vec<&str> = file.cases.iter().map(|c| c.case.as_str()).collect();
        assert_eq!(names, ["a", "b", "kept"]);
        let text = file.to_text();
        assert_eq!(BaselineFile::parse(&text).unwrap(), file);
        assert_eq!(
            BaselineFile::build(&outcomes, Some(&previous)).to_text(),
            text
        );
        assert!(text.starts_with("{\n  \"format\": 1,\n  \"cases\": [\n    {\n      \"prompt\": \"p\",\n      \"backend\": \"local\",\n      \"case\": \"a\",\n      \"index\": 1,\n      \"verdict\": \"fail\",\n      \"output\": \"one\"\n"), "{text}");
        assert_eq!(
            BaselineFile::parse("{\"format\": 1,\n \"cases\": 3}")
                .unwrap_err()
                .to_string(),
            "2:11: invalid type: integer `3`, expected a sequence"
        );
        assert_eq!(
            BaselineFile::parse("{\"format\": 9, \"cases\": []}").unwrap_err(),
            BaselineFileError::NewerFormat { found: 9 }
        );
    }
}
