//! `promptdeck compare` end to end, against two loopback OpenAI-compatible servers that answer
//! a tiny sentiment suite differently: the metrics in the JSON equal hand-computed values,
//! `--reuse` makes no new requests, `--perturb` runs perturbed cases and reports the drop, the
//! HTML report is self-contained, and the terminal table (NO_COLOR) is an insta snapshot with
//! run ids and timings filtered out.

mod common;

#[path = "common/bounded.rs"]
mod bounded;
#[allow(dead_code)]
#[path = "backends/server.rs"]
mod server;

use std::time::Duration;

use serde_json::{Value, json};

use common::{Run, TempProject};
use server::{Recorded, Server};

const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// An OpenAI streaming answer carrying `text`, with token counts (10 in, 5 out).
fn sse_answer(text: &str) -> server::Reply {
    let chunk = |delta: Value, finish: Option<&str>| {
        let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut body = chunk(json!({"role": "assistant", "content": ""}), None);
    body.push_str(&chunk(json!({"content": text}), None));
    body.push_str(&chunk(json!({}), Some("stop")));
    let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}});
    body.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    server::sse(&body, 64)
}

/// The text of the last message of a chat request.
fn last_message(req: &Recorded) -> String {
    req.json()["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

const PROMPT: &str = "---
model:
  parameters: {temperature: 0, max_tokens: 16}
sample: {text: x}
---
Sentiment of: {{ text }}
";

/// good (weight 2) and fine expect positive, bad expects negative.
const TESTS: &str = "- description: good
  vars: {text: I love it}
  metadata: {weight: 2}
  assert:
    - {type: equals, value: positive}
- description: fine
  vars: {text: Fine thing}
  assert:
    - {type: equals, value: positive}
- description: bad
  vars: {text: awful}
  assert:
    - {type: equals, value: negative}
";

struct Fixture {
    project: TempProject,
    /// `smart`: positive when the text holds `love` or `Fine` (case-sensitive), else negative.
    smart: Server,
    /// `grumpy`: always negative.
    grumpy: Server,
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = common::runtime(2);
        let smart = runtime.block_on(Server::start(|_, req: &Recorded| {
            let text = last_message(req);
            let positive = text.contains("love") || text.contains("Fine");
            sse_answer(if positive { "positive" } else { "negative" })
        }));
        let grumpy = runtime.block_on(Server::start(|_, _req: &Recorded| sse_answer("negative")));
        let mut config = String::from("[defaults]\nbackend = \"smart\"\n");
        for (name, server) in [("smart", &smart), ("grumpy", &grumpy)] {
            config.push_str(&format!(
                "\n[backends.{name}]\nkind = \"openai\"\nmodel = \"m-{name}\"\nbase_url = \"{}/v1\"\nretries = 0\n",
                server.url()
            ));
        }
        // The smart model again with hot sampling: a second sampling configuration.
        config.push_str(&format!(
            "\n[backends.hot]\nkind = \"openai\"\nmodel = \"m-smart\"\nbase_url = \"{}/v1\"\nretries = 0\nsampling = {{ temperature = 0.9, top_p = 0.5 }}\n",
            smart.url()
        ));
        let project = TempProject::with_config(&config);
        project.write("prompts/sent.prompty", PROMPT);
        project.write("prompts/sent.tests.yaml", TESTS);
        Fixture {
            project,
            smart,
            grumpy,
            _runtime: runtime,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut command = common::binary();
        command
            .args(args)
            .current_dir(self.project.root())
            .env("NO_COLOR", "1");
        Run::from(bounded::output_within(command, COMMAND_LIMIT))
    }

    fn json(&self, args: &[&str]) -> Value {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
    }
}

fn backend<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["backend"] == name))
        .unwrap_or_else(|| panic!("no backend {name}: {report:#}"))
}

fn close(value: &Value, expected: f64) {
    let v = value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"));
    assert!((v - expected).abs() < 1e-9, "{v} != {expected}");
}

