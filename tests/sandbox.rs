//! What prompts can reach, through the real binary: templates read only the prompt library
//! (`include`, `import`, `from` and `extends` with `..`, absolute paths and symbolic links that
//! lead out are refused, and `file://` test variables stay inside the project); the template
//! environment has no global, filter or test beyond a reviewed allow-list (none of which runs a
//! command, reads the environment or opens a connection); ReAct command tools run only when
//! allow-listed in promptdeck.toml and named by the prompt (checked with marker files the
//! commands would create); and `promptdeck serve` binds loopback unless `--host` says
//! otherwise, with a warning when it does.

mod common;

#[path = "common/bounded.rs"]
mod bounded;
#[allow(dead_code)]
#[path = "backends/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Run, TempProject};

const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// In every file outside the library: if it shows up in an output, a template read it.
const OUTSIDE: &str = "OUTSIDE-THE-LIBRARY-7f3a";

fn run(project: &TempProject, args: &[&str]) -> Run {
    let mut command = common::binary();
    command.args(args).current_dir(project.root());
    Run::from(bounded::output_within(command, COMMAND_LIMIT))
}

/// A project with files outside `prompts/` (in the project and outside it) and links to them.
fn project_with_outside_files() -> (TempProject, tempfile::TempDir) {
    let project = TempProject::new();
    project.write("secret.txt", format!("project file {OUTSIDE}\n"));
    project.write("prompts/_partials/ok.jinja", "partial text");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        elsewhere.path().join("elsewhere.txt"),
        format!("foreign file {OUTSIDE}\n"),
    )
    .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        let prompts = project.root().join("prompts");
        symlink(
            project.root().join("secret.txt"),
            prompts.join("link.jinja"),
        )
        .expect("symlink");
        symlink(
            elsewhere.path().join("elsewhere.txt"),
            prompts.join("far.jinja"),
        )
        .expect("symlink");
        symlink(elsewhere.path(), prompts.join("linkdir")).expect("symlink");
    }
    (project, elsewhere)
}

fn assert_refused(project: &TempProject, body: &str, expected: &str) {
    project.write("prompts/probe.prompty", format!("---\n---\n{body}\n"));
    let rendered = run(project, &["render", "probe"]);
    assert_eq!(rendered.code, 2, "{body}: {rendered:?}");
    assert!(
        rendered.stderr.contains(expected),
        "{body}: expected `{expected}` in:\n{}",
        rendered.stderr
    );
    for output in [&rendered.stdout, &rendered.stderr] {
        assert!(
            !output.contains(OUTSIDE),
            "{body} read a file: {rendered:?}"
        );
    }
}

