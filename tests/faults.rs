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
#[path = "common/rng.rs"]
mod rng;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::tmux::Session as Pane;
use common::{Run, TempProject};
use fault_server::{Fault, FaultPlan, FaultServer, Policy, Provider, answer};
use rng::Rng;

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
             max_retry_time = {max}\nbackoff_base = 0.01\ntimeout = 3\nconnect_timeout = 5\n",
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
    let runtime = common::runtime(2);
    let servers: Vec<FaultServer> = Provider::ALL
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let plan = FaultPlan::faulty(seed.wrapping_add(i as u64 * 7919));
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
                    // The client says how many attempts it made, and it is what the server
                    // saw (an idle timeout has no message to carry the count).
                    let note = format!("(gave up after {} attempts)", served.len());
                    let timed_out = expected.last == Fault::StallBeforeText;
                    if served.len() > 1 && !timed_out {
                        assert!(error.contains(&note), "client's count: {context}");
                    } else if served.len() == 1 {
                        assert!(!error.contains("gave up after"), "{context}");
                    }
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

// ---------------------------------------------------------------------------------------------
// SIGKILL at random moments.

/// The seed of the kill moments: `PROMPTDECK_KILL_SEED` to replay a failure, else the clock.
fn kill_rng(what: &str) -> Rng {
    let seed = std::env::var("PROMPTDECK_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{what}: kill seed {seed} (replay with PROMPTDECK_KILL_SEED={seed})");
    Rng::new(seed)
}

/// Kills per command: CI's short version adds up to 100; the soak runs 100 of each.
fn kills(ci: usize) -> usize {
    if soak() { 100 } else { ci }
}

