//! `promptdeck test` and the run matrix through the real binary, against a loopback
//! OpenAI-compatible server whose answers each test changes between runs: exit codes 0/1/2,
//! the baseline label and the baseline file (also on a fresh checkout without a store),
//! regressions, fixes, changed, new and removed cases, `--fail-on regression`, the three report
//! files, `--repeat` with `min-pass`, and `run` with two backends × two samples in JSON.

mod common;

#[path = "common/bounded.rs"]
mod bounded;
#[allow(dead_code)]
#[path = "backends/server.rs"]
mod server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use common::{Run, TempProject};
use server::{Recorded, Reply, Server};

const PROMPT: &str = "---
name: qa
model:
  parameters:
    temperature: 0
    max_tokens: 32
---
user:
{{ q }}
";

const TESTS: &str = "- description: capital
  vars: {q: capital of France}
  assert:
    - type: icontains
      value: paris
- description: sum
  vars: {q: 2+2}
  assert:
    - type: contains
      value: '4'
";

const LIMIT: Duration = Duration::from_secs(60);

/// What the server answers, by question; `flaky`: every third request answers wrong.
#[derive(Default)]
struct Answers {
    table: Mutex<HashMap<String, String>>,
    flaky: std::sync::atomic::AtomicBool,
    count: AtomicUsize,
}

impl Answers {
    fn set(&self, question: &str, answer: &str) {
        self.table
            .lock()
            .unwrap()
            .insert(question.to_owned(), answer.to_owned());
    }

    fn reply(&self, req: &Recorded) -> Reply {
        let body = req.json();
        let question = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        if question == "slow" {
            // Headers, then nothing: the request hangs until the client gives up on it.
            return Reply::Stall(vec![server::sse_head()]);
        }
        let answer = if self.flaky.load(Ordering::SeqCst) && n % 3 == 0 {
            "no idea".to_owned()
        } else {
            self.table
                .lock()
                .unwrap()
                .get(&question)
                .cloned()
                .unwrap_or_else(|| "no idea".to_owned())
        };
        let chunk = |delta: Value, finish: Option<&str>| {
            let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {c}\n\n")
        };
        let mut sse = chunk(json!({"role": "assistant", "content": answer}), None);
        sse.push_str(&chunk(json!({}), Some("stop")));
        let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
        sse.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
        let mut parts = vec![server::sse_head()];
        parts.push(sse.into_bytes());
        Reply::Parts(parts, Duration::ZERO)
    }
}

struct Fixture {
    project: TempProject,
    answers: Arc<Answers>,
    server: Server,
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = common::runtime(2);
        let answers = Arc::new(Answers::default());
        answers.set("capital of France", "Paris.");
        answers.set("2+2", "4");
        let for_server = Arc::clone(&answers);
        let server = runtime.block_on(Server::start(move |_, req| for_server.reply(req)));
        let mut config = String::from("[defaults]\nbackend = \"mock\"\n");
        for name in ["mock", "mock2"] {
            config.push_str(&format!(
                "\n[backends.{name}]\nkind = \"openai\"\nmodel = \"m-{name}\"\nbase_url = \"{}/v1\"\nconcurrency = 4\nretries = 0\ntimeout = 10\n",
                server.url()
            ));
        }
        let project = TempProject::with_config(&config);
        project.write("prompts/qa.prompty", PROMPT);
        project.write("prompts/qa.tests.yaml", TESTS);
        Fixture {
            project,
            answers,
            server,
            _runtime: runtime,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut command = common::binary();
        command.args(args).current_dir(self.project.root());
        Run::from(bounded::output_within(command, LIMIT))
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.project.root().join(path)).expect("read a written file")
    }
}

