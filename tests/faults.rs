//! Reliability under faults, through the real binary (issue #8, "Faults"; docs/reliability.md):
//!
//! - `promptdeck test` over 1,000 cases against fault-injecting loopback servers of the three
//!   provider formats: bounded time, every case ends with a result or an explicit error, the
//!   attempts each server saw match the retry policy, the store (read back with `runs` and
//!   `export`) holds exactly what the JSON and JUnit reports say, and the API key appears
//!   nowhere although a server echoes it.
//! - SIGKILL at random moments during `run`, `test`, `commit`, `import` and a workbench save:
//!   the store always opens, nothing reported as saved or finished is missing, nothing is
//!   half-written.
//! - A full disk (RLIMIT_FSIZE, which binds root too) and a read-only project directory (a
//!   read-only bind mount in a private mount namespace): a clear error and an intact store.
//!
//! CI runs the short versions. `PROMPTDECK_SOAK=1 cargo test --release --test faults --
//! --nocapture` runs the soak versions (more cases, seeds and kills) and prints the numbers that
//! docs/reliability.md records.

mod common;

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/fault_server.rs"]
mod fault_server;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Run, TempProject};
use fault_server::{Fault, FaultPlan, FaultServer, Policy, Provider, answer};

/// The key every API backend reads; it must never appear in anything promptdeck writes.
const KEY: &str = "sk-fault-secret-0123456789";
const KEY_VAR: &str = "PD_FAULT_KEY";