/// A child whose output goes to files, so what it printed before SIGKILL can be read.
struct Killable {
    child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Killable {
    fn spawn(dir: &Path, args: &[&str], logs: &Path) -> Killable {
        let stdout = logs.join("stdout");
        let stderr = logs.join("stderr");
        let file = |p: &Path| std::fs::File::create(p).expect("log file");
        let child = common::binary()
            .args(args)
            .current_dir(dir)
            .env(KEY_VAR, KEY)
            .stdin(std::process::Stdio::null())
            .stdout(file(&stdout))
            .stderr(file(&stderr))
            .spawn()
            .expect("spawn promptdeck");
        Killable {
            child,
            stdout,
            stderr,
        }
    }

    /// SIGKILL after `delay` unless it exited first; `true` when it was killed.
    fn kill_after(mut self, delay: Duration) -> (bool, String, String) {
        let deadline = Instant::now() + delay;
        let mut exited = false;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("poll child").is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        if !exited {
            // SIGKILL: no destructor, flush or signal handler of the child runs.
            let _ = self.child.kill();
        }
        let status = bounded::wait_within(&mut self.child, Duration::from_secs(30));
        assert!(status.is_some(), "a killed child did not go away");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        (!exited, read(&self.stdout), read(&self.stderr))
    }

    /// Runs to completion; how long it took.
    fn time(mut self) -> (Duration, String, String) {
        let started = Instant::now();
        let status = bounded::wait_within(&mut self.child, Duration::from_secs(120));
        let took = started.elapsed();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (out, err) = (read(&self.stdout), read(&self.stderr));
        // `test` exits 1 (every case fails its assertion by design); `run` reports and exits 0.
        let code = status.and_then(|s| s.code());
        assert!(
            matches!(code, Some(0 | 1)),
            "a full run: {code:?}\n{out}\n{err}"
        );
        (took, out, err)
    }
}

/// The store as the binary shows it: it must open (exit 0) after any kill. Lines of `export`.
fn exported(dir: &Path) -> Vec<Value> {
    let out = run_bounded(dir, &["export"], Duration::from_secs(60));
    assert_eq!(out.code, 0, "the store must open after a kill: {out:?}");
    let runs = run_bounded(dir, &["runs", "--format", "json"], Duration::from_secs(60));
    assert_eq!(runs.code, 0, "the store must open after a kill: {runs:?}");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every export line is whole JSON"))
        .collect()
}

fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

/// A project for `run`/`test` kills: `cases` cases on a healthy loopback server, each failing
/// its assertion on purpose so every finished case prints a `FAIL` line (what "reported as
/// finished" means on a non-terminal).
fn kill_project(server: &FaultServer, cases: u32) -> TempProject {
    let config = format!(
        "[defaults]\nbackend = \"openai\"\n\n[backends.openai]\nkind = \"openai\"\nmodel = \"m\"\n\
         base_url = \"{}\"\napi_key_env = \"{KEY_VAR}\"\nconcurrency = 4\nretries = 0\ntimeout = 10\n",
        Provider::OpenAi.base_url(server)
    );
    let project = TempProject::with_config(&config);
    project.write(
        "prompts/kt.prompty",
        "---\nname: kt\n---\nuser:\nAnswer {{ q }}\n",
    );
    let mut tests = String::new();
    for case in 0..cases {
        tests.push_str(&format!(
            "- description: c{case:06}\n  vars: {{q: q-{case:06}}}\n  assert:\n    - type: contains\n      value: never-in-the-answer\n"
        ));
    }
    project.write("prompts/kt.tests.yaml", tests);
    project
}

/// Checks a store after `run`/`test` was killed: every result is whole (the server's full
/// answer), and every case the command reported as finished is in the run it started.
fn check_after_run_kill(
    dir: &Path,
    runs_before: &std::collections::HashSet<String>,
    killed: bool,
    stdout: &str,
    stderr: &str,
    context: &str,
) -> usize {
    let lines = exported(dir);
    let mut results_by_run: HashMap<String, Vec<String>> = HashMap::new();
    for r in of_kind(&lines, "result") {
        let case = r["result"]["case_name"].as_str().unwrap_or_default();
        let index: u32 = case[1..].parse().expect("case name");
        assert_eq!(
            r["result"]["output"],
            answer(index).as_str(),
            "a half-written result ({context}): {r}"
        );
        assert!(r["result"]["error"].is_null(), "{context}: {r}");
        results_by_run
            .entry(r["run"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(case.to_owned());
    }
    let new_runs: Vec<&Value> = of_kind(&lines, "run")
        .into_iter()
        .filter(|r| !runs_before.contains(r["id"].as_str().unwrap_or_default()))
        .collect();
    // Progress lines on stderr (`FAIL kt "c000012" [openai]: ...`) and, for `run`, the result
    // blocks on stdout (`=== kt "c000012" [openai] sample 1 · FAIL ...`).
    let finished: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL kt \""))
        .chain(stdout.lines().filter_map(|l| l.strip_prefix("=== kt \"")))
        .filter_map(|l| l.split('"').next())
        .collect();
    let counted = stderr
        .lines()
        .filter_map(|l| l.strip_prefix('['))
        .filter_map(|l| l.split('/').next())
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    if finished.is_empty() && counted == 0 {
        assert!(new_runs.len() <= 1, "{context}: {new_runs:?}");
    } else {
        assert_eq!(new_runs.len(), 1, "{context}: {new_runs:?}\n{stderr}");
    }
    if let Some(run) = new_runs.first() {
        let id = run["id"].as_str().unwrap_or_default();
        let stored = results_by_run.get(id).cloned().unwrap_or_default();
        for case in &finished {
            assert!(
                stored.iter().any(|s| s == case),
                "{case} was reported finished but is not stored ({context})\n{stderr}"
            );
        }
        assert!(
            stored.len() >= counted,
            "{counted} reported done, {} stored ({context})",
            stored.len()
        );
        let status = run["status"].as_str().unwrap_or_default();
        if killed {
            // A run left `running` by a dead process reads as interrupted.
            assert!(
                status == "interrupted" || status == "complete",
                "{context}: {run}"
            );
        }
    }
    finished.len()
}

fn kill_during_matrix(command: &str, n: usize) -> usize {
    let runtime = common::runtime(1);
    let server = runtime.block_on(FaultServer::start(Provider::OpenAi, FaultPlan::healthy()));
    let project = kill_project(&server, 60);
    let logs = tempfile::tempdir().expect("logs");
    let args: Vec<&str> = match command {
        "test" => vec!["test", "--no-cache", "--json", "out/report.json"],
        _ => vec!["run", "kt", "--all-cases", "--no-cache"],
    };
    let mut rng = kill_rng(command);
    // One whole run first: how long a run takes is the window the kills are spread over.
    let (full, _, _) = Killable::spawn(project.root(), &args, logs.path()).time();
    let window = full.mul_f64(1.3);
    let mut killed_count = 0;
    let mut reported_before_kill = 0;
    for i in 0..n {
        let before: std::collections::HashSet<String> = of_kind(&exported(project.root()), "run")
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let delay = rng.moment(window);
        let (killed, stdout, stderr) =
            Killable::spawn(project.root(), &args, logs.path()).kill_after(delay);
        killed_count += usize::from(killed);
        let context = format!("{command} kill {i} after {delay:?} (killed: {killed})");
        let reported =
            check_after_run_kill(project.root(), &before, killed, &stdout, &stderr, &context);
        if killed {
            reported_before_kill += reported;
        }
        if command == "test" {
            // A report is written whole or not at all.
            if let Ok(text) = std::fs::read_to_string(project.root().join("out/report.json")) {
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("a half-written report ({context}): {e}"));
            }
        }
    }
    println!(
        "{command}: {n} attempts over a {window:?} window, {killed_count} killed mid-way, \
         {reported_before_kill} results reported finished by killed processes, all found stored"
    );
    killed_count
}

