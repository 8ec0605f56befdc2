//! The workbench end to end: the real binary in a real terminal (tmux), driven with send-keys
//! and read with capture-pane. Open, select a prompt, edit, save, run on a loopback
//! OpenAI-compatible server (streamed output and assertion results), open a diff, open history,
//! quit with unsaved changes, and check that the terminal left the alternate screen.
//! `tui_runs_the_local_model` does the run on the embedded model, as a user's first run does.
//!
//! tmux is required: without it these tests fail with a message saying how to install it.

mod common;

#[allow(dead_code)]
#[path = "backends/server.rs"]
mod server;

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use common::TempProject;
use common::tmux::Session;

const PROMPT: &str = common::ASK_PROMPT;
const TESTS: &str = "- description: lyon
  vars:
    city: Lyon
  assert:
    - type: contains
      value: France
    - type: icontains
      value: of course
";
const OTHER: &str = "---\nname: other\n---\nuser:\nSay hello to {{ name | default('you') }}.\n";

/// The answer the loopback server streams, in pieces.
const PIECES: [&str; 4] = ["Lyon is ", "in Fr", "ance", ", of course."];

fn tmux_available() {
    common::tmux::assert_available(
        "the TUI end-to-end tests drive the binary in tmux, which is not installed: \
         install it (Debian/Ubuntu: `apt-get install tmux`, macOS: `brew install tmux`) and rerun",
    );
}

/// A tmux session running promptdeck in a project, with `env` set, killed on drop.
fn start_session(root: &Path, env: &[(&str, &str)], width: u16, height: u16) -> Session {
    let name = format!("pd-tui-{}-{}", std::process::id(), rand_suffix());
    let mut shell = String::new();
    for (k, v) in env {
        shell.push_str(&format!("{k}='{v}' "));
    }
    // The pane outlives the binary so the test can read what it left on the screen.
    shell.push_str(&format!(
        "'{}'; echo \"EXITED $?\"; sleep 600",
        env!("CARGO_BIN_EXE_promptdeck")
    ));
    Session::start(None, name, root, &shell, (width, height))
}

/// The workbench at 120x40 in `project`, with `HOME` a fresh folder in it and `env` set too.
fn start_at_home(project: &TempProject, env: &[(&str, &str)]) -> Session {
    let home = project.root().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let home = home.to_string_lossy().into_owned();
    let mut all = vec![("NO_COLOR", "1"), ("HOME", home.as_str())];
    all.extend_from_slice(env);
    start_session(project.root(), &all, 120, 40)
}

fn alternate_screen(tui: &Session) -> bool {
    tui.display("#{alternate_on}") == "1"
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_007)
}

fn openai_stream() -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-test", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut body = chunk(json!({"role": "assistant", "content": ""}), None);
    for piece in PIECES {
        body.push_str(&chunk(json!({"content": piece}), None));
    }
    body.push_str(&chunk(json!({}), Some("stop")));
    let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-test", "choices": [],
        "usage": {"prompt_tokens": 23, "completion_tokens": 9, "total_tokens": 32}});
    body.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    body
}