fn soak() -> bool {
    std::env::var_os("PROMPTDECK_SOAK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Runs the binary in `dir` with the key set, killed and failed after `limit`.
fn run_bounded(dir: &Path, args: &[&str], limit: Duration) -> Run {
    let mut command = common::binary();
    command
        .args(args)
        .current_dir(dir)
        .env(KEY_VAR, KEY)
        .env_remove("PROMPTDECK_SOAK");
    Run::from(bounded::output_within(command, limit))
}

const POLICY: Policy = Policy {
    retries: 3,
    max_retry_time_s: 60.0,
};

/// A project with one backend per provider, each on its own fault server, and one prompt with
/// `cases` cases whose answer must contain the case's marker.
fn fault_project(servers: &[FaultServer], cases: u32) -> TempProject {
    let mut config = String::from("[defaults]\nbackend = \"openai\"\n");
    for server in servers {
        let p = server.provider;
        config.push_str(&format!(
            "\n[backends.{kind}]\nkind = \"{kind}\"\nmodel = \"fault-model\"\nbase_url = \"{url}\"\n\
             api_key_env = \"{KEY_VAR}\"\nconcurrency = 32\nretries = {retries}\n\
             max_retry_time = {max}\nbackoff_base = 0.01\ntimeout = 1.5\nconnect_timeout = 5\n",
            kind = p.kind(),
            url = p.base_url(server),
            retries = POLICY.retries,
            max = POLICY.max_retry_time_s,
        ));
    }
    let project = TempProject::with_config(&config);
    project.write(
        "prompts/fault.prompty",
        "---\nname: fault\nmodel:\n  parameters:\n    max_tokens: 16\n---\nuser:\nAnswer {{ q }}\n",
    );
    let mut tests = String::new();
    for case in 0..cases {
        tests.push_str(&format!(
            "- description: c{case:06}\n  vars: {{q: q-{case:06}}}\n  assert:\n    - type: contains\n      value: '{}'\n",
            answer(case)
        ));
    }
    project.write("prompts/fault.tests.yaml", tests);
    project
}

/// What one fault run found, for the summary printed and recorded in docs/reliability.md.
#[derive(Default)]
struct Tally {
    mix: BTreeMap<Fault, usize>,
    /// How cases ended: "answer" or the fault of their last attempt.
    outcomes: BTreeMap<String, usize>,
    cases: usize,
    attempts: usize,
    elapsed: Duration,
}

/// One `promptdeck test` over `cases` cases on every provider's fault server, checked case by
/// case; returns the tally.
fn fault_round(cases: u32, seed: u64, limit: Duration) -> Tally {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let servers: Vec<FaultServer> = Provider::ALL
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let plan = FaultPlan {
                seed: seed.wrapping_add(i as u64 * 7919),
            };
            runtime.block_on(FaultServer::start(p, plan))
        })
        .collect();
    let project = fault_project(&servers, cases);
    let started = Instant::now();
    let out = run_bounded(
        project.root(),
        &[
            "test",
            "--no-cache",
            "--backend",
            "openai,anthropic,gemini",
            "--json",
            "out/results.json",
            "--junit",
            "out/junit.xml",
        ],
        limit,
    );
    let elapsed = started.elapsed();
    let read = |path: &str| std::fs::read_to_string(project.root().join(path)).expect(path);
    let report: Value = serde_json::from_str(&read("out/results.json")).expect("JSON report");
    let junit = read("out/junit.xml");

    let mut tally = Tally {
        elapsed,
        ..Tally::default()
    };
    let results = report["results"].as_array().expect("results");
    assert_eq!(
        results.len(),
        cases as usize * servers.len(),
        "every case on every backend is reported once; stderr:\n{}",
        out.stderr
    );
    let mut errors = 0;
    let mut reported: HashMap<(String, String), &Value> = HashMap::new();
    for r in results {
        let key = (
            r["backend"].as_str().unwrap_or_default().to_owned(),
            r["case"].as_str().unwrap_or_default().to_owned(),
        );
        assert!(reported.insert(key, r).is_none(), "reported twice: {r}");
    }
    for server in &servers {
        let backend = server.provider.kind();
        let seen = server.attempts();
        assert_eq!(*server.unknown.lock().expect("count"), 0);
        for case in 0..cases {
            let name = format!("c{case:06}");
            let result = *reported
                .get(&(backend.to_owned(), name.clone()))
                .unwrap_or_else(|| panic!("{backend} {name} is missing from the report"));
            let expected = server.plan.expect(case, POLICY);
            let served = seen.get(&case).map_or(&[][..], Vec::as_slice);
            let sample = &result["samples"][0];
            let context = format!(
                "{backend} {name}: served {served:?}, expected {expected:?}, reported {result}"
            );
            assert_eq!(served.len(), expected.attempts, "attempts: {context}");
            assert_eq!(served.last(), Some(&expected.last), "{context}");
            match expected.error {
                None => {
                    assert_eq!(result["verdict"], "pass", "{context}");
                    assert_eq!(sample["output"], answer(case).as_str(), "{context}");
                    assert!(sample["error"].is_null(), "{context}");
                    *tally.outcomes.entry("answer".into()).or_default() += 1;
                }
                Some(piece) => {
                    errors += 1;
                    assert_eq!(result["verdict"], "error", "{context}");
                    let error = sample["error"].as_str().unwrap_or_default();
                    assert!(error.contains(piece), "{context}");
                    *tally
                        .outcomes
                        .entry(format!("error: {}", expected.last.name()))
                        .or_default() += 1;
                }
            }
            tally.attempts += served.len();
        }
        for (fault, n) in server.mix() {
            *tally.mix.entry(fault).or_default() += n;
        }
    }
    tally.cases = results.len();
    assert_eq!(out.code, if errors > 0 { 1 } else { 0 }, "{out:?}");
    assert_eq!(report["summary"]["errors"], errors, "{}", report["summary"]);
    assert_eq!(
        report["summary"]["passed"],
        tally.cases - errors,
        "{}",
        report["summary"]
    );

    // JUnit agrees: every case once, the errors as errors.
    assert_eq!(junit.matches("<testcase ").count(), tally.cases);
    assert_eq!(junit.matches("<error ").count(), errors, "{junit:.2000}");
    assert!(junit.contains(&format!("tests=\"{}\"", tally.cases)));

    // The store holds exactly what was reported: one complete run per backend, one result per
    // case with the reported output and error.
    let runs = run_bounded(
        project.root(),
        &["runs", "--format", "json"],
        Duration::from_secs(60),
    );
    assert_eq!(runs.code, 0, "{runs:?}");
    let runs: Value = serde_json::from_str(&runs.stdout).expect("runs JSON");
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), servers.len(), "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "complete"), "{runs:?}");
    let export = run_bounded(
        project.root(),
        &["export", "--out", "out/export.jsonl"],
        Duration::from_secs(60),
    );
    assert_eq!(export.code, 0, "{export:?}");
    let export = read("out/export.jsonl");
    let backend_of: HashMap<String, String> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "run")
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["backend"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut stored = 0;
    let mut keys = std::collections::HashSet::new();
    for line in export.lines() {
        let v: Value = serde_json::from_str(line).expect("export line is JSON");
        if v["kind"] != "result" {
            continue;
        }
        stored += 1;
        let backend = backend_of
            .get(v["run"].as_str().unwrap_or_default())
            .expect("result of an exported run");
        let r = &v["result"];
        let name = r["case_name"].as_str().unwrap_or_default().to_owned();
        assert!(
            keys.insert((backend.clone(), name.clone(), r["sample"].clone())),
            "stored twice: {backend} {name}"
        );
        let reported = reported
            .get(&(backend.clone(), name.clone()))
            .unwrap_or_else(|| panic!("stored but not reported: {backend} {name}"));
        let sample = &reported["samples"][0];
        assert_eq!(r["output"], sample["output"], "{backend} {name}");
        assert_eq!(r["error"], sample["error"], "{backend} {name}");
        assert_eq!(r["passed"], sample["passed"], "{backend} {name}");
    }
    assert_eq!(stored, tally.cases, "the store holds every reported result");

    // The key reached the servers (one echoed it in error pages) but nothing promptdeck wrote.
    for (what, text) in [
        ("stdout", out.stdout.as_str()),
        ("stderr", out.stderr.as_str()),
        ("JSON report", &read("out/results.json")),
        ("JUnit report", &junit),
        ("export", &export),
    ] {
        assert!(!text.contains(KEY), "the API key leaked into the {what}");
    }
    assert!(
        tally.mix.get(&Fault::Status500).copied().unwrap_or(0) > 0,
        "the key-echoing fault was served"
    );
    tally
}

fn print_tally(title: &str, tally: &Tally) {
    println!(
        "{title}: {} cases, {} attempts, {:.1} s",
        tally.cases,
        tally.attempts,
        tally.elapsed.as_secs_f64()
    );
    println!("  fault mix (attempts served):");
    for (fault, n) in &tally.mix {
        println!("    {:<24} {n}", fault.name());
    }
    println!("  outcomes (cases):");
    for (outcome, n) in &tally.outcomes {
        println!("    {outcome:<32} {n}");
    }
}

#[test]
fn test_over_1000_cases_with_injected_faults_loses_nothing() {
    let (cases, seeds): (u32, Vec<u64>) = if soak() {
        (2000, vec![1, 2, 3, 4, 5])
    } else {
        (1000, vec![0x5EED])
    };
    for seed in seeds {
        let tally = fault_round(cases, seed, Duration::from_secs(150));
        print_tally(&format!("seed {seed:#x}"), &tally);
        // Every kind of fault occurred, so each path was exercised.
        for (fault, _) in Fault::MIX {
            assert!(tally.mix.contains_key(&fault), "{fault:?} never served");
        }
    }
}
