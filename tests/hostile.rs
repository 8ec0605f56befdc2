//! The hostile-input corpus (tests/hostile/) through the real binary: malformed, deeply nested
//! and alias-bomb YAML, templates that loop, recurse or include outside the library, non-UTF-8
//! and binary files, and 100 MB files (generated here in a temp dir, never committed).
//!
//! Every command that reads such a file (`check`, `render`, `run`, `test`, `commit`, `import`)
//! must exit 2 with an error naming the file (with `line:col` where a position applies), must
//! not panic, must finish in bounded time and memory, and must leave the store exactly as it
//! was (compared through `promptdeck export` and `history`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Run, TempProject};

/// A prompt that renders, committed before each hostile command so the store is not empty.
const OK_PROMPT: &str = "---\nname: ok\nsample:\n  q: one\n---\nuser:\nhello {{ q }}\n";
const OK_TESTS: &str = "- description: a\n  vars:\n    q: two\n";
const CONFIG: &str = "[defaults]\nbackend = \"local\"\n";

/// The corpus files of one folder, sorted, as (file name, bytes).
fn corpus(folder: &str) -> Vec<(String, Vec<u8>)> {
    let dir = common::repo_root().join("tests/hostile").join(folder);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("file name")
                .to_owned();
            (name, std::fs::read(&path).expect("read corpus file"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    files
}

/// A project with `ok` committed (so the store exists and holds something).
fn project() -> TempProject {
    let p = TempProject::with_config(CONFIG);
    p.write("prompts/ok.prompty", OK_PROMPT);
    p.write("prompts/ok.tests.yaml", OK_TESTS);
    let run = p.run(&["commit", "ok", "-m", "before"]);
    assert_eq!(run.code, 0, "{run:?}");
    p
}

/// Everything the store holds, as the user can see it.
fn store_state(p: &TempProject) -> String {
    let export = p.run(&["export"]);
    assert_eq!(export.code, 0, "export: {export:?}");
    let history = p.run(&["history", "ok"]);
    assert_eq!(history.code, 0, "history: {history:?}");
    format!("{}\n{}", export.stdout, history.stdout)
}

/// Runs a command with a time limit: a hostile file must not hang the binary.
fn run_bounded(p: &TempProject, args: &[&str]) -> Run {
    let started = Instant::now();
    let run = p.run(args);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "`promptdeck {}` took {took:?}",
        args.join(" ")
    );
    run
}

/// Exit 2, no panic, an error naming `file` (with `:line:col` when `positional`).
fn assert_refused(run: &Run, args: &[&str], file: &str, positional: bool) {
    let what = format!("`promptdeck {}` on {file}", args.join(" "));
    assert!(
        !run.stderr.contains("panicked"),
        "{what} panicked:\n{}",
        run.stderr
    );
    assert_eq!(
        run.code, 2,
        "{what}: exit code {}\nstdout: {}\nstderr: {}",
        run.code, run.stdout, run.stderr
    );
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains(": error: ")),
        "{what}: a doubled `error:` prefix:\n{}",
        run.stderr
    );
    let located = run.stderr.lines().any(|line| {
        let Some(at) = line.find(file) else {
            return false;
        };
        let rest = &line[at + file.len()..];
        if !positional {
            return true;
        }
        // `:LINE:COL:` right after the path.
        let mut parts = rest.splitn(4, ':');
        parts.next() == Some("")
            && parts.next().is_some_and(|l| l.parse::<usize>().is_ok())
            && parts.next().is_some_and(|c| c.parse::<usize>().is_ok())
    });
    assert!(
        located,
        "{what}: no error at {file}{}:\n{}",
        if positional { ":LINE:COL" } else { "" },
        run.stderr
    );
}

/// The most memory any child process (any `promptdeck` this test binary ran) has used: a YAML
/// bomb or a 100 MB file must not be expanded or read into memory.
fn assert_children_memory_bounded() {
    const LIMIT_KB: i64 = 512 * 1024;
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    // Linux reports kilobytes.
    let max_kb = usage.ru_maxrss as i64;
    assert!(
        max_kb < LIMIT_KB,
        "a promptdeck process used {} MB",
        max_kb / 1024
    );
}

/// Which commands read a prompt; each gets the hostile file.
fn prompt_commands(name: &str) -> Vec<Vec<String>> {
    [
        vec!["check"],
        vec!["render", name],
        vec!["run", name],
        vec!["test", name],
        vec!["commit", name, "-m", "hostile"],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(str::to_owned).collect())
    .collect()
}

fn refuse_everywhere(p: &TempProject, name: &str, file: &str, positional: bool) {
    let before = store_state(p);
    for args in prompt_commands(name) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = run_bounded(p, &args);
        assert_refused(&run, &args, file, positional);
    }
    assert_eq!(store_state(p), before, "{file} changed the store");
    assert_children_memory_bounded();
}

#[test]
fn hostile_prompts_are_refused_with_a_location() {
    let p = project();
    for (file_name, bytes) in corpus("prompts") {
        let name = file_name.trim_end_matches(".prompty");
        let path = format!("prompts/{file_name}");
        p.write(&path, &bytes);
        // A valid tests file, so `test` and `run` get as far as the prompt.
        p.write(&format!("prompts/{name}.tests.yaml"), OK_TESTS);
        refuse_everywhere(&p, name, &path, true);
        std::fs::remove_file(p.root().join(&path)).expect("remove");
        std::fs::remove_file(p.root().join(format!("prompts/{name}.tests.yaml"))).expect("rm");
    }
}