#[test]
fn kill_9_during_test_keeps_every_reported_result() {
    let killed = kill_during_matrix("test", kills(22));
    assert!(killed > 0, "no kill landed while the command ran");
}

#[test]
fn kill_9_during_run_keeps_every_reported_result() {
    let killed = kill_during_matrix("run", kills(22));
    assert!(killed > 0, "no kill landed while the command ran");
}

#[test]
fn kill_9_during_commit_keeps_every_reported_version() {
    let project = TempProject::with_config("[defaults]\nbackend = \"local\"\n");
    let text =
        |rev: usize| format!("---\nname: kc\n---\nuser:\nSay {{{{ x }}}}.\n{{# rev {rev} #}}\n");
    project.write("prompts/kc.prompty", text(0));
    project.write("prompts/kc.tests.yaml", "- vars: {x: hi}\n");
    let logs = tempfile::tempdir().expect("logs");
    let mut rng = kill_rng("commit");
    let started = Instant::now();
    let first = project.run(&["commit", "kc", "-m", "rev 0"]);
    assert_eq!(first.code, 0, "{first:?}");
    let window = started.elapsed().mul_f64(1.3);
    let n = kills(22);
    let mut reported = Vec::new();
    let mut killed_count = 0;
    for rev in 1..=n {
        project.write("prompts/kc.prompty", text(rev));
        let delay = rng.moment(window);
        let message = format!("rev {rev}");
        let (killed, stdout, _) = Killable::spawn(
            project.root(),
            &["commit", "kc", "-m", &message],
            logs.path(),
        )
        .kill_after(delay);
        killed_count += usize::from(killed);
        if let Some(short) = stdout
            .strip_prefix("committed kc version ")
            .and_then(|r| r.split(' ').next())
        {
            reported.push((rev, short.to_owned()));
        }
        let lines = exported(project.root());
        let versions = of_kind(&lines, "version");
        // Every stored version is whole: its prompt file ends with its own revision marker.
        for v in &versions {
            let files = v["files"].to_string();
            assert!(
                files.contains("#}\\n\""),
                "a half-written version (kill {rev} after {delay:?}): {v}"
            );
        }
        for (r, short) in &reported {
            let shown = run_bounded(
                project.root(),
                &["show", short, "--format", "json"],
                Duration::from_secs(30),
            );
            assert_eq!(
                shown.code, 0,
                "version {short} (rev {r}) was reported committed: {shown:?}"
            );
            assert!(shown.stdout.contains(&format!("rev {r} #}}")), "{shown:?}");
        }
    }
    println!(
        "commit: {n} attempts, {killed_count} killed mid-way, {} reported committed",
        reported.len()
    );
    assert!(killed_count > 0, "no kill landed while the command ran");
}