#[test]
fn metrics_equal_hand_computed_values() {
    let f = Fixture::new();
    let report = f.json(&[
        "compare",
        "--backend",
        "smart,grumpy",
        "--format",
        "json",
        "--no-cache",
    ]);
    assert_eq!(f.smart.count(), 3);
    assert_eq!(f.grumpy.count(), 3);
    let names: Vec<&str> = report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backend"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["smart", "grumpy"]);
    // smart passes all three; grumpy only `bad` (weight 1 of 4).
    let smart = backend(&report, "smart");
    let grumpy = backend(&report, "grumpy");
    close(&smart["accuracy"]["pass_rate"], 1.0);
    close(&grumpy["accuracy"]["pass_rate"], 0.25);
    close(&grumpy["accuracy"]["per_prompt"][0]["pass_rate"], 0.25);
    for b in [smart, grumpy] {
        assert_eq!(b["samples"], 3, "{b:#}");
        assert!(b["speed"]["latency_p50_ms"].is_number(), "{b:#}");
        // The loopback models are not in the price table and have no configured prices.
        assert!(b["cost"]["total_usd"].is_null(), "{b:#}");
        assert_eq!(b["cost"]["tokens_in"], 30, "{b:#}");
        assert_eq!(b["cost"]["tokens_out"], 15, "{b:#}");
    }
    // Two stored runs, one per backend, and the report names them.
    assert_eq!(report["run_ids"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["samples"], 6);
}

#[test]
fn reuse_makes_no_new_requests() {
    let f = Fixture::new();
    let args = [
        "compare",
        "--backend",
        "smart,grumpy",
        "--format",
        "json",
        "--no-cache",
    ];
    let first = f.json(&args);
    assert_eq!((f.smart.count(), f.grumpy.count()), (3, 3));
    let mut reuse = args.to_vec();
    reuse.push("--reuse");
    let run = f.run(&reuse);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("reusing 2 stored runs"),
        "{}",
        run.stderr
    );
    let second: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((f.smart.count(), f.grumpy.count()), (3, 3));
    assert_eq!(first["run_ids"], second["run_ids"]);
    assert_eq!(
        first["backends"][0]["accuracy"],
        second["backends"][0]["accuracy"]
    );

    // Asking for more samples than stored runs hold runs again (only what is missing).
    reuse.extend(["--samples", "2"]);
    let third = f.json(&reuse);
    assert_eq!((f.smart.count(), f.grumpy.count()), (9, 9));
    assert_eq!(third["samples"], 12);
}