#[test]
fn exit_codes_0_1_2() {
    let f = Fixture::new();
    let ok = f.run(&["test", "--no-cache"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout
            .contains("ok 2 cases: 2 passed, 0 failed, 0 without verdict (no baseline)"),
        "{ok:?}"
    );

    f.answers.set("2+2", "five");
    let failed = f.run(&["test", "--no-cache"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed
            .stdout
            .contains("FAIL  qa \"sum\" [mock]: contains: expected output to contain \"4\""),
        "{failed:?}"
    );
    assert!(failed.stdout.contains("      output: five"), "{failed:?}");
    // Plain progress lines on a non-terminal stderr: the failure and the tenths.
    assert!(
        failed.stderr.contains("FAIL qa \"sum\" [mock]"),
        "{failed:?}"
    );
    assert!(failed.stderr.contains("[2/2] 1 failed"), "{failed:?}");

    // A template error is a configuration error: exit 2 with the file's position.
    f.project.write(
        "prompts/broken.prompty",
        "---\nname: broken\n---\n{{ missing }}\n",
    );
    f.project.write(
        "prompts/broken.tests.yaml",
        "- description: one\n  vars: {q: x}\n",
    );
    let broken = f.run(&["test"]);
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(
        broken
            .stderr
            .contains("prompts/broken.prompty:4:4: error: undefined variable `missing`"),
        "{broken:?}"
    );
    let unknown = f.run(&["test", "qa", "--backend", "nope"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("no backend `nope`"), "{unknown:?}");
    let no_file = f.run(&["test", "qa", "--baseline-file", "missing.json"]);
    assert_eq!(no_file.code, 2, "{no_file:?}");
    assert!(no_file.stderr.contains("--update-baseline"), "{no_file:?}");
}

#[test]
fn baseline_label_regressions_and_update() {
    let f = Fixture::new();
    // No label yet: --update-baseline after a green run creates it.
    let first = f.run(&["test", "--no-cache", "--update-baseline"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stderr
            .contains("moved label `baseline` of 1 prompt to the tested versions"),
        "{first:?}"
    );
    let labels = f.run(&["label", "list"]);
    assert!(labels.stdout.contains("baseline"), "{labels:?}");

    // The prompt changes (a new version) and one answer goes wrong: a regression against the
    // label's version, which is found without naming it.
    f.project.write(
        "prompts/qa.tests.yaml",
        format!("{TESTS}- description: extra\n  vars: {{q: capital of France}}\n"),
    );
    f.answers.set("2+2", "It is 5");
    let second = f.run(&["test", "--no-cache", "--update-baseline"]);
    assert_eq!(second.code, 1, "{second:?}");
    assert!(
        second
            .stdout
            .contains("REGRESSION qa \"sum\" [mock] pass -> fail: [-4-]{+It is 5+}"),
        "{second:?}"
    );
    assert!(
        second
            .stdout
            .contains("NEW        qa \"extra\" [mock] pass"),
        "{second:?}"
    );
    assert!(
        second.stdout.contains("(compared with label baseline)"),
        "{second:?}"
    );
    assert!(
        second
            .stderr
            .contains("label `baseline` not moved: the run is not green"),
        "{second:?}"
    );
    // --fail-on regression still fails: the case passed in the baseline.
    let strict = f.run(&["test", "--no-cache", "--fail-on", "regression"]);
    assert_eq!(strict.code, 1, "{strict:?}");

    // Fixed again: a changed output with the same verdict is reported, not failed.
    f.answers.set("2+2", "4, of course");
    let fixed = f.run(&["test", "--no-cache"]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    assert!(
        fixed
            .stdout
            .contains("CHANGED    qa \"sum\" [mock] pass -> pass: 4{+, of course+}"),
        "{fixed:?}"
    );

    // A named version or run works as a baseline too.
    let runs = f.run(&["runs", "--format", "json"]);
    let runs: Value = serde_json::from_str(&runs.stdout).expect("runs json");
    let oldest = runs.as_array().and_then(|r| r.last()).expect("a run");
    let run_id = oldest["id"].as_str().expect("run id");
    let by_run = f.run(&["test", "--no-cache", "--baseline", run_id]);
    assert!(by_run.stdout.contains("(compared with run "), "{by_run:?}");
    assert!(
        by_run.stdout.contains("NEW        qa \"extra\""),
        "{by_run:?}"
    );
    let missing = f.run(&["test", "--baseline", "prod"]);
    assert_eq!(missing.code, 2, "{missing:?}");
}

#[test]
fn baseline_file_round_trip_on_a_fresh_checkout() {
    let f = Fixture::new();
    f.answers.set("2+2", "five");
    // Writing the file does not need a green run: known failures are recorded as such.
    let write = f.run(&[
        "test",
        "--no-cache",
        "--baseline-file",
        "baseline/qa.json",
        "--update-baseline",
    ]);
    assert_eq!(write.code, 1, "{write:?}");
    assert!(
        write.stderr.contains("wrote baseline/qa.json (2 cases)"),
        "{write:?}"
    );
    let text = f.read("baseline/qa.json");
    insta::assert_snapshot!("baseline_file", text);

    // Rewriting from the same results gives the same bytes.
    let again = f.run(&[
        "test",
        "--no-cache",
        "--baseline-file",
        "baseline/qa.json",
        "--update-baseline",
    ]);
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(f.read("baseline/qa.json"), text);

    // A fresh checkout: no store at all. Known failure only: --fail-on regression passes.
    std::fs::remove_dir_all(f.project.root().join(".promptdeck")).expect("remove the store");
    let known = f.run(&[
        "test",
        "--no-cache",
        "--baseline-file",
        "baseline/qa.json",
        "--fail-on",
        "regression",
    ]);
    assert_eq!(known.code, 0, "{known:?}");
    assert!(known.stdout.contains("FAIL  qa \"sum\""), "{known:?}");
    assert!(
        known.stdout.contains("(compared with baseline/qa.json)"),
        "{known:?}"
    );
    let any = f.run(&["test", "--no-cache", "--baseline-file", "baseline/qa.json"]);
    assert_eq!(any.code, 1, "{any:?}");

    // The known failure is fixed and the other case regresses.
    f.answers.set("2+2", "4");
    f.answers.set("capital of France", "Lyon");
    let swapped = f.run(&[
        "test",
        "--no-cache",
        "--baseline-file",
        "baseline/qa.json",
        "--fail-on",
        "regression",
    ]);
    assert_eq!(swapped.code, 1, "{swapped:?}");
    assert!(
        swapped
            .stdout
            .contains("REGRESSION qa \"capital\" [mock] pass -> fail: [-Paris.-]{+Lyon+}"),
        "{swapped:?}"
    );
    assert!(
        swapped
            .stdout
            .contains("FIXED      qa \"sum\" [mock] fail -> pass: [-five-]{+4+}"),
        "{swapped:?}"
    );
    // A removed case.
    f.project.write(
        "prompts/qa.tests.yaml",
        "- description: sum\n  vars: {q: 2+2}\n  assert:\n    - type: contains\n      value: '4'\n",
    );
    let removed = f.run(&["test", "--no-cache", "--baseline-file", "baseline/qa.json"]);
    assert!(
        removed
            .stdout
            .contains("REMOVED    qa \"capital\" [mock] was pass"),
        "{removed:?}"
    );
    // A broken baseline file is an input error with its position.
    f.project
        .write("baseline/bad.json", "{\"format\": 1,\n \"cases\": 3}");
    let bad = f.run(&["test", "--baseline-file", "baseline/bad.json"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains(
            "baseline/bad.json:2:11: error: not a promptdeck baseline file: invalid type"
        ),
        "{bad:?}"
    );
}

#[test]
fn reports_are_written() {
    let f = Fixture::new();
    f.answers.set("2+2", "<five> & \"six\"");
    let out = f.run(&[
        "test",
        "--no-cache",
        "--junit",
        "reports/junit.xml",
        "--json",
        "reports/results.json",
        "--markdown",
        "reports/summary.md",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    let junit = f.read("reports/junit.xml");
    assert!(junit.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"promptdeck\" tests=\"2\" failures=\"1\" errors=\"0\""), "{junit}");
    assert!(
        junit.contains("<testsuite name=\"qa [mock]\" tests=\"2\" failures=\"1\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"contains: expected output to contain &quot;4&quot;, got &quot;&lt;five&gt;"),
        "{junit}"
    );
    assert!(
        junit.contains("type=\"contains\">output: &lt;five&gt; &amp; &quot;six&quot;</failure>"),
        "{junit}"
    );
    let json: Value = serde_json::from_str(&f.read("reports/results.json")).expect("json report");
    assert_eq!(json["summary"]["cases"], 2);
    assert_eq!(json["summary"]["failed"], 1);
    let results = json["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["case"], "sum");
    assert_eq!(results[1]["verdict"], "fail");
    assert_eq!(results[1]["samples"][0]["output"], "<five> & \"six\"");
    assert_eq!(results[1]["samples"][0]["usage"]["output"], 2);
    let md = f.read("reports/summary.md");
    assert!(
        md.starts_with("## ❌ promptdeck test\n\n**2** cases: **1** passed, **1** failed"),
        "{md}"
    );
    assert!(md.contains("| qa | sum | mock | contains |"), "{md}");
}

#[test]
fn repeat_with_min_pass() {
    let f = Fixture::new();
    f.project.write(
        "prompts/qa.tests.yaml",
        "- description: sum\n  vars: {q: 2+2}\n  min-pass: 2\n  assert:\n    - type: contains\n      value: '4'\n",
    );
    // Every third request answers wrong: 2 of 3 samples pass.
    f.answers.flaky.store(true, Ordering::SeqCst);
    let two_of_three = f.run(&["test", "--no-cache", "--repeat", "3"]);
    assert_eq!(two_of_three.code, 0, "{two_of_three:?}");
    assert_eq!(f.server.count(), 3);
    f.project.write(
        "prompts/qa.tests.yaml",
        "- description: sum\n  vars: {q: 2+2}\n  min-pass: 3\n  assert:\n    - type: contains\n      value: '4'\n",
    );
    let all_three = f.run(&["test", "--no-cache", "--repeat", "3"]);
    assert_eq!(all_three.code, 1, "{all_three:?}");
    assert!(
        all_three
            .stdout
            .contains("FAIL  qa \"sum\" [mock] (2 of 3 samples passed, 3 needed)"),
        "{all_three:?}"
    );
    let zero = f.run(&["test", "--repeat", "0"]);
    assert_eq!(zero.code, 2, "{zero:?}");
}

#[test]
fn run_matrix_two_backends_two_samples_json() {
    let f = Fixture::new();
    let out = f.run(&[
        "run",
        "qa",
        "--all-cases",
        "--backend",
        "mock,mock2",
        "--samples",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let json: Value = serde_json::from_str(&out.stdout).expect("json on stdout");
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["interrupted"], false);
    let results = json["results"].as_array().expect("results");
    assert_eq!(results.len(), 8, "2 cases x 2 backends x 2 samples");
    let mut keys: Vec<(String, String, u64)> = results
        .iter()
        .map(|r| {
            (
                r["backend"].as_str().unwrap_or_default().to_owned(),
                r["case"].as_str().unwrap_or_default().to_owned(),
                r["sample"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    keys.sort();
    assert_eq!(keys[0], ("mock".to_owned(), "capital".to_owned(), 0));
    assert_eq!(keys[7], ("mock2".to_owned(), "sum".to_owned(), 1));
    assert!(results.iter().all(|r| r["passed"] == true), "{results:?}");
    assert_eq!(f.server.count(), 8);
    // Every result is in the store, one run per backend.
    let runs = f.run(&["runs", "--format", "json"]);
    let runs: Value = serde_json::from_str(&runs.stdout).expect("runs json");
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
    for run in json["runs"].as_array().expect("runs") {
        let shown = f.run(&["show", run["run"].as_str().expect("id"), "--format", "json"]);
        assert_eq!(shown.code, 0, "{shown:?}");
        let shown: Value = serde_json::from_str(&shown.stdout).expect("show json");
        assert_eq!(
            shown["results"].as_array().map(Vec::len),
            Some(4),
            "{shown}"
        );
    }

    // Text: one block per result; the single-case path still streams as before.
    let text = f.run(&["run", "qa", "--all-cases", "--samples", "2"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout
            .contains("=== qa \"capital\" [mock] sample 2 · PASS"),
        "{text:?}"
    );
    let single = f.run(&["run", "qa", "--case", "sum"]);
    assert_eq!(single.code, 0, "{single:?}");
    assert_eq!(single.stdout, "4\n");
    assert!(single.stderr.contains("case \"sum\": PASS"), "{single:?}");
}

#[test]
fn ctrl_c_keeps_finished_results_and_marks_the_run_interrupted() {
    let f = Fixture::new();
    f.project.write(
        "prompts/qa.tests.yaml",
        format!("{TESTS}- description: slow\n  vars: {{q: slow}}\n"),
    );
    let mut child = common::binary()
        .args(["test", "--no-cache"])
        .current_dir(f.project.root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until all three requests reached the server: two answered, one hanging.
    let start = std::time::Instant::now();
    while f.server.count() < 3 && start.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending a signal to our own child process by its id.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = bounded::wait_within(&mut child, LIMIT).expect("exits after Ctrl-C");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interrupted: 2 of 3 finished results kept; the run is marked interrupted"),
        "{stderr}"
    );
    let runs = f.run(&["runs", "--format", "json"]);
    let runs: Value = serde_json::from_str(&runs.stdout).expect("runs json");
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    let shown = f.run(&[
        "show",
        runs[0]["id"].as_str().expect("id"),
        "--format",
        "json",
    ]);
    let shown: Value = serde_json::from_str(&shown.stdout).expect("show json");
    assert_eq!(
        shown["results"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );
}