#[test]
fn kill_9_during_import_is_all_or_nothing() {
    // The file to import: a store with a version, a run and 200 results.
    let runtime = common::runtime(1);
    let server = runtime.block_on(FaultServer::start(Provider::OpenAi, FaultPlan::healthy()));
    let source = kill_project(&server, 200);
    let full = run_bounded(
        source.root(),
        &["test", "--no-cache"],
        Duration::from_secs(120),
    );
    assert_eq!(full.code, 1, "{full:?}");
    let export = run_bounded(
        source.root(),
        &["export", "--out", "backup.jsonl"],
        Duration::from_secs(60),
    );
    assert_eq!(export.code, 0, "{export:?}");
    let file = source.root().join("backup.jsonl");
    let file = file.to_str().expect("UTF-8 temp path");
    let count = |lines: &[Value]| {
        (
            of_kind(lines, "version").len(),
            of_kind(lines, "run").len(),
            of_kind(lines, "result").len(),
        )
    };
    let source_counts = count(&exported(source.root()));
    assert_eq!(source_counts.2, 200);

    let target = TempProject::with_config("[defaults]\nbackend = \"local\"\n");
    let logs = tempfile::tempdir().expect("logs");
    let started = Instant::now();
    let first = target.run(&["import", file]);
    assert_eq!(first.code, 0, "{first:?}");
    let window = started.elapsed().mul_f64(1.3);
    let mut rng = kill_rng("import");
    let n = kills(22);
    let mut killed_count = 0;
    for i in 0..n {
        // Into a fresh store each time: a kill may also land while the store is created.
        std::fs::remove_dir_all(target.root().join(".promptdeck")).expect("remove the store");
        let delay = rng.moment(window);
        let (killed, stdout, _) =
            Killable::spawn(target.root(), &["import", file], logs.path()).kill_after(delay);
        killed_count += usize::from(killed);
        let counts = count(&exported(target.root()));
        let context = format!("import kill {i} after {delay:?}: {counts:?}");
        if stdout.starts_with("imported") {
            assert_eq!(counts, source_counts, "reported imported: {context}");
        } else {
            assert!(
                counts == (0, 0, 0) || counts == source_counts,
                "half an import: {context}"
            );
        }
    }
    println!("import: {n} attempts over a {window:?} window, {killed_count} killed mid-way");
    assert!(killed_count > 0, "no kill landed while the command ran");
}

/// This test's own tmux server (`-L`), kept alive between panes by an idle session: a server
/// whose last session ends exits, and a new session started meanwhile fails.
fn tmux_socket() -> String {
    format!("pd-faults-{}", std::process::id())
}

fn tmux_command() -> std::process::Command {
    common::tmux::command(Some(&tmux_socket()))
}

struct TmuxServer;

impl TmuxServer {
    fn start() -> TmuxServer {
        let status = tmux_command()
            .args(["new-session", "-d", "-s", "keeper", "sleep 3600"])
            .status()
            .expect("tmux is needed for the workbench kill test (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        TmuxServer
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = tmux_command().arg("kill-server").status();
    }
}

/// The workbench in a tmux pane, with the binary as the pane's process (so the pane's PID is
/// promptdeck's, to SIGKILL).
fn start_pane(root: &Path, home: &Path) -> Pane {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "pd-faults-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let shell = format!(
        "exec env NO_COLOR=1 HOME='{}' '{}'",
        home.display(),
        env!("CARGO_BIN_EXE_promptdeck")
    );
    let mut pane = Pane::start(Some(&tmux_socket()), name, root, &shell, (120, 40));
    pane.poll = Duration::from_millis(20);
    pane
}