#[test]
fn tui_edits_saves_runs_diffs_and_browses_history() {
    tmux_available();
    let runtime = common::runtime(1);
    // Pieces 40 ms apart, so the answer visibly streams.
    let server = runtime.block_on(server::Server::start(|_, _| {
        server::Reply::Parts(
            std::iter::once(server::sse_head())
                .chain(server::split(&openai_stream(), 64))
                .collect(),
            Duration::from_millis(40),
        )
    }));
    let project = TempProject::with_config(&format!(
        "[defaults]\nbackend = \"fake\"\n\n[backends.fake]\nkind = \"openai\"\nmodel = \"gpt-test\"\n\
         base_url = \"{}/v1\"\napi_key_env = \"PD_TUI_TEST_KEY\"\ntimeout = 10\n",
        server.url()
    ));
    project.write("prompts/ask.prompty", PROMPT);
    project.write("prompts/ask.tests.yaml", TESTS);
    project.write("prompts/zz/other.prompty", OTHER);
    // An "editor" that appends a line, to check the suspend, resume and reload around $EDITOR.
    let editor = project.write(
        "bin/editor.sh",
        "#!/bin/sh\necho '{# edited outside #}' >> \"$1\"\n",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let editor = editor.to_string_lossy().into_owned();
    let tui = start_at_home(&project, &[("EDITOR", &editor)]);
    let limit = Duration::from_secs(20);

    // Open: the first prompt with its first case rendered.
    tui.wait_for(
        &[
            "Prompts",
            "prompts/ask.prompty",
            "Which country is Lyon in?",
            "lyon",
        ],
        limit,
    );
    assert!(
        alternate_screen(&tui),
        "the TUI draws on the alternate screen"
    );

    // Select another prompt, then come back.
    tui.keys(&["Down", "Enter"]);
    tui.wait_for(&["prompts/zz/other.prompty", "Say hello to you."], limit);
    tui.keys(&["Up", "Enter"]);
    tui.wait_for(&["prompts/ask.prompty", "Which country is Lyon in?"], limit);

    // Edit: focus the editor, find "Which" and type before it; the preview follows and the
    // header marks the file unsaved.
    tui.keys(&["Tab", "C-f"]);
    tui.type_text("Which");
    tui.keys(&["Enter"]);
    tui.type_text("Briefly: ");
    tui.wait_for(
        &["Briefly: Which country is Lyon in?", "ask.prompty *"],
        limit,
    );

    // Save: the file is written and a version committed.
    tui.keys(&["C-s"]);
    tui.wait_for(&["saved; committed version"], limit);
    let saved = std::fs::read_to_string(project.root().join("prompts/ask.prompty")).expect("read");
    assert!(
        saved.contains("Briefly: Which country is {{ city }} in?"),
        "{saved}"
    );

    // $EDITOR: the TUI suspends, the editor changes the file, the TUI resumes and reloads it.
    tui.keys(&["C-e"]);
    tui.wait_for(
        &["reloaded the file after $EDITOR", "{# edited outside #}"],
        limit,
    );
    assert!(alternate_screen(&tui), "back on the alternate screen");

    // Run: the answer streams in, then the assertions with their reasons.
    tui.keys(&["C-r"]);
    let screen = tui.wait_for(
        &[
            "Lyon is in France, of course.",
            "PASS",
            "✓ contains",
            "✓ icontains",
            "run done: 1/1 passed",
        ],
        limit,
    );
    assert!(screen.contains("23 in 9 out"), "{screen}");
    let request = server.request(server.count() - 1);
    assert!(
        request.body.contains("Briefly: Which country is Lyon in?"),
        "{}",
        request.body
    );

    // Diff: an unsaved edit against the latest version, with word-level changes.
    tui.keys(&["C-f"]);
    tui.type_text("sentence");
    tui.keys(&["Enter"]);
    tui.type_text("short ");
    tui.keys(&["C-d"]);
    tui.wait_for(&["Compare latest", "working", "one short sentence"], limit);
    tui.keys(&["n"]);

    // History: the saved version with its pass rate and the chart.
    tui.keys(&["F4"]);
    tui.wait_for(
        &[
            "History ask",
            "saved in the workbench",
            "100%",
            "pass rate by version",
        ],
        limit,
    );

    // Quit with unsaved changes: asked, then quit; the terminal is restored.
    tui.keys(&["C-q"]);
    tui.wait_for(&["There are unsaved changes"], limit);
    tui.keys(&["y"]);
    tui.wait_for(&["EXITED 0"], limit);
    assert!(!alternate_screen(&tui), "the alternate screen was left");
    let screen = tui.screen();
    assert!(
        !screen.contains("Prompts"),
        "the workbench is gone from the screen:\n{screen}"
    );

    // The run is in the store, as `promptdeck runs` shows.
    let runs = project.run(&["runs", "ask"]);
    assert_eq!(runs.code, 0, "{runs:?}");
    assert!(
        runs.stdout.contains("fake") && runs.stdout.contains("1/1"),
        "{}",
        runs.stdout
    );
}

#[test]
fn tui_runs_the_local_model() {
    tmux_available();
    let project = TempProject::new();
    project.write(
        "prompts/capital.prompty",
        "---\nname: capital\nmodel:\n  parameters: {temperature: 0, max_tokens: 12}\n---\nuser:\nWhat is the capital of France? Answer in one word.\n",
    );
    project.write(
        "prompts/capital.tests.yaml",
        "- description: paris\n  assert:\n    - type: icontains\n      value: paris\n",
    );
    let tui = start_session(project.root(), &[("NO_COLOR", "1")], 100, 30);
    tui.wait_for(
        &["prompts/capital.prompty", "capital of France", "tokens, "],
        Duration::from_secs(20),
    );
    tui.keys(&["C-r"]);
    // The first request loads the model (and fetches it once on a fresh machine).
    let screen = tui.wait_for(&["run done"], Duration::from_secs(600));
    assert!(screen.contains("Paris"), "{screen}");
    assert!(screen.contains("✓ icontains"), "{screen}");
    tui.keys(&["C-q"]);
    tui.wait_for(&["EXITED 0"], Duration::from_secs(20));
    assert!(!alternate_screen(&tui));
}

/// An OpenAI stream carrying `text` in one piece.
fn openai_text(text: &str) -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-test", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut body = chunk(json!({"role": "assistant", "content": text}), None);
    body.push_str(&chunk(json!({}), Some("stop")));
    body.push_str("data: [DONE]\n\n");
    body
}

