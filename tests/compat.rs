//! Files written for other tools load unchanged: Microsoft Prompty v1 prompts and promptfoo
//! tests files (fixtures written from their public specs; see tests/fixtures/*/SOURCES.md).

mod common;

use std::path::Path;

use common::TempProject;

/// A project whose prompts/ folder is a copy of a fixture folder.
fn project_with(fixtures: &str) -> TempProject {
    let project = TempProject::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixtures);
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Documentation and sub-folders (the promptfoo configs under import/ are for
        // tests/import_promptfoo.rs) are not part of the prompt library.
        if name.ends_with(".md") || entry.path().is_dir() {
            continue;
        }
        project.write(
            &format!("prompts/{name}"),
            std::fs::read(entry.path()).unwrap(),
        );
    }
    project
}

#[test]
fn prompty_v1_files_check_clean() {
    let project = project_with("prompty");
    let run = project.run(&["check"]);
    assert_eq!(run.code, 0, "{run:?}");
    // Prompty keys promptdeck does not use are reported, not fatal.
    insta::assert_snapshot!(
        "prompty_check",
        format!("stdout: {}stderr:\n{}", run.stdout, run.stderr)
    );
}

#[test]
fn prompty_v1_files_render_unchanged() {
    let project = project_with("prompty");
    let mut out = String::new();
    for name in [
        "basic",
        "chat-history",
        "rag-context",
        "azure-config",
        "no-role-markers",
    ] {
        let run = project.run(&["render", name, "--format", "json"]);
        assert_eq!(run.code, 0, "{name}: {run:?}");
        out.push_str(&format!("=== {name}\n{}\n", run.stdout));
    }
    insta::assert_snapshot!("prompty_render", out);
}

#[test]
fn prompty_chat_history_becomes_turns() {
    let project = project_with("prompty");
    let run = project.run(&["render", "chat-history", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let roles: Vec<&str> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
}

#[test]
fn prompty_env_references_are_never_resolved() {
    let project = project_with("prompty");
    // Even with the variable set, configuration values are kept verbatim and never rendered.
    let run = common::binary()
        .args(["render", "azure-config", "--format", "json"])
        .env("AZURE_OPENAI_ENDPOINT", "https://secret-endpoint.example")
        .current_dir(project.root())
        .output()
        .unwrap();
    assert!(run.status.success());
    assert!(!String::from_utf8_lossy(&run.stdout).contains("secret-endpoint"));
}

#[test]
fn promptfoo_tests_files_load_and_render() {
    let project = project_with("promptfoo");
    std::fs::remove_file(project.root().join("prompts/bad-assert-type.prompty")).unwrap();
    std::fs::remove_file(project.root().join("prompts/bad-assert-type.tests.yaml")).unwrap();
    let run = project.run(&["check"]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!(
        "promptfoo_check",
        format!("stdout: {}stderr:\n{}", run.stdout, run.stderr)
    );
    let mut out = String::new();
    for (name, cases) in [
        ("list-form", 3),
        ("map-form", 3),
        ("weights", 3),
        ("file-vars", 2),
    ] {
        for index in 1..=cases {
            let index = index.to_string();
            let run = project.run(&["render", name, "--case-index", &index]);
            assert_eq!(run.code, 0, "{name} #{index}: {run:?}");
            out.push_str(&format!("=== {name} #{index}\n{}\n", run.stdout));
        }
    }
    insta::assert_snapshot!("promptfoo_render", out);
}

#[test]
fn promptfoo_unknown_assertion_type_is_located() {
    let project = project_with("promptfoo");
    let run = project.run(&["check", "bad-assert-type"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("prompts/bad-assert-type.tests.yaml:7:13: error: unknown assertion type `contians`; did you mean `contains`?"),
        "{}",
        run.stderr
    );
}