#[test]
fn perturb_runs_perturbed_cases_and_reports_the_drop() {
    let f = Fixture::new();
    let report = f.json(&[
        "compare",
        "--backend",
        "smart,grumpy",
        "--perturb=case-upper",
        "--format",
        "json",
        "--no-cache",
    ]);
    // 3 original + 3 upper-cased cases on each backend.
    assert_eq!((f.smart.count(), f.grumpy.count()), (6, 6));
    assert_eq!(report["perturbations"], json!(["case-upper"]));
    assert_eq!(backend(&report, "smart")["samples"], 6);
    // smart: originals all pass; upper-cased, only `bad` (weight 1 of 4) passes: drop 0.75.
    let smart = backend(&report, "smart");
    close(&smart["robustness"]["perturbation_drop"], 0.75);
    // The pass rate is over the original inputs only.
    close(&smart["accuracy"]["pass_rate"], 1.0);
    // grumpy answers the same whatever the input: no drop.
    close(
        &backend(&report, "grumpy")["robustness"]["perturbation_drop"],
        0.0,
    );

    // Stored with a recognisable case name.
    let runs = f.json(&["runs", "sent", "--format", "json"]);
    let id = runs[0]["id"].as_str().expect("a run id").to_owned();
    let shown = f.json(&["show", &id, "--format", "json"]);
    let names: Vec<&str> = shown["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["case_name"].as_str())
        .collect();
    assert!(names.contains(&"good ~case-upper"), "{names:?}");

    // `promptdeck test` with that version as its baseline sees only the tests file's cases.
    let label = f.run(&["label", "set", "baseline", "sent@latest"]);
    assert_eq!(label.code, 0, "{label:?}");
    let test = f.run(&["test", "sent", "--backend", "smart", "--no-cache"]);
    assert_eq!(test.code, 0, "{test:?}");
    assert!(!test.stdout.contains('~'), "{}", test.stdout);
    assert!(test.stdout.contains("ok 3 cases"), "{}", test.stdout);
}

#[test]
fn html_report_is_self_contained() {
    let f = Fixture::new();
    let run = f.run(&[
        "compare",
        "--backend",
        "smart,grumpy",
        "--html",
        "out/report.html",
        "--json",
        "out/report.json",
        "--no-cache",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let html = std::fs::read_to_string(f.project.root().join("out/report.html")).unwrap();
    assert!(!html.contains("<script"), "no JavaScript");
    // The SVG namespace is an identifier, not a resource; any other URL would be fetched.
    let without_namespace = html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
    assert!(
        !without_namespace.contains("http://") && !without_namespace.contains("https://"),
        "no external assets"
    );
    assert_eq!(html.matches(r#"class="radar-backend""#).count(), 2);
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(f.project.root().join("out/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["run_ids"].as_array().map(Vec::len), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    let run = f.run(&["compare", "--backend", "smart,nope"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no backend `nope`"), "{}", run.stderr);
    let run = f.run(&["compare", "--backend", "smart", "--perturb=typoz"]);
    assert_eq!(run.code, 2, "{run:?}");
    f.project.write("prompts/bare.prompty", PROMPT);
    let run = f.run(&["compare", "bare", "--backend", "smart"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("no prompt has test cases"),
        "{}",
        run.stderr
    );
    assert_eq!(f.smart.count(), 0);
}

/// The table with NO_COLOR: `*` marks the best values; timings and run ids vary and are
/// filtered out.
#[test]
fn terminal_table_snapshot() {
    let f = Fixture::new();
    let run = f.run(&["compare", "--backend", "smart,grumpy", "--no-cache"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains('\x1b'), "no colour with NO_COLOR");
    let ids = regex::Regex::new(r"[0-9a-f]{16}").expect("regex");
    let timing =
        regex::Regex::new(r"^(  (?:latency p\d+|TTFT p\d+|output tokens/s))\s.*$").expect("regex");
    let table: String = run
        .stdout
        .lines()
        .map(|l| {
            let l = ids.replace_all(l, "[RUN]").into_owned();
            timing.replace(&l, "$1 [TIMING]").into_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("table", table);

    // --color always highlights the best values instead of marking them.
    let run = f.run(&[
        "compare",
        "--backend",
        "smart,grumpy",
        "--reuse",
        "--color",
        "always",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\x1b[1;32m100.0%\x1b[0m"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(" *"), "{}", run.stdout);
}

/// A backend's `sampling` table is laid over the prompt's parameters, so one model at two
/// sampling configurations is two columns.
#[test]
fn backend_sampling_reaches_the_requests() {
    let f = Fixture::new();
    let report = f.json(&[
        "compare",
        "--backend",
        "smart,hot",
        "--format",
        "json",
        "--no-cache",
    ]);
    assert_eq!(f.smart.count(), 6);
    let mut temperatures: Vec<String> = (0..6)
        .map(|i| {
            let body = f.smart.request(i).json();
            format!("{} {}", body["temperature"], body["top_p"])
        })
        .collect();
    temperatures.sort();
    assert_eq!(
        temperatures,
        [
            "0.0 null", "0.0 null", "0.0 null", "0.9 0.5", "0.9 0.5", "0.9 0.5"
        ]
    );
    // The stored run records the parameters it ran with.
    let runs = f.json(&["runs", "--format", "json"]);
    let hot = runs
        .as_array()
        .and_then(|r| r.iter().find(|r| r["backend"] == "hot"))
        .unwrap_or_else(|| panic!("{runs:#}"));
    let id = hot["id"].as_str().expect("a run id").to_owned();
    let shown = f.json(&["show", &id, "--format", "json"]);
    let text = shown.to_string();
    assert!(text.contains(r#""temperature":0.9"#), "{shown:#}");
    assert_eq!(report["backends"][1]["backend"], "hot");
}

/// What the workbench's Models view reads: `compare_stored`, the stored-runs half of
/// `--reuse`, alone. With nothing stored every (prompt, backend) pair is missing; a prompt
/// whose files do not load is skipped with its reason rather than failing the library.
#[test]
fn stored_comparison_names_missing_runs_and_skips_broken_prompts() {
    let project = TempProject::new();
    project.write(
        "prompts/ok.prompty",
        "---\nname: ok\n---\nuser:\nSay yes.\n",
    );
    project.write(
        "prompts/ok.tests.yaml",
        "- description: yes\n  assert:\n    - type: icontains\n      value: yes\n",
    );
    project.write(
        "prompts/broken.prompty",
        "---\nname: [unclosed\n---\nuser:\nhi\n",
    );
    project.write("prompts/bare.prompty", "---\nname: bare\n---\nuser:\nhi\n");
    let loaded = promptdeck::project::Project::discover(project.root(), None).expect("project");
    let store = promptdeck::store::MemoryStore::new();
    let backends = ["local".to_owned(), "other".to_owned()];
    let stored = promptdeck::cli::compare::compare_stored(&loaded, &store, &[], &backends, 1)
        .expect("compare");
    assert_eq!(stored.report.samples, 0);
    assert_eq!(
        stored.missing,
        [
            ("ok".to_owned(), "local".to_owned()),
            ("ok".to_owned(), "other".to_owned())
        ]
    );
    let skipped: Vec<&str> = stored.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(skipped, ["bare", "broken"], "{:?}", stored.skipped);
    assert_eq!(stored.skipped[0].1, "no test cases");
    // The report still has a column per backend, so the view can name them.
    assert_eq!(stored.report.backends.len(), 2);
}