#[test]
fn templates_read_only_the_prompt_library() {
    let (project, elsewhere) = project_with_outside_files();
    let far = elsewhere.path().join("elsewhere.txt").display().to_string();

    // The control: a partial inside the library is read.
    project.write(
        "prompts/probe.prompty",
        "---\n---\n{% include \"_partials/ok\" %}\n",
    );
    let ok = run(&project, &["render", "probe"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("partial text"), "{ok:?}");

    let escapes = "leads outside the prompts folder";
    for statement in [
        "{% include \"../secret.txt\" %}",
        "{% include \"_partials/../../secret.txt\" %}",
        "{% import \"../secret.txt\" as s %}x",
        "{% from \"../secret.txt\" import m %}x",
        "{% extends \"../secret.txt\" %}",
        "{% include [\"missing\", \"../secret.txt\"] %}",
        "{% set name = \"..\" ~ \"/secret.txt\" %}{% include name %}",
    ] {
        assert_refused(&project, statement, escapes);
    }
    for statement in [
        format!("{{% include \"{far}\" %}}"),
        format!("{{% extends \"{far}\" %}}"),
        "{% include \"/etc/passwd\" %}".to_owned(),
    ] {
        assert_refused(&project, &statement, "is an absolute path");
    }
    #[cfg(unix)]
    for statement in [
        "{% include \"link.jinja\" %}",
        "{% include \"far.jinja\" %}",
        "{% include \"linkdir/elsewhere.txt\" %}",
        "{% import \"far.jinja\" as f %}x",
    ] {
        assert_refused(&project, statement, "is a link that leads outside");
    }
}

#[test]
fn file_variables_stay_inside_the_project() {
    let (project, elsewhere) = project_with_outside_files();
    let far = elsewhere.path().join("elsewhere.txt").display().to_string();
    project.write("prompts/data/doc.txt", "library data");
    project.write(
        "prompts/probe.prompty",
        "---\ninputs:\n  doc: {type: string}\n---\n{{ doc }}\n",
    );
    let case = |target: &str| {
        project.write(
            "prompts/probe.tests.yaml",
            format!("- description: c\n  vars:\n    doc: 'file://{target}'\n"),
        );
        run(&project, &["render", "probe", "--case", "c"])
    };
    // The control: a file beside the tests file is read (README: inside the project).
    let ok = case("data/doc.txt");
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("library data"), "{ok:?}");

    for (target, expected) in [
        ("../../../secret.txt", "leads outside the prompts folder"),
        (far.as_str(), "is an absolute path"),
        ("/etc/passwd", "is an absolute path"),
        #[cfg(unix)]
        ("far.jinja", "is a link that leads outside"),
        #[cfg(unix)]
        ("linkdir/elsewhere.txt", "is a link that leads outside"),
    ] {
        let refused = case(target);
        assert_eq!(refused.code, 2, "{target}: {refused:?}");
        assert!(
            refused.stderr.contains(expected),
            "{target}: expected `{expected}` in {}",
            refused.stderr
        );
        assert!(
            !refused.stdout.contains(OUTSIDE) && !refused.stderr.contains(OUTSIDE),
            "{target}: {refused:?}"
        );
    }
    // A `--var` value is text, never a file reference.
    case("data/doc.txt");
    let literal = run(
        &project,
        &["render", "probe", "--var", &format!("doc=file://{far}")],
    );
    assert_eq!(literal.code, 0, "{literal:?}");
    assert!(
        literal.stdout.contains(&format!("file://{far}")),
        "{literal:?}"
    );
    assert!(!literal.stdout.contains(OUTSIDE), "{literal:?}");
}