/// Opens the workbench, inserts `rev N ` before "Say" and presses Ctrl-S.
fn tui_edit_and_save(project: &TempProject, home: &Path, rev: usize) -> (Pane, Instant) {
    let pane = start_pane(project.root(), home);
    pane.wait_for(&["Say hello"], Duration::from_secs(30));
    pane.keys(&["Tab", "C-f"]);
    pane.type_text("Say");
    pane.keys(&["Enter"]);
    pane.type_text(&format!("rev {rev} "));
    pane.wait_for(&[&format!("rev {rev} Say")], Duration::from_secs(10));
    // No pause after this key: the kill moment is measured from it.
    let pressed = Instant::now();
    pane.tmux(&["send-keys", "-t", &pane.name, "C-s"]);
    (pane, pressed)
}

#[test]
fn kill_9_during_a_workbench_save_keeps_what_it_reported() {
    let project = TempProject::with_config("[defaults]\nbackend = \"local\"\n");
    let prompt = "---\nname: ask\n---\nuser:\nSay hello to {{ name }}.\n";
    project.write("prompts/ask.prompty", prompt);
    project.write("prompts/ask.tests.yaml", "- vars: {name: you}\n");
    let home = project.root().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let file = project.root().join("prompts/ask.prompty");
    let read = || std::fs::read_to_string(&file).expect("read the prompt");
    let _tmux = TmuxServer::start();

    // A save that is not killed: how long one takes is the window the kills are spread over.
    let (pane, pressed) = tui_edit_and_save(&project, &home, 0);
    pane.wait_for(&["saved; committed version"], Duration::from_secs(30));
    let window = pressed.elapsed().mul_f64(1.5);
    drop(pane);
    assert!(read().contains("rev 0 Say"));

    let mut rng = kill_rng("workbench save");
    let n = kills(12);
    let (mut reported, mut killed_count) = (0, 0);
    for rev in 1..=n {
        // From the same text each time: a line that grew with every save would wrap on the
        // screen and hide the marker the test waits for.
        project.write("prompts/ask.prompty", prompt);
        let before = read();
        let after = before.replacen("Say", &format!("rev {rev} Say"), 1);
        let (pane, pressed) = tui_edit_and_save(&project, &home, rev);
        let delay = rng.moment(window);
        std::thread::sleep(delay.saturating_sub(pressed.elapsed()));
        // What the screen said before the kill is what the user was told.
        let screen = pane.screen();
        let pid: i32 = pane.display("#{pane_pid}").parse().expect("the pane's PID");
        // SAFETY: signalling the promptdeck process this test started in its tmux pane.
        let sent = unsafe { libc::kill(pid, libc::SIGKILL) };
        killed_count += usize::from(sent == 0);
        drop(pane);
        // The pane's process is gone before its store is checked.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let context = format!("save {rev} killed after {delay:?}");
        let now = read();
        assert!(
            now == before || now == after,
            "a half-written prompt file ({context}):\n{now}"
        );
        let lines = exported(project.root());
        let saved = screen
            .lines()
            .find_map(|l| l.split("saved; committed version ").nth(1))
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(short) = saved {
            reported += 1;
            assert_eq!(now, after, "reported saved: {context}");
            let shown = run_bounded(
                project.root(),
                &["show", short, "--format", "json"],
                Duration::from_secs(30),
            );
            assert_eq!(shown.code, 0, "reported committed ({context}): {shown:?}");
            assert!(
                shown.stdout.contains(&format!("rev {rev} Say")),
                "{shown:?}"
            );
        }
        for v in of_kind(&lines, "version") {
            let files = v["files"].to_string();
            assert!(
                files.contains("{{ name }}.\\n"),
                "a half-written version: {v}"
            );
        }
    }
    println!(
        "workbench save: {n} kills over a {window:?} window, {reported} saves reported before the kill"
    );
    assert!(killed_count == n, "every kill reached the workbench");
}

// ---------------------------------------------------------------------------------------------
// A full disk and a read-only project directory.

