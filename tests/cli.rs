//! The CLI surface through the real binary: init, render, check, completions, exit codes, and
//! the exact text of error messages.

mod common;

use common::{TempProject, binary, run_in};

const MATH: &str = "---
name: math
inputs:
  question: {type: string}
  n: {type: integer, default: 2}
sample:
  question: What is 2 + 2?
---
system:
Solve step by step. Use {{ n }} steps.

user:
{{ question }}
";

const MATH_TESTS: &str = "- description: apples
  vars:
    question: If I have 3 apples and buy 4 more, how many do I have?
  assert:
    - type: contains
      value: \"7\"
- description: pears
  vars:
    question: 10 pears minus 3?
    n: 4
";

fn math_project() -> TempProject {
    let project = TempProject::new();
    project.write("prompts/cot/math.prompty", MATH);
    project.write("prompts/cot/math.tests.yaml", MATH_TESTS);
    project
}

#[test]
fn version_and_help() {
    let out = binary().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("promptdeck 0."));
    for command in [
        "init",
        "render",
        "check",
        "completions",
        "run",
        "test",
        "compare",
        "import-promptfoo",
        "tui",
        "bench",
    ] {
        let out = binary().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{command} --help has examples"
        );
    }
}

#[test]
fn bare_promptdeck_opens_the_workbench_only_in_a_terminal() {
    // Without a terminal (as here: pipes), the workbench refuses with a usage error rather
    // than drawing into a pipe; tests/tui.rs drives it in a real terminal.
    let project = math_project();
    for args in [&[][..], &["tui"][..]] {
        let run = project.run(args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = binary().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let project = math_project();
    let run = project.run(&["render", "cot/math", "--case", "x", "--case-index", "1"]);
    assert_eq!(run.code, 2);
}

#[test]
fn init_creates_a_project_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_in(dir.path(), &["init", "proj"]);
    assert_eq!(first.code, 0, "{first:?}");
    insta::assert_snapshot!("init_first", first.stdout);
    let second = run_in(dir.path(), &["init", "proj"]);
    assert_eq!(second.code, 0);
    assert!(
        second
            .stdout
            .ends_with("is already a promptdeck project; nothing to do.\n"),
        "{second:?}"
    );
    let project = dir.path().join("proj");
    let check = run_in(&project, &["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert_eq!(
        check.stdout,
        "checked 1 prompt, 2 cases: 0 errors, 0 warnings\n"
    );
    let render = run_in(&project, &["render", "hello"]);
    assert_eq!(render.code, 0);
    assert!(
        render
            .stdout
            .contains("What is the boiling point of water at sea level?")
    );
}

#[test]
fn outside_a_project_suggests_init() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), &["check"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no promptdeck.toml found in"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("run `promptdeck init`"),
        "{}",
        run.stderr
    );
    let run = run_in(dir.path(), &["--project", "nowhere", "check"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("has no promptdeck.toml; run `promptdeck init"),
        "{}",
        run.stderr
    );
}

#[test]
fn project_root_is_found_from_a_subdirectory_and_by_flag() {
    let project = math_project();
    let sub = project.root().join("prompts/cot");
    let run = run_in(&sub, &["render", "cot/math"]);
    assert_eq!(run.code, 0, "{run:?}");
    let elsewhere = tempfile::tempdir().unwrap();
    let root = project.root().to_string_lossy().into_owned();
    let run = run_in(
        elsewhere.path(),
        &["--project", &root, "render", "cot/math"],
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn render_text_sample_case_and_vars() {
    let project = math_project();
    let run = project.run(&["render", "cot/math"]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!("render_sample_text", run.stdout);

    let by_name = project.run(&["render", "cot/math", "--case", "pears"]);
    let by_index = project.run(&["render", "prompts/cot/math.prompty", "--case-index", "2"]);
    assert_eq!(by_name.stdout, by_index.stdout);
    assert!(by_name.stdout.contains("Use 4 steps."));

    let run = project.run(&[
        "render",
        "cot/math",
        "--var",
        "question=Why?",
        "--var",
        "n=9",
    ]);
    assert!(
        run.stdout.contains("Use 9 steps.") && run.stdout.contains("Why?"),
        "{run:?}"
    );
    let run = project.run(&["render", "cot/math", "--var", "n=many"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("input `n` is declared as integer, so its value must be JSON"),
        "{}",
        run.stderr
    );
}

#[test]
fn render_json_shape() {
    let project = TempProject::with_config(
        "[defaults]\nbackend = \"local\"\n[defaults.parameters]\nmax_tokens = 100\n[backends.gpt]\nkind = \"openai\"\nmodel = \"gpt-4o-mini\"\n",
    );
    project.write(
        "prompts/p.prompty",
        "---\nname: p\nmodel:\n  backend: gpt\n  parameters:\n    temperature: 0.3\n    stop: [\"\\n\\n\"]\n---\nsystem:\nBe brief.\nuser:\nHi\n",
    );
    let run = project.run(&["render", "p", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "parameters": {"temperature": 0.3, "max_tokens": 100, "stop": ["\n\n"]},
            "backend": "gpt"
        })
    );
}

#[test]
fn unknown_case_lists_the_cases() {
    let project = math_project();
    let run = project.run(&["render", "cot/math", "--case", "bananas"]);
    assert_eq!(run.code, 2);
    insta::assert_snapshot!("unknown_case", run.stderr);
    let run = project.run(&["render", "cot/meth"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no prompt `cot/meth`")
            && run.stderr.contains("did you mean `cot/math`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn strict_undefined_names_variable_location_and_case() {
    let project = math_project();
    project.write(
        "prompts/cot/math.prompty",
        MATH.replace("{{ question }}", "{{ questoin }}"),
    );
    let run = project.run(&["render", "cot/math", "--case", "apples"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "prompts/cot/math.prompty:13:4: error: undefined variable `questoin` (case \"apples\")\n"
    );
    let run = project.run(&["check"]);
    assert_eq!(run.code, 2);
    insta::assert_snapshot!("check_undefined_every_case", run.stderr);
}

#[test]
fn check_reports_every_problem_in_every_file() {
    let project = TempProject::new();
    project.write(
        "prompts/a.prompty",
        "---\nname: a\nmodel:\n  parameters:\n    temperature: 9\n---\nhi\n",
    );
    project.write("prompts/b.prompty", "---\nname: b\n---\n{{ x }}\n");
    project.write(
        "prompts/b.tests.yaml",
        "- vars: {x: 1}\n  assert:\n    - type: contians\n      value: a\n    - type: regex\n      value: '(('\n- vars: {x: 2}\n  assert:\n    - type: javascript\n      value: output.length > 1\n",
    );
    project.write(
        "prompts/c.prompty",
        "---\nname: c\nmodel: {backend: nope}\nfoo: bar\n---\n{% include '../secret.txt' %}\n",
    );
    project.write("prompts/orphan.tests.yaml", "- vars: {}\n");
    project.write("prompts/d.prompty", "---\nname: d\n---\n{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}\n");
    project.write("prompts/e.prompty", "---\nname: e\ntechnique: {kind: react, tools: [calculator, shell]}\n---\n{% for t in tools %}{{ t.name }}{% endfor %}\n");
    let run = project.run(&["check"]);
    assert_eq!(run.code, 2);
    insta::assert_snapshot!("check_many_problems", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn check_selected_paths() {
    let project = math_project();
    project.write(
        "prompts/other/bad.prompty",
        "---\nname: bad\n---\n{{ nope }}\n",
    );
    assert_eq!(project.run(&["check"]).code, 2);
    let run = project.run(&["check", "prompts/cot"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "checked 1 prompt, 2 cases: 0 errors, 0 warnings\n"
    );
    assert_eq!(
        project.run(&["check", "prompts/cot/math.tests.yaml"]).code,
        0
    );
    assert_eq!(project.run(&["check", "cot/math"]).code, 0);
    let run = project.run(&["check", "promptdeck.toml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("is not inside the prompts folder"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_files_get_clear_errors_and_no_panic() {
    let project = TempProject::new();
    project.write("prompts/empty.prompty", "");
    project.write("prompts/binary.prompty", b"---\nname: x\n---\n\x00\x01\x02");
    project.write("prompts/latin1.prompty", b"---\nname: caf\xe9\n---\nhi\n");
    project.write("prompts/unclosed.prompty", "---\nname: x\nhello\n");
    project.write("prompts/badyaml.prompty", "---\nname: [x\n---\nhi\n");
    project.write("prompts/nobody.prompty", "---\nname: x\n---\n\n");
    project.write("prompts/notmap.prompty", "---\n- a\n- b\n---\nhi\n");
    let big = project.root().join("prompts/big.prompty");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(11 * 1024 * 1024)
        .unwrap();
    project.write("prompts/t.prompty", "hi\n");
    project.write("prompts/t.tests.yaml", "- description: [unclosed\n");
    let run = project.run(&["check"]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    insta::assert_snapshot!("check_bad_files", run.stderr);
}

#[test]
fn bad_config_is_located() {
    let project = TempProject::with_config(
        "[defaults]\nbackend = \"local\"\n\n[backends.gpt]\nkind = \"openai\"\nmodle = \"x\"\n",
    );
    let run = project.run(&["check"]);
    assert_eq!(run.code, 2);
    // Printed like every other file diagnostic: relative path first, no second `error:` prefix.
    assert!(
        run.stderr
            .starts_with("promptdeck.toml:6:1: error: unknown field `modle`"),
        "{}",
        run.stderr
    );
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = binary().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("render"),
            "{shell}"
        );
    }
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    let project = TempProject::new();
    project.write(
        "prompts/w.prompty",
        "---\nname: w\noutputs: {a: 1}\n---\nsystem:\n{{ '' }}\nuser:\nhi\n",
    );
    let run = project.run(&["render", "w"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout, "user:\nhi\n");
    insta::assert_snapshot!("render_warnings", run.stderr);
}

#[test]
fn models_lists_every_gguf_file_in_the_data_directory() {
    let project = TempProject::new();
    let data = tempfile::tempdir().expect("data dir");
    let hub = tempfile::tempdir().expect("hub cache");
    let models = data.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    // A file that is not a model, an unfinished download, and a GGUF cut short.
    std::fs::write(models.join("notes.txt"), "not a model").expect("write");
    std::fs::write(models.join("big.gguf.partial-1-2"), b"GGUF").expect("write");
    std::fs::write(models.join("cut.gguf"), b"GGUF\x03\x00\x00\x00").expect("write");
    let models_command = |args: &[&str]| {
        let output = common::binary_without_installed_models(data.path(), hub.path())
            .args(args)
            .current_dir(project.root())
            .output()
            .expect("run promptdeck");
        common::Run::from(output)
    };
    let run = models_command(&["models", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let listing: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let paths: Vec<&str> = listing["local_models"]
        .as_array()
        .expect("local_models")
        .iter()
        .filter_map(|m| m["path"].as_str())
        .filter(|p| p.starts_with(&*data.path().to_string_lossy()))
        .collect();
    assert_eq!(
        paths,
        [models.join("cut.gguf").to_string_lossy()],
        "{}",
        run.stdout
    );
    let cut = listing["local_models"]
        .as_array()
        .and_then(|all| all.iter().find(|m| m["path"] == paths[0]))
        .expect("entry");
    assert!(
        cut["error"]
            .as_str()
            .is_some_and(|e| e.contains("cut.gguf")),
        "a broken file is listed with its error: {cut}"
    );
    // The text form says the same.
    let text = models_command(&["models"]);
    assert!(text.stdout.contains("cut.gguf  error:"), "{}", text.stdout);
}

#[test]
fn bench_local_reports_the_kept_prompt_prefix() {
    let project = TempProject::new();
    let run = project.run(&[
        "bench",
        "local",
        "--prompt-tokens",
        "32",
        "--tokens",
        "2",
        "--threads",
        "1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("a prompt sharing its start"))
        .unwrap_or_else(|| panic!("no kept-prefix line:\n{}", run.stdout));
    // One token changed four from the end: everything before it is kept.
    assert!(
        line.contains("with 28 of 32 prompt tokens kept from the previous request"),
        "{line}"
    );
}