/// Names in the `globals: {...}`, `tests: [...]` and `filters: [...]` sections of minijinja's
/// `debug()` dump of its state.
fn environment_names(dump: &str) -> [BTreeSet<String>; 3] {
    let mut sections: [BTreeSet<String>; 3] = Default::default();
    let mut current: Option<(usize, usize)> = None;
    for line in dump.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if let Some((section, depth)) = current {
            if indent <= depth {
                current = None;
            } else if indent == depth + 4 {
                if let Some(rest) = trimmed.strip_prefix('"') {
                    if let Some(end) = rest.find('"') {
                        sections[section].insert(rest[..end].to_owned());
                    }
                }
                continue;
            } else {
                continue;
            }
        }
        let section = match trimmed {
            "globals: {" => 0,
            "tests: [" => 1,
            "filters: [" => 2,
            _ => continue,
        };
        current = Some((section, indent));
    }
    sections
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Every global, filter and test a template can call, against the reviewed list: minijinja's
/// builtins (pure functions of their arguments; `debug` prints the template's own state) and
/// promptdeck's text helpers. Anything added later fails here until someone has checked that it
/// runs no command, reads no environment variable or file, and opens no connection.
#[test]
fn the_template_environment_is_an_allow_list() {
    let project = TempProject::new();
    project.write("prompts/probe.prompty", "---\n---\n{{ debug() }}\n");
    let rendered = run(&project, &["render", "probe"]);
    assert_eq!(rendered.code, 0, "{rendered:?}");
    let [globals, tests, filters] = environment_names(&rendered.stdout);
    assert_eq!(
        globals,
        set(&["debug", "dict", "fewshot", "namespace", "range"]),
        "globals changed; review them for IO, then update this list:\n{}",
        rendered.stdout
    );
    assert_eq!(
        tests,
        set(&[
            "!=",
            "<",
            "<=",
            "==",
            ">",
            ">=",
            "boolean",
            "defined",
            "divisibleby",
            "endingwith",
            "eq",
            "equalto",
            "escaped",
            "even",
            "false",
            "filter",
            "float",
            "ge",
            "greaterthan",
            "gt",
            "in",
            "int",
            "integer",
            "iterable",
            "le",
            "lessthan",
            "lower",
            "lt",
            "mapping",
            "ne",
            "none",
            "number",
            "odd",
            "safe",
            "sameas",
            "sequence",
            "startingwith",
            "string",
            "test",
            "true",
            "undefined",
            "upper",
        ]),
        "tests changed; review them for IO, then update this list:\n{}",
        rendered.stdout
    );
    assert_eq!(
        filters,
        set(&[
            "abs",
            "attr",
            "batch",
            "bool",
            "bulleted",
            "capitalize",
            "chain",
            "count",
            "d",
            "dedent",
            "default",
            "dictsort",
            "e",
            "escape",
            "first",
            "float",
            "format",
            "groupby",
            "indent",
            "int",
            "items",
            "join",
            "last",
            "length",
            "lines",
            "list",
            "lower",
            "map",
            "max",
            "min",
            "numbered",
            "pprint",
            "reject",
            "rejectattr",
            "replace",
            "reverse",
            "round",
            "safe",
            "select",
            "selectattr",
            "slice",
            "sort",
            "split",
            "string",
            "sum",
            "title",
            "tojson",
            "trim",
            "unique",
            "upper",
            "zip",
        ]),
        "filters changed; review them for IO, then update this list:\n{}",
        rendered.stdout
    );
    // What other template languages offer for IO is not there, under any spelling.
    for probe in [
        "{{ env('HOME') }}",
        "{{ lookup('env', 'HOME') }}",
        "{{ 'ls' | shell }}",
        "{{ import('os') }}",
        "{{ url('http://127.0.0.1/') }}",
        "{{ read_file('secret.txt') }}",
    ] {
        project.write("prompts/probe.prompty", format!("---\n---\n{probe}\n"));
        let refused = run(&project, &["render", "probe"]);
        assert_eq!(refused.code, 2, "{probe}: {refused:?}");
    }
}

/// A loopback OpenAI-compatible server that answers each chat request with the next of
/// `replies` (then the last again).
fn scripted(runtime: &tokio::runtime::Runtime, replies: &[&str]) -> server::Server {
    let replies: Vec<String> = replies.iter().map(|s| (*s).to_owned()).collect();
    runtime.block_on(server::Server::start(move |index, _| {
        let text = replies
            .get(index)
            .or(replies.last())
            .cloned()
            .unwrap_or_default();
        let chunk = |delta: Value, finish: Option<&str>| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        server::sse(
            &format!(
                "{}{}data: [DONE]\n\n",
                chunk(json!({"content": text}), None),
                chunk(json!({}), Some("stop"))
            ),
            64,
        )
    }))
}

fn runtime() -> tokio::runtime::Runtime {
    common::runtime(1)
}

