//! The shipped prompt library, run by `promptdeck test` on the embedded local model against the
//! committed baseline file `prompts/baseline.json`, as a user's CI would run it.
//!
//! A 135M model fails many cases honestly; the assertions are the library's own, never weakened
//! for it. `--fail-on regression` makes only changes for the worse fail: a case that passed in
//! the baseline and fails now, or a new case that fails. The run happens in a copy of the
//! project, so the repository's own store is never touched; the summary is printed for the log.
//!
//! To accept new outputs (after a deliberate prompt or engine change):
//! `cargo run --locked -- test --baseline-file prompts/baseline.json --update-baseline --fail-on regression`
//! and review the file's diff.

mod common;

use std::path::Path;

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
            "--baseline-file",
            "prompts/baseline.json",
            "--fail-on",
            "regression",
            "--junit",
            "junit.xml",
            "--markdown",
            "summary.md",
        ],
    );
    let summary = std::fs::read_to_string(project.path().join("summary.md")).unwrap_or_default();
    println!("{summary}");
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
    // Every case of the library ran: one JUnit test case per case (one backend, one sample).
    assert_eq!(
        cases, baseline_cases,
        "the run and the baseline cover different cases:\n{}",
        run.stdout
    );
}