#[test]
fn hostile_tests_files_are_refused_with_a_location() {
    let p = project();
    for (file_name, bytes) in corpus("tests") {
        p.write("prompts/ok.tests.yaml", &bytes);
        let run_path = "prompts/ok.tests.yaml";
        let before = store_state(&p);
        for args in [
            vec!["check"],
            vec!["test", "ok"],
            vec!["run", "ok"],
            vec!["commit", "ok", "-m", "hostile"],
        ] {
            let run = run_bounded(&p, &args);
            assert_refused(&run, &args, run_path, true);
        }
        assert_eq!(store_state(&p), before, "{file_name} changed the store");
    }
    assert_children_memory_bounded();
}

#[test]
fn hostile_configs_are_refused_with_a_location() {
    let p = project();
    let before = store_state(&p);
    for (file_name, bytes) in corpus("config") {
        p.write("promptdeck.toml", &bytes);
        for args in [
            vec!["check"],
            vec!["render", "ok"],
            vec!["test", "ok"],
            vec!["commit", "ok", "-m", "hostile"],
        ] {
            let run = run_bounded(&p, &args);
            assert!(
                run.stderr.contains("promptdeck.toml"),
                "{file_name}: {:?}",
                run
            );
            assert_refused(&run, &args, "promptdeck.toml", true);
        }
        // The store is read back with the good config.
        p.write("promptdeck.toml", CONFIG);
        assert_eq!(store_state(&p), before, "{file_name} changed the store");
    }
    assert_children_memory_bounded();
}

#[test]
fn hostile_imports_are_refused_whole() {
    let p = project();
    let before = store_state(&p);
    for (file_name, bytes) in corpus("import") {
        let path = p.write(&format!("incoming/{file_name}"), &bytes);
        let path = path.to_str().expect("utf-8 temp path");
        let args = ["import", path];
        let run = run_bounded(&p, &args);
        assert_refused(&run, &args, file_name.as_str(), true);
        assert_eq!(store_state(&p), before, "{file_name} changed the store");
    }
    assert_children_memory_bounded();
}

/// Writes `size` bytes of `line` repeated, without holding them in memory.
fn write_big(path: &Path, line: &[u8], size: usize) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut written = 0;
    while written < size {
        file.write_all(line).expect("write");
        written += line.len();
    }
    file.flush().expect("flush");
}

const HUNDRED_MB: usize = 100 * 1024 * 1024;

#[test]
fn hundred_megabyte_files_are_refused_quickly() {
    let p = project();
    let before = store_state(&p);
    let big_line = b"user: a line of a very large file {{ q }}\n";

    // A prompt.
    let prompt: PathBuf = p.root().join("prompts/big.prompty");
    write_big(&prompt, big_line, HUNDRED_MB);
    p.write("prompts/big.tests.yaml", OK_TESTS);
    refuse_everywhere(&p, "big", "prompts/big.prompty", false);
    assert!(
        p.run(&["render", "big"]).stderr.contains("too large"),
        "the error says why"
    );
    std::fs::remove_file(&prompt).expect("rm");
    std::fs::remove_file(p.root().join("prompts/big.tests.yaml")).expect("rm");

    // A tests file.
    let tests = p.root().join("prompts/ok.tests.yaml");
    write_big(&tests, b"- vars: {q: a}\n", HUNDRED_MB);
    for args in [vec!["check"], vec!["test", "ok"], vec!["commit", "ok"]] {
        let run = run_bounded(&p, &args);
        assert_refused(&run, &args, "prompts/ok.tests.yaml", false);
    }
    p.write("prompts/ok.tests.yaml", OK_TESTS);

    // The config.
    let config = p.root().join("promptdeck.toml");
    write_big(&config, b"# a comment line in a huge config\n", HUNDRED_MB);
    for args in [vec!["check"], vec!["render", "ok"]] {
        let run = run_bounded(&p, &args);
        assert_refused(&run, &args, "promptdeck.toml", false);
    }
    p.write("promptdeck.toml", CONFIG);

    // An import: one 100 MB line that is not JSON.
    let import = p.root().join("incoming/big.jsonl");
    write_big(&import, b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", HUNDRED_MB);
    let path = import.to_str().expect("utf-8 temp path").to_owned();
    let run = run_bounded(&p, &["import", &path]);
    assert_refused(&run, &["import", &path], "big.jsonl", true);
    std::fs::remove_file(&import).expect("rm");

    assert_eq!(store_state(&p), before, "a big file changed the store");
    assert_children_memory_bounded();
}

/// The corpus covers what the issue lists; a file removed by accident fails here.
#[test]
fn corpus_is_complete() {
    let names: Vec<String> = ["prompts", "tests", "config", "import"]
        .iter()
        .flat_map(|f| corpus(f).into_iter().map(move |(n, _)| format!("{f}/{n}")))
        .collect();
    for expected in [
        "prompts/malformed_yaml.prompty",
        "prompts/deep_yaml.prompty",
        "prompts/yaml_bomb.prompty",
        "prompts/template_loop.prompty",
        "prompts/template_recursion.prompty",
        "prompts/include_outside.prompty",
        "prompts/include_absolute.prompty",
        "prompts/include_self.prompty",
        "prompts/non_utf8.prompty",
        "prompts/binary.prompty",
        "tests/bomb.tests.yaml",
        "tests/deep.tests.yaml",
        "tests/non_utf8.tests.yaml",
        "tests/binary.tests.yaml",
        "config/malformed.toml",
        "config/non_utf8.toml",
        "config/binary.toml",
        "import/malformed.jsonl",
        "import/non_utf8.jsonl",
        "import/binary.jsonl",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
}
