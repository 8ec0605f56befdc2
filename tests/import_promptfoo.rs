//! `promptdeck import-promptfoo` on configs written from promptfoo's documentation
//! (tests/fixtures/promptfoo/import, sources in tests/fixtures/promptfoo/SOURCES.md): every
//! file it writes, every note on what it could not convert, and that the converted project
//! passes `promptdeck check`.

mod common;

use std::path::Path;

use common::{repo_root, run_in};

fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/promptfoo/import")
        .join(name)
        .join("promptfooconfig.yaml")
        .display()
        .to_string()
}

/// Every file under `dir`, sorted, as `== path ==` sections.
fn tree(dir: &Path) -> String {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if !path.ends_with(".promptdeck") {
                    stack.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .iter()
        .map(|f| {
            format!(
                "== {} ==\n{}",
                f.strip_prefix(dir).expect("inside").display(),
                std::fs::read_to_string(f).expect("read")
            )
        })
        .collect()
}

#[test]
fn converts_the_documented_configs_into_checked_projects() {
    for name in ["getting-started", "chat", "providers"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = run_in(
            dir.path(),
            &["import-promptfoo", &fixture(name), "--out", "converted"],
        );
        assert_eq!(out.code, 0, "{name}: {out:?}");
        let converted = dir.path().join("converted");
        insta::assert_snapshot!(
            format!("import_{name}"),
            format!(
                "stdout:\n{}\nstderr:\n{}\n{}",
                out.stdout,
                out.stderr,
                tree(&converted)
            )
        );
        let check = run_in(&converted, &["check"]);
        assert_eq!(check.code, 0, "{name}: {check:?}");
        assert!(
            check.stderr.contains("0 errors") || check.stdout.contains("0 errors"),
            "{check:?}"
        );
        // Importing again never overwrites.
        let again = run_in(
            dir.path(),
            &["import-promptfoo", &fixture(name), "--out", "converted"],
        );
        assert_eq!(again.code, 2, "{again:?}");
        assert!(
            again.stderr.contains("not overwriting existing files"),
            "{again:?}"
        );
    }
}

#[test]
fn broken_configs_are_located() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "prompts: [\n  'a'\nproviders: x\n",
    )
    .expect("write");
    let out = run_in(dir.path(), &["import-promptfoo", "bad.yaml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("bad.yaml:"), "{out:?}");
    std::fs::write(dir.path().join("empty.yaml"), "tests: []\n").expect("write");
    let out = run_in(dir.path(), &["import-promptfoo", "empty.yaml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("the config has no `prompts`"),
        "{out:?}"
    );
}
