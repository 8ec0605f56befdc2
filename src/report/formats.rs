//! Report formats of a [`TestReport`]: JUnit XML for CI systems, JSON with every result, and a
//! Markdown summary for pull-request comments. PURE and deterministic: the same report gives
//! the same bytes (no clock; durations come from the results themselves).
//!
//! JUnit: one `<testsuite>` per prompt and backend, one `<testcase>` per case, named by the case
//! with the prompt as `classname`, as Jenkins, GitLab and GitHub test-report actions group them.
//! A failing case has a `<failure>` whose `message` names the first failing assertion and whose
//! text shows a snippet of the output; a case without a verdict (a backend error, a judge this
//! run lacked) has an `<error>`. XML is escaped by hand: the five special characters, and
//! characters XML 1.0 cannot hold at all (most control characters) are replaced, since a model's
//! output may contain anything.

use std::fmt::Write as _;

use super::compare::ChangeKind;
use super::{CaseOutcome, TestReport, snippet};
use crate::run::plan::Verdict;

/// Characters of output quoted in a JUnit failure or a Markdown line.
pub const SNIPPET_CHARS: usize = 400;
const MARKDOWN_SNIPPET: usize = 120;

/// Escapes text for XML attribute values and character data.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Legal XML 1.0 characters.
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

fn regression_of<'a>(
    report: &'a TestReport,
    o: &CaseOutcome,
) -> Option<&'a super::compare::Change> {
    report.changes.iter().find(|c| {
        c.kind == ChangeKind::Regression
            && c.prompt == o.prompt
            && c.backend == o.backend
            && c.case == o.case
    })
}

