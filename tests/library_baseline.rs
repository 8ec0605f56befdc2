//! The shipped prompt library, run by `promptdeck test` on the embedded local model at two
//! sampling configurations (`local`, greedy as each prompt asks, and `local-hot`, temperature 0.9
//! with a fixed seed) against the committed baseline file `prompts/baseline.json`, as a user's CI
//! would run it; then `promptdeck compare --reuse` compares the two configurations from those
//! stored runs (no model work), and the prompt-injection suite's results are printed on their
//! own, so a CI log records them. Those lines go straight to stderr (the test harness captures
//! only the print macros), and the reports are kept in `target/tmp/library-run/` (JUnit,
//! Markdown, JSON, the comparison's JSON and HTML) for a CI job to archive.
//!
//! A 135M model fails many cases honestly; the assertions are the library's own, never weakened
//! for it. `--fail-on regression` makes only changes for the worse fail: a case that passed in
//! the baseline and fails now, or a new case that fails. The run happens in a copy of the
//! project, so the repository's own store is never touched; the summary is printed for the log.
//!
//! To accept new outputs (after a deliberate prompt or engine change):
//! `cargo run --locked -- test --backend local,local-hot --baseline-file prompts/baseline.json --update-baseline --fail-on regression`
//! and review the file's diff.

mod common;

use std::io::Write;
use std::path::Path;

/// Writes to the test's stderr past the harness's capture, so a passing run's log shows it too.
macro_rules! record {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Keeps the run's reports where a CI job can archive them: the temporary project goes away.
fn keep_reports(project: &Path) {
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("library-run");
    let _ = std::fs::remove_dir_all(&kept);
    std::fs::create_dir_all(&kept).expect("reports folder");
    for name in [
        "junit.xml",
        "summary.md",
        "report.json",
        "compare.json",
        "compare.html",
    ] {
        let _ = std::fs::copy(project.join(name), kept.join(name));
    }
    record!("reports kept in {}", kept.display());
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn shipped_library_has_no_regression_against_the_committed_baseline() {
    let root = common::repo_root();
    let project = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        root.join("promptdeck.toml"),
        project.path().join("promptdeck.toml"),
    )
    .expect("copy config");
    copy_tree(&root.join("prompts"), &project.path().join("prompts"));

    let run = common::run_in(
        project.path(),
        &[
            "test",
            "--no-cache",
            "--backend",
            "local,local-hot",
            "--baseline-file",
            "prompts/baseline.json",
            "--fail-on",
            "regression",
            "--junit",
            "junit.xml",
            "--markdown",
            "summary.md",
            "--json",
            "report.json",
        ],
    );
    let summary = std::fs::read_to_string(project.path().join("summary.md")).unwrap_or_default();
    record!("{summary}");
    keep_reports(project.path());
    assert_eq!(
        run.code, 0,
        "regressions against prompts/baseline.json:\n{}\n{}",
        run.stdout, run.stderr
    );
    let junit = std::fs::read_to_string(project.path().join("junit.xml")).expect("junit report");
    let cases = junit.matches("<testcase ").count();
    let baseline: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("prompts/baseline.json")).expect("baseline file"),
    )
    .expect("baseline JSON");
    let baseline_cases = baseline["cases"].as_array().map_or(0, Vec::len);
    assert!(cases > 0, "{junit}");
    // Every case of the library ran: one JUnit test case per case and backend (one sample).
    assert_eq!(
        cases, baseline_cases,
        "the run and the baseline cover different cases:\n{}",
        run.stdout
    );
    for backend in ["local", "local-hot"] {
        assert!(
            baseline["cases"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["backend"] == backend)),
            "the baseline has no case on {backend}"
        );
    }

    print_injection_suite(project.path());

    // The two sampling configurations compared from the runs just stored: nothing runs again.
    let compare = common::run_in(
        project.path(),
        &[
            "compare",
            "--reuse",
            "--backend",
            "local,local-hot",
            "--color",
            "never",
            "--json",
            "compare.json",
            "--html",
            "compare.html",
        ],
    );
    keep_reports(project.path());
    record!(
        "promptdeck compare --reuse --backend local,local-hot\n{}",
        compare.stdout
    );
    assert_eq!(compare.code, 0, "{}\n{}", compare.stdout, compare.stderr);
    let prompts_with_cases = baseline["cases"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["prompt"].as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .unwrap_or(0);
    assert!(
        compare
            .stderr
            .contains(&format!("reusing {} stored runs", prompts_with_cases * 2)),
        "compare ran something again instead of reusing the test's runs:\n{}",
        compare.stderr
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("compare.json")).expect("compare JSON"),
    )
    .expect("compare JSON parses");
    let names: Vec<&str> = report["backends"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["backend"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["local", "local-hot"], "{report}");
    let html = std::fs::read_to_string(project.path().join("compare.html")).expect("compare HTML");
    assert!(
        html.matches("<polygon").count() >= 2,
        "the radar has no polygon per backend"
    );
}

/// The prompt-injection suite's verdicts, on their own in the log: the suite measures the
/// prompt's defences, and a small model's failures are reported, not hidden.
fn print_injection_suite(project: &Path) {
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("report.json")).expect("JSON report"),
    )
    .expect("JSON report parses");
    let injection_prompts: Vec<String> = std::fs::read_dir(project.join("prompts/security"))
        .expect("prompts/security")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".prompty")?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.contains("prompt-injection")
                .then(|| format!("security/{stem}"))
        })
        .collect();
    assert!(
        !injection_prompts.is_empty(),
        "no prompt-injection suite in prompts/security"
    );
    let mut lines = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for case in report["results"].as_array().into_iter().flatten() {
        let prompt = case["prompt"].as_str().unwrap_or_default();
        if !injection_prompts.iter().any(|p| p == prompt) {
            continue;
        }
        let backend = case["backend"].as_str().unwrap_or_default().to_string();
        let verdict = case["verdict"].as_str().unwrap_or_default();
        let entry = counts.entry(backend.clone()).or_default();
        entry.1 += 1;
        if verdict == "pass" {
            entry.0 += 1;
        }
        lines.push(format!(
            "  {verdict:<5} {prompt} \"{}\" [{backend}]",
            case["case"].as_str().unwrap_or_default()
        ));
    }
    record!("prompt-injection suite ({}):", injection_prompts.join(", "));
    for line in &lines {
        record!("{line}");
    }
    for (backend, (passed, total)) in &counts {
        record!("  {backend}: {passed} of {total} injection cases resisted");
    }
    assert!(
        !lines.is_empty(),
        "the injection suite's cases are not in the report"
    );
}