/// A ReAct prompt run in the workbench goes through the same execution as `promptdeck run`:
/// the tool is called, the final answer fills the cell, the trace follows it, and the
/// assertion is checked against the final answer.
#[test]
fn tui_runs_a_react_prompt_and_shows_its_trace() {
    tmux_available();
    let runtime = common::runtime(1);
    let server = runtime.block_on(server::Server::start(|index, _| {
        let text = if index == 0 {
            "Thought: multiply.\nAction: calculator[6*7]"
        } else {
            "Thought: done.\nFinal Answer: 42"
        };
        server::sse(&openai_text(text), 64)
    }));
    let project = TempProject::with_config(&format!(
        "[defaults]\nbackend = \"fake\"\n\n[backends.fake]\nkind = \"openai\"\nmodel = \"gpt-test\"\n\
         base_url = \"{}/v1\"\napi_key_env = \"PD_TUI_TEST_KEY\"\ntimeout = 10\n",
        server.url()
    ));
    project.write(
        "prompts/agent.prompty",
        "---\nmodel:\n  parameters: {temperature: 0, max_tokens: 64, stop: ['Observation:']}\n\
         technique: {kind: react, tools: [calculator], max_steps: 3}\n---\n\
         Use `Action: tool[input]`; finish with `Final Answer: ...`.\nWhat is six times seven?\n",
    );
    project.write(
        "prompts/agent.tests.yaml",
        "- description: product\n  assert:\n    - {type: equals, value: '42'}\n",
    );
    let tui = start_at_home(&project, &[]);
    let limit = Duration::from_secs(20);
    tui.wait_for(&["prompts/agent.prompty", "product"], limit);
    tui.keys(&["C-r"]);
    let screen = tui.wait_for(&["PASS", "── react ──", "calculator", "42"], limit);
    assert_eq!(server.count(), 2, "{screen}");
    tui.keys(&["C-q"]);
}

/// The Models view (F6) on two loopback backends that answer differently: the empty state,
/// `r` running the backends without a stored run, the charts from what was stored, and
/// `promptdeck compare --reuse` reading the very same runs without a request.
#[test]
fn tui_models_view_runs_the_missing_backends_and_charts_them() {
    tmux_available();
    let runtime = common::runtime(1);
    let server = runtime.block_on(server::Server::start(|_, request| {
        // `fake` knows the answer; `other` (another model on the same server) does not.
        let text = if request.body.contains("gpt-other") {
            "No idea."
        } else {
            "Lyon is in France, of course."
        };
        server::sse(&openai_text(text), 64)
    }));
    let backend = |name: &str, model: &str| {
        format!(
            "[backends.{name}]\nkind = \"openai\"\nmodel = \"{model}\"\nbase_url = \"{}/v1\"\n\
             api_key_env = \"PD_TUI_TEST_KEY\"\ntimeout = 10\n\n",
            server.url()
        )
    };
    let project = TempProject::with_config(&format!(
        "[defaults]\nbackend = \"fake\"\n\n{}{}",
        backend("fake", "gpt-test"),
        backend("other", "gpt-other")
    ));
    project.write("prompts/ask.prompty", PROMPT);
    project.write("prompts/ask.tests.yaml", TESTS);
    let tui = start_at_home(&project, &[]);
    let limit = Duration::from_secs(20);
    tui.wait_for(&["prompts/ask.prompty", "lyon"], limit);

    // The columns: every configured backend (the built-in `local` too) unless chosen with ^B.
    tui.keys(&["F6"]);
    tui.wait_for(&["Models ask · fake vs local vs other"], limit);
    tui.keys(&["C-b", "Space", "Down", "Down", "Space", "Enter", "F6"]);
    tui.wait_for(
        &["No stored runs of the current version of ask on fake, other"],
        limit,
    );
    assert_eq!(server.count(), 0, "opening the view runs nothing");
    tui.keys(&["r"]);
    let screen = tui.wait_for(
        &[
            "■ fake",
            "■ other",
            "radar",
            "pass rate per prompt",
            "2 result(s)",
        ],
        limit,
    );
    assert_eq!(server.count(), 2, "one case on each backend:\n{screen}");
    assert!(
        screen.contains("100.0%") && screen.contains("0.0%"),
        "{screen}"
    );
    assert!(!screen.contains("no stored run:"), "{screen}");

    tui.keys(&["q", "C-q"]);
    tui.wait_for(&["EXITED 0"], limit);

    // The CLI's comparison reads the same stored runs, and asks nothing.
    let reuse = project.run(&["compare", "ask", "--backend", "fake,other", "--reuse"]);
    assert_eq!(reuse.code, 0, "{reuse:?}");
    assert!(reuse.stderr.contains("reusing 2 stored runs"), "{reuse:?}");
    assert_eq!(server.count(), 2);
}
