//! Scoring one sample: a case's assertions checked against one output, giving the stored
//! assertion results and the sample's verdict. PURE.

use crate::suite::TestCase;
use crate::suite::evaluate::{AssertionResult, Judge, Observation, evaluate, judge_case};

/// One sample's assertions and verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub results: Vec<AssertionResult>,
    /// `None` when an assertion could not be judged here (no judge backend, no votes), so no
    /// partial verdict reaches pass rates or the baseline.
    pub passed: Option<bool>,
    /// The case's weighted score over the assertions that were checked.
    pub score: f64,
    /// Why the case failed, or why it has no verdict.
    pub reason: String,
}

/// Whether an assertion needs something only a technique-aware execution provides: a judge
/// model, or the votes of several samples.
pub fn needs_more_than_output(
    assertion: &crate::suite::Assertion,
    judge: bool,
    votes: bool,
) -> bool {
    use crate::suite::AssertionKind::{LlmRubric, ModelGradedClosedqa, VotesAgree};
    match assertion.kind {
        LlmRubric | ModelGradedClosedqa => !judge,
        VotesAgree => !votes,
        _ => false,
    }
}

/// Checks every assertion of `case` against `observation`. Assertions that need a judge (when
/// `judge` is `None`) or votes (when the observation has none) are not checked and leave the
/// sample without a verdict.
pub fn score(case: &TestCase, observation: &Observation<'_>, judge: Option<&dyn Judge>) -> Scored {
    let (deferred, checkable): (Vec<_>, Vec<_>) = case
        .assertions
        .iter()
        .partition(|a| needs_more_than_output(a, judge.is_some(), observation.votes.is_some()));
    let results: Vec<AssertionResult> = checkable
        .iter()
        .map(|a| evaluate(a, observation, judge))
        .collect();
    let verdict = judge_case(case.threshold, results);
    if let Some(first) = deferred.first() {
        return Scored {
            passed: None,
            score: verdict.score,
            reason: format!(
                "{} needs a judge model or self-consistency votes, which this run does not have",
                first.type_name()
            ),
            results: verdict.results,
        };
    }
    Scored {
        passed: Some(verdict.pass),
        score: verdict.score,
        reason: verdict.reason,
        results: verdict.results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{Assertion, AssertionKind};

    fn assertion(kind: AssertionKind, value: &str) -> Assertion {
        Assertion {
            kind,
            negated: false,
            value: Some(serde_json::Value::String(value.to_owned())),
            threshold: None,
            weight: 1.0,
            metric: None,
            provider: None,
            position: crate::diagnostic::Position::START,
        }
    }

    fn case(assertions: Vec<Assertion>) -> TestCase {
        TestCase {
            index: 1,
            description: Some("c".into()),
            vars: Default::default(),
            assertions,
            options: Default::default(),
            threshold: None,
            min_pass: None,
            metadata: Default::default(),
            position: crate::diagnostic::Position::START,
        }
    }

    #[test]
    fn verdicts() {
        let c = case(vec![
            assertion(AssertionKind::Contains, "7"),
            assertion(AssertionKind::Icontains, "answer"),
        ]);
        let seen = |output| Observation {
            output,
            ..Observation::default()
        };
        let pass = score(&c, &seen("Answer: 7"), None);
        assert_eq!(pass.passed, Some(true));
        assert_eq!(pass.results.len(), 2);
        let fail = score(&c, &seen("Answer: 8"), None);
        assert_eq!(fail.passed, Some(false));
        assert!(fail.reason.contains("contains"), "{}", fail.reason);
        let judged = case(vec![
            assertion(AssertionKind::Contains, "7"),
            assertion(AssertionKind::LlmRubric, "is polite"),
        ]);
        let deferred = score(&judged, &seen("7"), None);
        assert_eq!(deferred.passed, None);
        assert_eq!(deferred.results.len(), 1);
        assert!(deferred.reason.starts_with("llm-rubric needs a judge"));
    }
}