#[cfg(unix)]
#[test]
fn react_runs_only_allow_listed_commands() {
    let runtime = runtime();
    let model = scripted(
        &runtime,
        &[
            // Allow-listed and named by the prompt: runs.
            "Thought: mark\nAction: mark[allowed]",
            // Allow-listed in promptdeck.toml but not named by this prompt: refused.
            "Thought: other\nAction: unlisted[x]",
            // Not a tool at all; a shell line as the name.
            "Thought: shell\nAction: touch refused-shell[x]",
            "Final Answer: done",
        ],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = |name: &str| dir.path().join(name);
    let tool = |name: &str, file: &str| {
        format!(
            "\n[tools.{name}]\ncommand = [\"sh\", \"-c\", \"touch '{}'\"]\ndescription = \"creates a marker file\"\ntimeout = 5\n",
            marker(file).display()
        )
    };
    let project = TempProject::with_config(&format!(
        "[defaults]\nbackend = \"api\"\n\n[backends.api]\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{}/v1\"\nretries = 0\n{}{}",
        model.url(),
        tool("mark", "allowed"),
        tool("unlisted", "unlisted"),
    ));
    project.write(
        "prompts/agent.prompty",
        "---\ntechnique: {kind: react, tools: [mark], max_steps: 6}\n---\nUse tools.\n",
    );
    let ran = run(&project, &["run", "agent"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stdout, "done\n", "{ran:?}");
    assert!(marker("allowed").exists(), "the allow-listed tool ran");
    assert!(
        !marker("unlisted").exists(),
        "a tool the prompt does not name ran"
    );
    assert!(
        !project.root().join("refused-shell").exists()
            && !dir.path().join("refused-shell").exists()
    );
    let last = model.request(model.count() - 1).json();
    let turns = last["messages"].to_string();
    assert!(
        turns.contains("Error: tool `unlisted` is not available; use one of: mark"),
        "{turns}"
    );

    // A prompt naming a tool that promptdeck.toml does not allow-list is refused before the
    // model is asked anything; nothing runs.
    project.write(
        "prompts/rogue.prompty",
        "---\ntechnique: {kind: react, tools: [rogue], max_steps: 2}\n---\nUse tools.\n",
    );
    let before = model.count();
    let refused = run(&project, &["run", "rogue"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains(
            "tool `rogue` is neither built in (calculator, search, date) nor allow-listed under [tools.rogue] in promptdeck.toml"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(model.count(), before, "the model was not asked");
}

/// The local address `promptdeck serve` listens on, from its `listening on` line, and its stderr.
fn serve_address(project: &TempProject, extra: &[&str]) -> (String, String) {
    let mut command = common::binary();
    command
        .args(["serve", "--port", "0", "--backend", "api"])
        .args(extra)
        .current_dir(project.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn promptdeck serve");
    let pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + COMMAND_LIMIT;
    let mut seen = String::new();
    let address = loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            panic!("no `listening on` line; stderr:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.strip_prefix("promptdeck serve: listening on http://") {
            break rest.split('/').next().unwrap_or_default().to_owned();
        }
    };
    #[cfg(target_os = "linux")]
    {
        let port: u16 = address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        let bound = listening_addresses(port);
        seen.push_str(&format!("bound: {bound:?}\n"));
    }
    let _ = child.kill();
    let _ = child.wait();
    (address, seen)
}

/// The local addresses of listening TCP sockets on `port`, from /proc (hex, as the kernel
/// writes them: `0100007F` is 127.0.0.1, `00000000` is 0.0.0.0).
#[cfg(target_os = "linux")]
fn listening_addresses(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, state) = (fields.get(1)?, fields.get(3)?);
            let (ip, p) = addr.split_once(':')?;
            (*state == "0A" && u16::from_str_radix(p, 16).ok()? == port).then(|| ip.to_owned())
        })
        .collect()
}

#[test]
fn serve_binds_loopback_unless_told_otherwise() {
    let runtime = runtime();
    let model = scripted(&runtime, &["hi"]);
    let project = TempProject::with_config(&format!(
        "[defaults]\nbackend = \"api\"\n\n[backends.api]\nkind = \"openai\"\nmodel = \"m\"\nbase_url = \"{}/v1\"\nretries = 0\n",
        model.url()
    ));
    let (address, stderr) = serve_address(&project, &[]);
    assert!(address.starts_with("127.0.0.1:"), "{address}\n{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    #[cfg(target_os = "linux")]
    assert!(stderr.contains("bound: [\"0100007F\"]"), "{stderr}");

    // Another interface only when asked, and then with a warning.
    let (address, stderr) = serve_address(&project, &["--host", "0.0.0.0"]);
    assert!(address.starts_with("0.0.0.0:"), "{address}\n{stderr}");
    assert!(
        stderr.contains("reachable from other machines; promptdeck serve has no authentication"),
        "{stderr}"
    );
    #[cfg(target_os = "linux")]
    assert!(stderr.contains("bound: [\"00000000\"]"), "{stderr}");
}