/// `args` with every file write past `limit` bytes failing with EFBIG, as on a full disk.
/// RLIMIT_FSIZE binds root too (unlike file permissions); SIGXFSZ is ignored so the write
/// fails instead of killing the process.
fn run_with_file_limit(dir: &Path, args: &[&str], limit: u64) -> Run {
    use std::os::unix::process::CommandExt;
    let mut command = common::binary();
    command.args(args).current_dir(dir).env(KEY_VAR, KEY);
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Run::from(bounded::output_within(command, Duration::from_secs(60)))
}

/// Everything `before` held is still in `after` (ids of versions and runs, results per run).
fn assert_nothing_lost(before: &[Value], after: &[Value], context: &str) {
    let ids = |lines: &[Value], kind: &str| -> std::collections::HashSet<String> {
        of_kind(lines, kind)
            .iter()
            .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for kind in ["version", "run"] {
        let missing: Vec<String> = ids(before, kind)
            .difference(&ids(after, kind))
            .cloned()
            .collect();
        assert!(missing.is_empty(), "{kind}s lost ({context}): {missing:?}");
    }
    let results = |lines: &[Value]| -> std::collections::HashSet<String> {
        of_kind(lines, "result")
            .iter()
            .map(|v| format!("{} {}", v["run"], v["result"]["case_name"]))
            .collect()
    };
    let lost = results(before).difference(&results(after)).count();
    assert_eq!(lost, 0, "results lost ({context})");
}

#[test]
fn full_disk_is_a_clear_error_and_the_store_stays_whole() {
    let runtime = common::runtime(1);
    let server = runtime.block_on(FaultServer::start(Provider::OpenAi, FaultPlan::healthy()));
    let project = kill_project(&server, 20);
    let root = project.root();
    let first = run_bounded(root, &["test", "--no-cache"], Duration::from_secs(60));
    assert_eq!(first.code, 1, "{first:?}");
    // An export of another store to import.
    let other = kill_project(&server, 60);
    let prompt = other.root().join("prompts/kt.prompty");
    std::fs::write(&prompt, "---\nname: kt\n---\nuser:\nReply {{ q }}\n").expect("edit");
    let full = run_bounded(
        other.root(),
        &["test", "--no-cache"],
        Duration::from_secs(60),
    );
    assert_eq!(full.code, 1, "{full:?}");
    let backup = other.root().join("backup.jsonl");
    let export = run_bounded(
        other.root(),
        &["export", "--out", backup.to_str().expect("UTF-8 path")],
        Duration::from_secs(60),
    );
    assert_eq!(export.code, 0, "{export:?}");

    // Long prompts make every result a few KiB, so commands cross sled's 512 KiB segments and
    // a limit at the store's current size fails them midway, not only when the store opens.
    let pad = "lorem ipsum ".repeat(300);
    let prompt_text = |rev: usize| {
        format!("---\nname: kt\n---\nuser:\n{pad}\nAnswer {{{{ q }}}}\n{{# rev {rev} #}}\n")
    };
    project.write("prompts/kt.prompty", prompt_text(0));
    let db = root.join(".promptdeck/store/sled/db");
    // Past the store's size by these offsets (`None`: no room from the first byte).
    let offsets: &[Option<u64>] = &[
        None,
        Some(0),
        Some(16 << 10),
        Some(128 << 10),
        Some(1 << 30),
    ];
    let rounds = if soak() { 40 } else { 6 };
    let (mut refused, mut rev, mut commands) = (0, 0, 0);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..rounds {
        for command in ["commit", "test", "import"] {
            let size = std::fs::metadata(&db).map_or(0, |m| m.len());
            let limit = offsets[(round * 3 + commands) % offsets.len()].map_or(0, |o| size + o);
            rev += 1;
            commands += 1;
            let before = exported(root);
            let runs_before = of_kind(&before, "run")
                .iter()
                .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            let out = match command {
                "commit" => {
                    project.write("prompts/kt.prompty", prompt_text(rev));
                    run_with_file_limit(root, &["commit", "kt"], limit)
                }
                "test" => run_with_file_limit(
                    root,
                    &["test", "--no-cache", "--json", "out/report.json"],
                    limit,
                ),
                _ => run_with_file_limit(
                    root,
                    &["import", backup.to_str().expect("UTF-8 path")],
                    limit,
                ),
            };
            let context = format!("{command} under a {limit}-byte file limit: {out:?}");
            println!(
                "  {command:<6} limit {limit:>8}: exit {} {}",
                out.code,
                out.stderr
                    .lines()
                    .find(|l| l.starts_with("error"))
                    .unwrap_or("")
            );
            assert!(!out.stderr.contains("panicked"), "{context}");
            let outcome = match out.code {
                2 => "refused",
                _ if out.stderr.contains("storing results failed") => "stopped",
                _ => "done",
            };
            *tally.entry(format!("{command} {outcome}")).or_default() += 1;
            if out.code == 2 {
                refused += 1;
                assert!(
                    out.stderr.contains("cannot write")
                        && (out.stderr.contains("file size limit")
                            || out.stderr.contains("disk is full")
                            || out.stderr.contains("File too large")),
                    "a clear error: {context}"
                );
            } else {
                assert!(
                    out.code == 0 || (out.code == 1 && command == "test"),
                    "{context}"
                );
            }
            let after = exported(root);
            assert_nothing_lost(&before, &after, &context);
            check_after_run_kill(root, &runs_before, true, &out.stdout, &out.stderr, &context);
            if let Some(short) = out
                .stdout
                .strip_prefix("committed kt version ")
                .and_then(|r| r.split(' ').next())
            {
                let shown = run_bounded(root, &["show", short], Duration::from_secs(30));
                assert!(
                    shown.stdout.contains(&format!("rev {rev} #}}")),
                    "{context}"
                );
            }
            if command == "import" && out.code == 0 {
                // An import that reports success holds the whole file.
                assert_nothing_lost(&exported(other.root()), &after, &context);
            }
            if let Ok(text) = std::fs::read_to_string(root.join("out/report.json")) {
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("a half-written report: {e} ({context})"));
            }
        }
    }
    println!("full disk: {commands} commands, {refused} refused with a clear error: {tally:?}");
    assert!(refused > 0, "no limit was small enough to matter");
}

