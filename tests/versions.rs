//! Version history through the real binary: commit, history, show, restore, labels, diff, runs,
//! export and import; content addressing, restore safety, the lock and format errors.

mod common;

use common::TempProject;

fn project() -> TempProject {
    let project = TempProject::new();
    project.write(
        "prompts/cot/math.prompty",
        "---\nname: math\n---\n{% include '_partials/rules.jinja' %}\nuser:\n{{ q }}\n",
    );
    project.write(
        "prompts/cot/math.tests.yaml",
        "- description: apples\n  vars: {q: 3 + 4?}\n  assert: [{type: contains, value: '7'}]\n",
    );
    project.write("prompts/_partials/rules.jinja", "system:\nBe exact.\n");
    project.write("prompts/other.prompty", "hello\n");
    project
}

/// Runs with a fixed author so outputs are stable.
fn run(project: &TempProject, args: &[&str]) -> common::Run {
    let output = common::binary()
        .args(args)
        .env("PROMPTDECK_AUTHOR", "alice")
        .current_dir(project.root())
        .output()
        .unwrap();
    common::Run::from(output)
}

fn ok(project: &TempProject, args: &[&str]) -> String {
    let r = run(project, args);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    r.stdout
}

fn history_ids(project: &TempProject, prompt: &str) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&ok(project, &["history", prompt, "--format", "json"])).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn commit_is_content_addressed_and_includes_partials() {
    let p = project();
    let first = ok(&p, &["commit", "cot/math", "-m", "first"]);
    assert!(first.starts_with("committed cot/math version "), "{first}");
    assert!(
        first.contains(
            "prompts/_partials/rules.jinja, prompts/cot/math.prompty, prompts/cot/math.tests.yaml"
        ),
        "{first}"
    );
    let again = ok(&p, &["commit", "prompts/cot/math.prompty"]);
    assert!(
        again.starts_with("cot/math is unchanged: already version "),
        "{again}"
    );
    assert_eq!(history_ids(&p, "cot/math").len(), 1);

    // Changing only the partial makes a new version of every prompt that includes it.
    p.write(
        "prompts/_partials/rules.jinja",
        "system:\nBe exact and brief.\n",
    );
    ok(&p, &["commit", "cot/math", "-m", "brief"]);
    let ids = history_ids(&p, "cot/math");
    assert_eq!(ids.len(), 2);

    let json: serde_json::Value =
        serde_json::from_str(&ok(&p, &["history", "cot/math", "--format", "json"])).unwrap();
    assert_eq!(json[0]["message"], "brief");
    assert_eq!(json[0]["author"], "alice");
    assert_eq!(json[0]["parent"], json[1]["id"]);
    let text = ok(&p, &["history", "cot/math"]);
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.lines().next().unwrap().ends_with("alice  brief"),
        "{text}"
    );
}

#[test]
fn labels_and_their_log() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    p.write(
        "prompts/cot/math.prompty",
        "---\nname: math\n---\nuser:\n{{ q }}!\n",
    );
    ok(&p, &["commit", "cot/math", "-m", "v2"]);
    let ids = history_ids(&p, "cot/math");
    let out = ok(&p, &["label", "set", "prod", &ids[1][..10]]);
    assert_eq!(out, format!("cot/math@prod -> {}\n", &ids[1][..7]));
    let out = ok(&p, &["label", "set", "prod", "cot/math@latest"]);
    assert_eq!(
        out,
        format!("cot/math@prod -> {} (was {})\n", &ids[0][..7], &ids[1][..7])
    );
    let list = ok(&p, &["label", "list"]);
    assert!(
        list.starts_with(&format!("cot/math@prod  {}", &ids[0][..7])),
        "{list}"
    );
    let log = ok(&p, &["label", "log", "prod", "cot/math"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].ends_with(&format!(
            "cot/math@prod  (new) -> {}  by alice",
            &ids[1][..7]
        )),
        "{log}"
    );
    assert!(
        lines[1].ends_with(&format!(
            "cot/math@prod  {} -> {}  by alice",
            &ids[1][..7],
            &ids[0][..7]
        )),
        "{log}"
    );
    let history = ok(&p, &["history", "cot/math"]);
    assert!(
        history.lines().next().unwrap().contains("(prod)"),
        "{history}"
    );

    let bad = run(&p, &["label", "set", "bad name", "cot/math@latest"]);
    assert_eq!(bad.code, 2);
    let missing = run(&p, &["show", "cot/math@staging"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("cot/math has no label `staging` (its labels: prod)"),
        "{}",
        missing.stderr
    );
}