/// JUnit XML.
pub fn junit(report: &TestReport) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let total_ms: u64 = report.outcomes.iter().map(|o| o.latency_ms).sum();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<testsuites name="promptdeck" tests="{}" failures="{}" errors="{}" time="{}">"#,
        s.cases,
        s.failed,
        s.errors,
        seconds(total_ms)
    );
    let mut groups: Vec<(&str, &str, Vec<&CaseOutcome>)> = Vec::new();
    for o in &report.outcomes {
        match groups.last_mut() {
            Some((p, b, list)) if *p == o.prompt && *b == o.backend => list.push(o),
            _ => groups.push((&o.prompt, &o.backend, vec![o])),
        }
    }
    for (prompt, backend, cases) in groups {
        let failures = cases.iter().filter(|o| o.verdict == Verdict::Fail).count();
        let errors = cases.iter().filter(|o| o.verdict == Verdict::Error).count();
        let time: u64 = cases.iter().map(|o| o.latency_ms).sum();
        let _ = writeln!(
            out,
            r#"  <testsuite name="{} [{}]" tests="{}" failures="{failures}" errors="{errors}" skipped="0" time="{}">"#,
            xml_escape(prompt),
            xml_escape(backend),
            cases.len(),
            seconds(time)
        );
        for o in cases {
            let _ = write!(
                out,
                r#"    <testcase name="{}" classname="{}.{}" time="{}""#,
                xml_escape(&o.case),
                xml_escape(&o.prompt),
                xml_escape(&o.backend),
                seconds(o.latency_ms)
            );
            let Some(failure) = o.failure.as_ref().filter(|_| o.verdict != Verdict::Pass) else {
                let _ = writeln!(out, "/>");
                continue;
            };
            let _ = writeln!(out, ">");
            let tag = if o.verdict == Verdict::Fail {
                "failure"
            } else {
                "error"
            };
            let mut message = match &failure.assertion {
                Some(a) => format!("{a}: {}", failure.reason),
                None => failure.reason.clone(),
            };
            if o.required > 1 || o.samples.len() > 1 {
                message = format!(
                    "{} of {} samples passed, {} needed; {message}",
                    o.passed_samples,
                    o.samples.len(),
                    o.required
                );
            }
            if regression_of(report, o).is_some() {
                message = format!("regression (passed in the baseline): {message}");
            }
            let _ = writeln!(
                out,
                r#"      <{tag} message="{}" type="{}">{}</{tag}>"#,
                xml_escape(&snippet(&message, SNIPPET_CHARS)),
                xml_escape(failure.assertion.as_deref().unwrap_or("error")),
                xml_escape(&format!(
                    "output: {}",
                    snippet(&failure.output, SNIPPET_CHARS)
                ))
            );
            let _ = writeln!(out, "    </testcase>");
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    let _ = writeln!(out, "</testsuites>");
    out
}

/// JSON with the summary, the baseline comparison and every result with every sample.
pub fn json(report: &TestReport) -> String {
    let value = serde_json::json!({
        "format": 1,
        "summary": report.summary,
        "baseline": report.baseline,
        "changes": report.changes,
        "results": report.outcomes,
    });
    // Serializing plain data cannot fail.
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Escapes text for one Markdown table cell or list line.
fn md(text: &str) -> String {
    let one_line = text.replace("\r\n", " ").replace(['\n', '\r'], " ");
    let mut out = String::with_capacity(one_line.len());
    for c in one_line.chars() {
        if c.is_control() {
            out.push(' ');
            continue;
        }
        if matches!(c, '|' | '\\' | '`' | '*' | '_' | '<' | '>' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Inline code that survives backticks in the text.
fn code(text: &str) -> String {
    let one_line = text.replace("\r\n", " ").replace(['\n', '\r'], " ");
    let fence = if one_line.contains('`') { "``" } else { "`" };
    format!("{fence} {} {fence}", one_line.replace('|', "\\|"))
}

/// A Markdown summary: the counts, then regressions, failures, fixes, changed outputs, new and
/// removed cases. Passing cases are only counted, to keep a PR comment short.
pub fn markdown(report: &TestReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let icon = if s.failed + s.errors + s.regressions == 0 && !s.interrupted {
        "✅"
    } else {
        "❌"
    };
    let _ = writeln!(out, "## {icon} promptdeck test");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "**{}** cases: **{}** passed, **{}** failed, **{}** without verdict{}.",
        s.cases,
        s.passed,
        s.failed,
        s.errors,
        if s.interrupted { " (interrupted)" } else { "" }
    );
    if let Some(baseline) = &report.baseline {
        let _ = writeln!(
            out,
            "Compared with {}: **{}** regressed, **{}** fixed, **{}** changed, **{}** new, **{}** removed.",
            md(baseline),
            s.regressions,
            s.fixes,
            s.changed,
            s.new,
            s.removed
        );
    }
    let _ = writeln!(
        out,
        "Tokens: {} in, {} out · cost ${:.4}",
        s.usage.input, s.usage.output, s.cost
    );
    let section = |out: &mut String, title: &str, kind: ChangeKind| {
        let changes: Vec<_> = report.changes.iter().filter(|c| c.kind == kind).collect();
        if changes.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n### {title} ({})\n", changes.len());
        for c in changes {
            let verdicts = match (c.before, c.after) {
                (Some(b), Some(a)) => format!(" ({} → {})", b.as_str(), a.as_str()),
                (None, Some(a)) => format!(" ({})", a.as_str()),
                (Some(b), None) => format!(" (was {})", b.as_str()),
                (None, None) => String::new(),
            };
            let _ = write!(
                out,
                "- {} · {} · {}{verdicts}",
                md(&c.prompt),
                md(&c.case),
                md(&c.backend)
            );
            match &c.diff {
                Some(diff) => {
                    let _ = writeln!(out, ": {}", code(diff));
                }
                None => {
                    let _ = writeln!(out);
                }
            }
        }
    };
    section(&mut out, "Regressions", ChangeKind::Regression);
    let failing: Vec<&CaseOutcome> = report
        .outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::Pass)
        .collect();
    if !failing.is_empty() {
        let _ = writeln!(out, "\n### Failing cases ({})\n", failing.len());
        let _ = writeln!(
            out,
            "| prompt | case | backend | assertion | reason | output |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
        for o in failing {
            let (assertion, reason, output) = match &o.failure {
                Some(f) => (
                    f.assertion
                        .clone()
                        .unwrap_or_else(|| o.verdict.as_str().to_owned()),
                    f.reason.clone(),
                    f.output.clone(),
                ),
                None => (o.verdict.as_str().to_owned(), String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md(&o.prompt),
                md(&o.case),
                md(&o.backend),
                md(&assertion),
                md(&snippet(&reason, MARKDOWN_SNIPPET)),
                md(&snippet(&output, MARKDOWN_SNIPPET))
            );
        }
    }
    section(&mut out, "Fixed", ChangeKind::Fix);
    section(&mut out, "Changed outputs", ChangeKind::OutputChanged);
    section(&mut out, "New cases", ChangeKind::New);
    section(&mut out, "Removed cases", ChangeKind::Removed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::compare::{BaselineCase, compare};
    use crate::report::{CaseKey, SampleOutcome};
    use crate::store::TokenUsage;
    use crate::suite::evaluate::AssertionResult;

    fn sample(pass: Option<bool>, output: &str, failed: Option<(&str, &str)>) -> SampleOutcome {
        SampleOutcome {
            sample: 0,
            passed: pass,
            score: if pass == Some(true) { 1.0 } else { 0.0 },
            output: output.into(),
            reason: if pass.is_none() {
                "llm-rubric needs a judge model".into()
            } else {
                String::new()
            },
            error: None,
            latency_ms: 1250,
            usage: TokenUsage {
                input: 20,
                output: 8,
            },
            cost: 0.0001,
            cached: false,
            assertions: failed
                .map(|(a, r)| {
                    vec![AssertionResult {
                        assertion: a.into(),
                        pass: false,
                        score: 0.0,
                        reason: r.into(),
                        weight: 1.0,
                        metric: None,
                    }]
                })
                .unwrap_or_default(),
        }
    }

    fn outcome(prompt: &str, case: &str, index: u32, samples: Vec<SampleOutcome>) -> CaseOutcome {
        let required = samples.len() as u32;
        CaseOutcome::from_samples(
            CaseKey {
                prompt: prompt.into(),
                backend: "gpt-4o-mini".into(),
                case: case.into(),
                index,
            },
            "gpt-4o-mini".into(),
            required,
            samples,
        )
    }

    fn report() -> TestReport {
        let outcomes = vec![
            outcome(
                "cot/math",
                "apples",
                1,
                vec![sample(Some(true), "Answer: 7", None)],
            ),
            outcome(
                "cot/math",
                "pears <&> \"quotes\"",
                2,
                vec![sample(
                    Some(false),
                    "Answer: 8 <b>bold</b> & 'x' | pipe \u{1}",
                    Some(("contains", "expected output to contain \"7\"")),
                )],
            ),
            outcome(
                "classify/zero-shot",
                "refund",
                1,
                vec![sample(None, "billing", None)],
            ),
            outcome(
                "classify/zero-shot",
                "new one",
                2,
                vec![sample(Some(true), "ok", None)],
            ),
        ];
        let baseline = vec![
            BaselineCase {
                prompt: "cot/math".into(),
                backend: "gpt-4o-mini".into(),
                case: "pears <&> \"quotes\"".into(),
                index: 2,
                verdict: Verdict::Pass,
                output: "Answer: 7".into(),
            },
            BaselineCase {
                prompt: "cot/math".into(),
                backend: "gpt-4o-mini".into(),
                case: "apples".into(),
                index: 1,
                verdict: Verdict::Fail,
                output: "Answer: 6".into(),
            },
            BaselineCase {
                prompt: "cot/math".into(),
                backend: "gpt-4o-mini".into(),
                case: "gone".into(),
                index: 3,
                verdict: Verdict::Pass,
                output: "x".into(),
            },
        ];
        let comparison = compare(&outcomes, &baseline, "label baseline");
        TestReport::new(outcomes, Some(comparison), false)
    }

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!(junit(&report()));
    }

    #[test]
    fn json_snapshot() {
        insta::assert_snapshot!(json(&report()));
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(markdown(&report()));
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(
            xml_escape("a<b>&\"c\"'\u{0}\u{1b}\n\t"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;\u{FFFD}\u{FFFD}\n\t"
        );
    }
}