/// Whether `unshare` can give this test a private user and mount namespace, where it may mount
/// a read-only bind or a small tmpfs without privileges. Without one the test fails, saying
/// why, unless `PROMPTDECK_NO_NAMESPACES=1` opts out on purpose (which it prints).
fn namespaces_available(test: &str) -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["--map-root-user", "--mount", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var_os("PROMPTDECK_NO_NAMESPACES").is_some() {
        println!("SKIPPED {test}: PROMPTDECK_NO_NAMESPACES is set and unshare(1) cannot run here");
        return false;
    }
    panic!(
        "{test} needs `unshare --map-root-user --mount` (util-linux) to mount a read-only or full \
         file system without privileges: enable user namespaces (sysctl \
         kernel.unprivileged_userns_clone=1) or run the container with them; \
         PROMPTDECK_NO_NAMESPACES=1 skips this test on purpose"
    );
}

/// Runs `script` with `sh` as root of a private user and mount namespace, in `dir`, with the
/// binary as `$PD_BIN`; mounts made there vanish with it.
fn in_namespace(dir: &Path, script: &str) -> Run {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--map-root-user", "--mount", "sh", "-c", script])
        .current_dir(dir)
        .env("PD_BIN", env!("CARGO_BIN_EXE_promptdeck"))
        .env("NO_COLOR", "1")
        .env(KEY_VAR, KEY)
        .env_remove("PROMPTDECK_PROJECT");
    Run::from(bounded::output_within(command, Duration::from_secs(120)))
}

/// Makes the project directory a read-only bind mount of itself (which binds root too), checks
/// that it is, then runs the binary with the given arguments.
const READ_ONLY: &str = "set -e
mount --bind \"$PWD\" \"$PWD\"
mount -o remount,bind,ro \"$PWD\"
cd \"$PWD\"
if touch .write-probe 2>/dev/null; then echo 'the project is still writable' >&2; exit 99; fi
set +e
\"$PD_BIN\" \"$@\"";