#[test]
fn show_prints_the_files_of_a_version() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "first"]);
    let out = ok(&p, &["show", "cot/math@latest"]);
    assert!(
        out.contains("==> prompts/cot/math.prompty <==\n---\nname: math"),
        "{out}"
    );
    assert!(
        out.contains("==> prompts/_partials/rules.jinja <==\nsystem:\nBe exact.\n"),
        "{out}"
    );
    assert!(out.contains("message first"));
    let id = &history_ids(&p, "cot/math")[0];
    assert_eq!(ok(&p, &["show", &id[..7]]), out);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&p, &["show", &id[..12], "--format", "json"])).unwrap();
    assert_eq!(json["id"], id.as_str());
    let none = run(&p, &["show", "0000000"]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("no version matches `0000000`"),
        "{}",
        none.stderr
    );
}

#[test]
fn restore_refuses_to_lose_uncommitted_work() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    let v1 = std::fs::read_to_string(p.root().join("prompts/cot/math.prompty")).unwrap();
    p.write(
        "prompts/cot/math.prompty",
        "---\nname: math\n---\nuser:\nv2 {{ q }}\n",
    );
    ok(&p, &["commit", "cot/math", "-m", "v2"]);
    let ids = history_ids(&p, "cot/math");

    p.write(
        "prompts/cot/math.prompty",
        "---\nname: math\n---\nuser:\nunsaved {{ q }}\n",
    );
    let refused = run(&p, &["restore", &ids[1][..8]]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("has uncommitted changes"),
        "{}",
        refused.stderr
    );
    assert!(
        std::fs::read_to_string(p.root().join("prompts/cot/math.prompty"))
            .unwrap()
            .contains("unsaved")
    );

    let forced = ok(&p, &["restore", &ids[1][..8], "--force"]);
    assert_eq!(
        forced,
        format!("restored cot/math to version {} (3 files)\n", &ids[1][..7])
    );
    assert_eq!(
        std::fs::read_to_string(p.root().join("prompts/cot/math.prompty")).unwrap(),
        v1
    );
    // The working tree is now a committed version, so moving between versions needs no --force.
    let back = ok(&p, &["restore", "cot/math@latest"]);
    assert!(back.starts_with("restored cot/math"), "{back}");
    assert!(ok(&p, &["restore", "cot/math@latest"]).contains("is already at version"));
}