#[test]
fn read_only_project_is_a_clear_error_and_changes_nothing() {
    if !namespaces_available("read_only_project_is_a_clear_error_and_changes_nothing") {
        return;
    }
    let runtime = common::runtime(1);
    let server = runtime.block_on(FaultServer::start(Provider::OpenAi, FaultPlan::healthy()));
    let project = kill_project(&server, 10);
    let root = project.root();
    let first = run_bounded(root, &["test", "--no-cache"], Duration::from_secs(60));
    assert_eq!(first.code, 1, "{first:?}");
    let backup = run_bounded(
        root,
        &["export", "--out", "backup.jsonl"],
        Duration::from_secs(60),
    );
    assert_eq!(backup.code, 0, "{backup:?}");
    project.write(
        "prompts/kt.prompty",
        "---\nname: kt\n---\nuser:\nReply {{ q }}\n",
    );
    let before = exported(root);
    let requests = server.attempts().values().map(Vec::len).sum::<usize>();
    for args in [
        &["test", "--no-cache", "--json", "report.json"][..],
        &["run", "kt", "--all-cases", "--no-cache"],
        &["commit", "kt"],
        &["import", "backup.jsonl"],
        &["runs"],
    ] {
        let script = format!("{READ_ONLY} {}", args.join(" "));
        let out = in_namespace(root, &script);
        let context = format!("{args:?} in a read-only project: {out:?}");
        assert_eq!(out.code, 2, "{context}");
        assert!(
            out.stderr
                .contains("cannot write the store (.promptdeck/): the project directory is on a read-only file system"),
            "a clear error: {context}"
        );
        assert!(!out.stderr.contains("panicked"), "{context}");
        println!(
            "  read-only {:<7} exit {}: {}",
            args[0],
            out.code,
            out.stderr.trim()
        );
    }
    let after = exported(root);
    assert_eq!(before, after, "a read-only project is left as it was");
    assert_eq!(
        server.attempts().values().map(Vec::len).sum::<usize>(),
        requests,
        "nothing was sent that could not be stored"
    );
}

#[test]
fn full_disk_never_leaves_half_a_report() {
    if !namespaces_available("full_disk_never_leaves_half_a_report") {
        return;
    }
    let runtime = common::runtime(1);
    let server = runtime.block_on(FaultServer::start(Provider::OpenAi, FaultPlan::healthy()));
    // 200 cases: a JSON report of about 150 KiB, on a 64 KiB tmpfs that already holds the
    // previous (complete) report.
    let project = kill_project(&server, 200);
    let root = project.root();
    std::fs::create_dir_all(root.join("out")).expect("mount point");
    let script = "set -e
mount -t tmpfs -o size=64k tmpfs \"$PWD/out\"
cd \"$PWD\"
echo '{\"previous\": true}' > out/report.json
set +e
\"$PD_BIN\" test --no-cache --json out/report.json
echo \"exit $?\"
cp out/report.json report-after.json
ls -A out > listing.txt";
    let out = in_namespace(root, script);
    let context = format!("{out:?}");
    assert!(out.stdout.contains("exit 2"), "{context}");
    assert!(
        out.stderr.contains("error: cannot write ")
            && out
                .stderr
                .contains("/out/report.json: No space left on device"),
        "a clear error: {context}"
    );
    let report = std::fs::read_to_string(root.join("report-after.json")).expect("copied report");
    assert_eq!(
        report, "{\"previous\": true}\n",
        "the previous report is kept whole, not replaced by half a new one"
    );
    let listing = std::fs::read_to_string(root.join("listing.txt")).expect("listing");
    assert!(
        !listing.contains("promptdeck-tmp"),
        "no temporary file is left behind: {listing}"
    );
    // The results themselves were stored before the report failed.
    let lines = exported(root);
    assert_eq!(of_kind(&lines, "result").len(), 200);
}