#[test]
fn diff_versions_and_working_tree() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    ok(&p, &["label", "set", "prod", "cot/math@latest"]);
    p.write("prompts/cot/math.prompty", "---\nname: math\n---\n{% include '_partials/rules.jinja' %}\nuser:\nPlease solve: {{ q }}\n");
    let plain = ok(
        &p,
        &["diff", "cot/math@prod", "working", "--color", "never"],
    );
    insta::assert_snapshot!(
        "diff_working_plain",
        plain.replace(&history_ids(&p, "cot/math")[0][..7], "<id>")
    );
    let colored = ok(
        &p,
        &["diff", "cot/math@prod", "working", "--color", "always"],
    );
    assert!(
        colored.contains("\u{1b}[7;32mPlease solve: \u{1b}[0m") || colored.contains("\u{1b}["),
        "{colored:?}"
    );
    // NO_COLOR and a pipe both mean plain text under --color auto.
    let auto = ok(&p, &["diff", "cot/math@prod", "working"]);
    assert!(!auto.contains('\u{1b}'));

    ok(&p, &["commit", "cot/math", "-m", "v2"]);
    let json: serde_json::Value = serde_json::from_str(&ok(
        &p,
        &[
            "diff",
            "cot/math@prod",
            "cot/math@latest",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(json[0]["new_path"], "prompts/cot/math.prompty");
    assert_eq!(json[0]["status"], "modified");
    assert_eq!(json[0]["inserted"], 1);
    let same = run(&p, &["diff", "cot/math@latest", "working"]);
    assert_eq!(same.stdout, "");
    assert!(same.stderr.starts_with("no differences"), "{}", same.stderr);
    let both = run(&p, &["diff", "working", "working"]);
    assert_eq!(both.code, 2);
}

#[test]
fn export_import_round_trip_is_exact_and_idempotent() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    ok(&p, &["commit", "other", "-m", "other v1"]);
    ok(&p, &["label", "set", "baseline", "cot/math@latest"]);
    p.write(
        "prompts/cot/math.prompty",
        "---\nname: math\n---\nuser:\n{{ q }}?\n",
    );
    ok(&p, &["commit", "cot/math", "-m", "v2"]);
    ok(&p, &["label", "set", "baseline", "cot/math@latest"]);
    let export = p.root().join("export.jsonl");
    ok(&p, &["export", "--out", export.to_str().unwrap()]);
    let first = std::fs::read(&export).unwrap();
    assert_eq!(ok(&p, &["export"]).into_bytes(), first);

    let q = TempProject::new();
    let out = ok(&q, &["import", export.to_str().unwrap()]);
    assert_eq!(
        out,
        "imported 3 versions, 1 label, 2 label moves, 0 runs, 0 results\n"
    );
    let again = ok(&q, &["import", export.to_str().unwrap()]);
    assert_eq!(
        again,
        "imported 0 versions, 0 labels, 0 label moves, 0 runs, 0 results\n"
    );
    assert_eq!(ok(&q, &["export"]).into_bytes(), first);
}

#[test]
fn malformed_imports_are_rejected_whole_with_the_line() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    let export = ok(&p, &["export"]);
    let mut lines: Vec<&str> = export.lines().collect();
    lines.push("{\"kind\":\"version\",\"id\":\"not-a-hash\"}");
    let bad = p.write("bad.jsonl", lines.join("\n") + "\n");

    let q = TempProject::new();
    let r = run(&q, &["import", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains(&format!("bad.jsonl:{}:1: error:", lines.len())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was imported"), "{}", r.stderr);
    assert_eq!(
        ok(&q, &["export"]),
        "{\"kind\":\"promptdeck-export\",\"format\":1}\n"
    );
}

#[test]
fn a_store_in_use_is_a_clear_error() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    let store = promptdeck::store::SledStore::open(p.root().join(".promptdeck/store")).unwrap();
    let r = run(&p, &["history", "cot/math"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains(&format!("is in use by process {}", std::process::id())),
        "{}",
        r.stderr
    );
    drop(store);
    assert_eq!(run(&p, &["history", "cot/math"]).code, 0);
}

#[test]
fn a_store_from_a_newer_promptdeck_is_refused() {
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    {
        let db = sled::open(p.root().join(".promptdeck/store/sled")).unwrap();
        db.insert(b"meta/format", b"99".as_slice()).unwrap();
        db.flush().unwrap();
    }
    let r = run(&p, &["history", "cot/math"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("99"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"));
}

#[test]
fn runs_list_is_empty_before_any_run() {
    let p = project();
    let r = run(&p, &["runs"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "no runs yet\n");
    assert_eq!(ok(&p, &["runs", "--format", "json"]), "[]\n");
}

#[test]
fn runs_show_and_pass_rates_from_stored_results() {
    use promptdeck::store::{
        CaseResult, Message, RunMeta, RunStatus, SledStore, Store, TokenUsage,
    };
    let p = project();
    ok(&p, &["commit", "cot/math", "-m", "v1"]);
    let version = history_ids(&p, "cot/math")[0].clone();
    let run_id = {
        let store = SledStore::open(p.root().join(".promptdeck/store")).unwrap();
        let run = store
            .begin_run(RunMeta {
                version: version.clone(),
                prompt: "cot/math".to_owned(),
                backend: "local".to_owned(),
                model: "SmolLM2-135M-Instruct".to_owned(),
                parameters: serde_json::json!({"temperature": 0}),
            })
            .unwrap();
        for (case, passed) in [(1u32, true), (2, true), (3, false), (4, true)] {
            let result = CaseResult {
                case,
                sample: 0,
                case_name: format!("case {case}"),
                messages: vec![Message {
                    role: "user".to_owned(),
                    content: "3 + 4?".to_owned(),
                }],
                output: format!("Answer: {}", if passed { 7 } else { 6 }),
                finish_reason: Some("stop".to_owned()),
                latency_ms: 100 + u64::from(case),
                ttft_ms: Some(10),
                usage: TokenUsage {
                    input: 12,
                    output: 3,
                },
                cost: 0.0,
                error: None,
                cached: false,
                assertions: Vec::new(),
                passed: Some(passed),
                technique: None,
            };
            store.record_result(run, &result).unwrap();
        }
        store.finish_run(run, RunStatus::Complete).unwrap();
        run.to_string()
    };
    let history = ok(&p, &["history", "cot/math"]);
    assert!(history.trim_end().ends_with("pass 3/4 (75%)"), "{history}");
    let runs = ok(&p, &["runs", "cot/math"]);
    assert!(
        runs.contains("local/SmolLM2-135M-Instruct  complete  4 results, 3/4 passed, $0.000000"),
        "{runs}"
    );
    let shown = ok(&p, &["show", &run_id[..12]]);
    assert!(
        shown.starts_with(&format!(
            "run {run_id} of cot/math version {}",
            &version[..7]
        )),
        "{shown}"
    );
    assert!(
        shown.contains("--- case 3 \"case 3\" sample 0: FAIL  103 ms  12+3 tokens"),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&p, &["runs", "--format", "json"])).unwrap();
    assert_eq!(json[0]["passed"], 3);
    // A run id names its version: labels and restores accept it.
    assert!(ok(&p, &["label", "set", "baseline", &run_id]).starts_with("cot/math@baseline -> "));
}

#[test]
fn bench_store_runs_small() {
    let r = common::binary()
        .args([
            "bench",
            "store",
            "--versions",
            "20",
            "--outputs",
            "300",
            "--prompts",
            "2",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{out}");
    assert!(
        out.contains("store benchmark: 20 versions over 2 prompts, 300 outputs in 3 runs"),
        "{out}"
    );
    assert!(
        out.contains("history of one prompt (10 versions): median"),
        "{out}"
    );
    assert!(out.contains("raw payload (JSONL export)"), "{out}");
}

#[test]
fn restore_removes_a_tests_file_the_version_did_not_have() {
    let p = TempProject::new();
    p.write("prompts/solo.prompty", "---\nname: solo\n---\nuser:\nhi\n");
    ok(&p, &["commit", "solo", "-m", "no tests yet"]);
    p.write(
        "prompts/solo.tests.yaml",
        "- description: greets\n  assert: [{type: icontains, value: hello}]\n",
    );
    ok(&p, &["commit", "solo", "-m", "with tests"]);
    let ids = history_ids(&p, "solo");
    let out = ok(&p, &["restore", &ids[1][..9]]);
    assert!(
        out.starts_with("removed prompts/solo.tests.yaml (the version has no tests file)"),
        "{out}"
    );
    assert!(!p.root().join("prompts/solo.tests.yaml").exists());
    assert_eq!(ok(&p, &["restore", "solo@latest"]).lines().count(), 1);
    assert!(p.root().join("prompts/solo.tests.yaml").exists());
}
