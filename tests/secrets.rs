//! API keys reach a provider's request header and nothing else. Every command of the binary
//! runs with fake keys in the environment (each provider's default variable, a custom
//! `api_key_env`, and variables promptdeck does not read) against loopback servers of each
//! provider that misbehave the way real ones do: 401 bodies that echo the key, 429s that echo
//! it, a gateway that reflects every request header (as it is, URL-encoded and base64) in its
//! error page, and errors inside a 200 stream. Then stdout and stderr of every command, the
//! HTTP answers of `promptdeck serve`, the workbench's screen and log, and every file the
//! commands left (the sled store, the response cache, reports, exports, converted projects) are
//! searched for each key, raw, percent-encoded and base64 (at every byte alignment): zero hits.
//!
//! The search is not vacuous: every server must have received its key in the provider's header
//! (and never in a body), the echoes must have arrived (the output shows `[redacted]` where they
//! were), and the store and cache files must hold the answers in plain bytes.

mod common;

#[path = "common/bounded.rs"]
mod bounded;
#[allow(dead_code)]
#[path = "backends/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::tmux::Session;
use common::{Run, TempProject};
use server::{Recorded, Reply, Server, sse_event};

/// The variable of the backend that names its own (`api_key_env`).
const CUSTOM_VAR: &str = "PD_SECRETS_CUSTOM_KEY";

/// Every variable set on every command, with a value found nowhere else. `+`, `/` and `=` in
/// the custom key make its URL-encoded and base64 forms differ from the raw one.
const SECRETS: [(&str, &str); 6] = [
    ("OPENAI_API_KEY", "sk-oa-PDLEAK1a2b3c4d5e6f7g8h9"),
    ("ANTHROPIC_API_KEY", "sk-ant-PDLEAK2b3c4d5e6f7g8h9i0"),
    ("GEMINI_API_KEY", "AIzaPDLEAK3c4d5e6f7g8h9i0j1k"),
    (CUSTOM_VAR, "ck-PDLEAK4+custom/key=9z8y7x"),
    // Not read by promptdeck; set because users have them set.
    ("GOOGLE_API_KEY", "AIzaPDLEAK5googlegoogle6543"),
    ("HF_TOKEN", "hf_PDLEAK6hubtokenhubtoken21"),
];
/// In every secret: the raw search for it catches a piece of a key too.
const MARKER: &str = "PDLEAK";

const ANSWER: &str = "Lyon is in France, of course.";
/// Generous: `tokenize` fetches the embedded model on a machine that has never run it.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

const PROMPT: &str = common::ASK_PROMPT;

/// One case per way a provider can answer; the marker in `city` reaches the server in the body.
const TESTS: &str = "- description: lyon
  vars: {city: Lyon}
  assert:
    - type: contains
      value: France
- description: rejected
  vars: {city: REJECT-401}
  assert:
    - type: contains
      value: France
- description: limited
  vars: {city: RATE-429}
  assert:
    - type: contains
      value: France
- description: reflected
  vars: {city: REFLECT-400}
  assert:
    - type: contains
      value: France
- description: stream error
  vars: {city: STREAM-ERROR}
  assert:
    - type: contains
      value: France
- description: redirected
  vars: {city: REDIRECT-307}
  assert:
    - type: contains
      value: France
- description: moved within the server
  vars: {city: HOP-307}
  assert:
    - type: contains
      value: France
";
const CASES: [&str; 7] = [
    "lyon",
    "moved within the server",
    "rejected",
    "limited",
    "reflected",
    "stream error",
    "redirected",
];

/// A ReAct prompt whose command tool prints its environment: the tool's output is stored in the
/// trace and sent back to the model, so a key in the tool's environment would leak both ways.
const AGENT: &str = "---
technique: {kind: react, tools: [printenv], max_steps: 3}
---
Use the printenv tool once, then answer.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
    /// OpenAI's wire, with `api_key_env` naming the custom variable.
    Custom,
}

const PROVIDERS: [Provider; 4] = [
    Provider::OpenAi,
    Provider::Anthropic,
    Provider::Gemini,
    Provider::Custom,
];

impl Provider {
    fn backend(self) -> &'static str {
        match self {
            Provider::OpenAi => "remote-openai",
            Provider::Anthropic => "remote-anthropic",
            Provider::Gemini => "remote-gemini",
            Provider::Custom => "custom",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Provider::OpenAi | Provider::Custom => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
        }
    }

    fn var(self) -> &'static str {
        match self {
            Provider::OpenAi => "OPENAI_API_KEY",
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::Gemini => "GEMINI_API_KEY",
            Provider::Custom => CUSTOM_VAR,
        }
    }

    fn key(self) -> &'static str {
        secret(self.var())
    }

    fn config(self, server: &Server) -> String {
        let base = match self.kind() {
            "openai" => format!("{}/v1", server.url()),
            _ => server.url(),
        };
        let key_env = match self {
            Provider::Custom => format!("api_key_env = \"{CUSTOM_VAR}\"\n"),
            // The provider's default variable: nothing in the config names it.
            _ => String::new(),
        };
        format!(
            "\n[backends.{}]\nkind = \"{}\"\nmodel = \"{}-model\"\nbase_url = \"{base}\"\n{key_env}\
             timeout = 10\nretries = 1\nprices = {{ input = 2.0, output = 8.0 }}\n",
            self.backend(),
            self.kind(),
            self.kind(),
        )
    }

    /// The header that carries the key, and the key in it.
    fn key_header(self, req: &Recorded) -> Option<String> {
        match self.kind() {
            "openai" => req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned),
            "anthropic" => req.header("x-api-key").map(str::to_owned),
            _ => req.header("x-goog-api-key").map(str::to_owned),
        }
    }

    /// `thief` is another server: a redirect there must not take the key along.
    fn reply(self, req: &Recorded, thief: &str) -> Reply {
        if req.method == "GET" {
            return self.models();
        }
        if req.body.contains("HOP-307") && !req.target.contains("hop=1") {
            // A redirect within the same server, which is followed (with the key).
            let sep = if req.target.contains('?') { '&' } else { '?' };
            return redirect(&format!("{}{sep}hop=1", req.target));
        }
        if req.body.contains("REDIRECT-307") {
            return redirect(&format!("{thief}{}", req.target));
        }
        let key = self.key_header(req).unwrap_or_default();
        // What a careless gateway prints about the request: every header, as sent, URL-encoded
        // and base64-encoded.
        let dump: String = req
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v} (url {}, base64 {})\n", percent(v), base64(v)))
            .collect();
        let echo = format!(
            "key {key}, url-encoded {}, base64 {}",
            percent(&key),
            base64(&key)
        );
        let body = &req.body;
        if body.contains("REJECT-401") {
            return server::json(401, &[], &self.error_body(401, &echo));
        }
        if body.contains("RATE-429") {
            return server::json(
                429,
                &[("Retry-After", "0")],
                &self.error_body(429, &format!("rate limited: {echo}")),
            );
        }
        if body.contains("REFLECT-400") {
            return Reply::Parts(
                vec![server::response(
                    400,
                    &[],
                    "text/plain",
                    &format!("400 Bad Request\n{dump}"),
                )],
                Duration::ZERO,
            );
        }
        if body.contains("STREAM-ERROR") {
            let message = format!("overloaded; {echo}; request was:\n{dump}");
            let stream = match self.kind() {
                "anthropic" => format!(
                    "event: error\ndata: {}\n\n",
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": message}})
                ),
                _ => format!(
                    "data: {}\n\n",
                    json!({"error": {"message": message, "type": "server_error", "code": 500}})
                ),
            };
            return server::sse(&stream, 32);
        }
        if body.contains("Use the printenv tool") {
            let text = if body.contains("Observation:") {
                "Final Answer: done"
            } else {
                "Thought: look at the environment\nAction: printenv[now]"
            };
            return server::sse(&self.stream(text), 16);
        }
        server::sse(&self.stream(ANSWER), 16)
    }

    fn error_body(self, status: u16, message: &str) -> Value {
        match self.kind() {
            "anthropic" => json!({"type": "error", "error": {"type": "authentication_error",
                "message": format!("invalid x-api-key: {message}")}}),
            "gemini" => json!({"error": {"code": status,
                "message": format!("API key not valid: {message}"), "status": "UNAUTHENTICATED"}}),
            _ => json!({"error": {"message": format!("Incorrect API key provided: {message}"),
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        }
    }

    fn models(self) -> Reply {
        let body = match self.kind() {
            "anthropic" => json!({"data": [{"type": "model", "id": "anthropic-model",
                "display_name": "A"}], "has_more": false}),
            "gemini" => json!({"models": [{"name": "models/gemini-model"}]}),
            _ => json!({"object": "list", "data": [{"id": "openai-model", "object": "model",
                "created": 1, "owned_by": "test"}]}),
        };
        server::json(200, &[], &body)
    }

    /// `text` streamed in the provider's format, with token counts.
    fn stream(self, text: &str) -> String {
        match self.kind() {
            "anthropic" => [
                sse_event(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "m", "type": "message",
                        "role": "assistant", "content": [], "model": "anthropic-model",
                        "usage": {"input_tokens": 20, "output_tokens": 1}}}),
                ),
                sse_event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
                ),
                sse_event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": text}}),
                ),
                sse_event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
                sse_event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 8}}),
                ),
                sse_event("message_stop", json!({"type": "message_stop"})),
            ]
            .concat(),
            "gemini" => format!(
                "data: {}\r\n\r\n",
                json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 8,
                "totalTokenCount": 28}})
            ),
            _ => {
                let chunk = |delta: Value, finish: Option<&str>| {
                    format!(
                        "data: {}\n\n",
                        json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                        "model": "openai-model",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                    )
                };
                let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                    "model": "openai-model", "choices": [],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}});
                format!(
                    "{}{}{}data: {usage}\n\ndata: [DONE]\n\n",
                    chunk(json!({"role": "assistant", "content": ""}), None),
                    chunk(json!({"content": text}), None),
                    chunk(json!({}), Some("stop")),
                )
            }
        }
    }
}

/// A 307 to `location`.
fn redirect(location: &str) -> Reply {
    Reply::Parts(
        vec![server::response(
            307,
            &[("Location", location)],
            "text/plain",
            "moved",
        )],
        Duration::ZERO,
    )
}

fn secret(var: &str) -> &'static str {
    SECRETS
        .iter()
        .find(|(v, _)| *v == var)
        .map(|(_, s)| *s)
        .expect("a secret for the variable")
}

/// RFC 3986 percent-encoding (unreserved characters kept), upper-case hex.
fn percent(text: &str) -> String {
    percent_encode(text, |b| format!("%{b:02X}"))
}

/// The same with lower-case hex, which some encoders write.
fn percent_lower(text: &str) -> String {
    percent_encode(text, |b| format!("%{b:02x}"))
}

/// Percent-encoding with `escape` writing each byte that is not unreserved.
fn percent_encode(text: &str, escape: impl Fn(u8) -> String) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                escape(b)
            }
        })
        .collect()
}

/// Standard base64 with padding, written out here so the test does not share the code it checks.
fn base64(text: &str) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Everything that betrays `secret`: the raw text, its percent-encodings, and the base64 text
/// that encodes it at each of the three byte offsets it can have inside a longer value (only
/// the characters determined by the secret alone), in both base64 alphabets.
fn needles(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    out.push(percent(secret));
    out.push(percent_lower(secret));
    for offset in 0..3usize {
        let padded = format!("{}{secret}", "\u{1}".repeat(offset));
        let encoded = base64(&padded);
        let first = (8 * offset).div_ceil(6);
        let end = 8 * (offset + secret.len()) / 6;
        let core = &encoded[first..end];
        out.push(core.to_owned());
        out.push(core.replace('+', "-").replace('/', "_"));
    }
    out.sort();
    out.dedup();
    out
}

/// Every needle with the variable it betrays; the marker alone catches a piece of any key.
fn all_needles() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = SECRETS
        .iter()
        .flat_map(|(var, s)| needles(s).into_iter().map(move |n| (var.to_string(), n)))
        .collect();
    all.push(("a key".to_owned(), MARKER.to_owned()));
    all
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Something a command produced, to be searched.
struct Evidence {
    what: String,
    bytes: Vec<u8>,
}

struct Fixture {
    project: TempProject,
    servers: Vec<(Provider, Server)>,
    /// The target of the providers' redirects.
    thief: Server,
    evidence: Vec<Evidence>,
    /// The commands run so far (`run`, `label set`, ...), to check none was left out.
    ran: BTreeSet<String>,
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = common::runtime(2);
        let mut config = String::from("[defaults]\nbackend = \"remote-openai\"\n");
        let mut servers = Vec::new();
        // Where the `redirected` case points: it answers like a provider, so only what it
        // receives tells whether a key went along.
        let thief = runtime.block_on(Server::start(|_, _| {
            server::sse(&Provider::OpenAi.stream(ANSWER), 16)
        }));
        for provider in PROVIDERS {
            let thief = thief.url();
            let server = runtime.block_on(Server::start(move |_, req| provider.reply(req, &thief)));
            config.push_str(&provider.config(&server));
            servers.push((provider, server));
        }
        config.push_str(
            "\n[tools.printenv]\ncommand = [\"sh\", \"-c\", \"env\"]\ndescription = \"prints the environment\"\ntimeout = 5\n",
        );
        let project = TempProject::with_config(&config);
        project.write("prompts/ask.prompty", PROMPT);
        project.write("prompts/ask.tests.yaml", TESTS);
        project.write("prompts/zz/agent.prompty", AGENT);
        Fixture {
            project,
            servers,
            thief,
            evidence: Vec::new(),
            ran: BTreeSet::new(),
            _runtime: runtime,
        }
    }

    fn server(&self, provider: Provider) -> &Server {
        common::paired(&self.servers, &provider)
    }

    /// A command with every secret in its environment and every log switch on.
    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = common::binary();
        command
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "full");
        for (var, value) in SECRETS {
            command.env(var, value);
        }
        command
    }

    /// Runs a command in `dir`, keeps its output as evidence and returns it.
    fn run_in(&mut self, dir: &Path, args: &[&str]) -> Run {
        self.note(args);
        let command = self.command(dir, args);
        let run = Run::from(bounded::output_within(command, COMMAND_LIMIT));
        self.keep(&format!("`{}`", args.join(" ")), &run);
        run
    }

    fn run(&mut self, args: &[&str]) -> Run {
        let root = self.project.root().to_path_buf();
        self.run_in(&root, args)
    }

    /// Runs a command that must succeed.
    fn ok(&mut self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        run
    }

    /// Records which command `args` runs: the subcommand, with its own subcommand for the
    /// command groups.
    fn note(&mut self, args: &[&str]) {
        match args {
            [group @ ("bench" | "label"), sub, ..] => self.ran.insert(format!("{group} {sub}")),
            [command, ..] => self.ran.insert((*command).to_owned()),
            [] => self.ran.insert("tui".to_owned()),
        };
    }

    fn keep(&mut self, what: &str, run: &Run) {
        self.evidence.push(Evidence {
            what: format!("stdout of {what}"),
            bytes: run.stdout.clone().into_bytes(),
        });
        self.evidence.push(Evidence {
            what: format!("stderr of {what}"),
            bytes: run.stderr.clone().into_bytes(),
        });
    }

    fn keep_text(&mut self, what: &str, text: String) {
        self.evidence.push(Evidence {
            what: what.to_owned(),
            bytes: text.into_bytes(),
        });
    }
}

/// The subcommand names of a clap `--help` page: the first word of each entry under
/// `Commands:` (entries are indented two spaces, their wrapped lines further).
fn commands_in_help(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect_files(&path, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

#[test]
fn no_command_leaks_an_api_key() {
    let mut f = Fixture::new();
    let root = f.project.root().to_path_buf();
    let reports = root.join("reports");
    std::fs::create_dir_all(&reports).expect("reports dir");

    // Project commands.
    f.ok(&["--help"]);
    let fresh = root.join("fresh");
    std::fs::create_dir_all(&fresh).expect("fresh dir");
    let run = f.run_in(&fresh, &["init"]);
    assert_eq!(run.code, 0, "{run:?}");
    f.ok(&["check"]);
    f.ok(&["render", "ask", "--case", "lyon"]);
    for provider in PROVIDERS {
        f.ok(&[
            "render",
            "ask",
            "--backend",
            provider.backend(),
            "--format",
            "json",
        ]);
    }
    f.ok(&["commit", "ask", "-m", "first"]);
    // Before anything fills the response cache, so the workbench's run reaches the server.
    workbench_runs_without_leaking(&mut f);

    // One run per backend and case: the streamed answer and every kind of failure.
    let mut redacted = 0;
    for provider in PROVIDERS {
        for case in CASES {
            let run = f.run(&[
                "run",
                "ask",
                "--case",
                case,
                "--backend",
                provider.backend(),
                "--no-cache",
            ]);
            if case == "lyon" || case == "moved within the server" {
                assert_eq!(run.code, 0, "{provider:?}: {run:?}");
                assert_eq!(run.stdout, format!("{ANSWER}\n"), "{provider:?}");
            } else {
                assert_ne!(run.code, 0, "{provider:?} {case}: {run:?}");
                assert!(run.stderr.contains("error"), "{provider:?} {case}: {run:?}");
            }
            if case == "redirected" {
                assert!(
                    run.stderr.contains("redirects to another server"),
                    "{provider:?}: {run:?}"
                );
            }
            if run.stderr.contains("[redacted]") {
                redacted += 1;
            }
        }
    }
    // 401, 429 and the reflected headers on each of the four; in-stream errors where the wire
    // reports them as errors. The echoes arrived and were replaced.
    assert!(
        redacted >= 12,
        "only {redacted} runs showed a redacted echo"
    );
    // Cached answers, several backends and samples, JSON results.
    f.ok(&["run", "ask", "--case", "lyon"]);
    let all = f.run(&[
        "run",
        "ask",
        "--all-cases",
        "--backend",
        "remote-openai,remote-anthropic,remote-gemini,custom",
        "--samples",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(all.code, 1, "{all:?}");
    assert!(all.stdout.contains("[redacted]"), "{}", all.stdout);
    let agent = f.ok(&["run", "zz/agent"]);
    assert_eq!(agent.stdout, "done\n", "{agent:?}");

    // Regression tests with every report, a baseline file, and a comparison against it.
    let path = |name: &str| reports.join(name).display().to_string();
    let backends = "remote-openai,remote-anthropic,remote-gemini,custom";
    let tested = f.run(&[
        "test",
        "--backend",
        backends,
        "--junit",
        &path("junit.xml"),
        "--json",
        &path("report.json"),
        "--markdown",
        &path("summary.md"),
        "--baseline-file",
        &path("baseline.json"),
        "--update-baseline",
    ]);
    assert_eq!(tested.code, 1, "{tested:?}");
    let retested = f.run(&[
        "test",
        "--backend",
        backends,
        "--no-cache",
        "--baseline-file",
        &path("baseline.json"),
        "--fail-on",
        "regression",
        "--json",
        &path("report2.json"),
    ]);
    assert_eq!(retested.code, 0, "{retested:?}");
    let report = std::fs::read_to_string(reports.join("report.json")).expect("report.json");
    assert!(report.contains("[redacted]"), "{report}");
    f.run(&[
        "compare",
        "ask",
        "--backend",
        "remote-openai,remote-anthropic",
        "--html",
        &path("compare.html"),
        "--json",
        &path("compare.json"),
    ]);
    assert!(reports.join("compare.html").is_file());

    // The version store.
    f.ok(&["history", "ask"]);
    f.ok(&["history", "ask", "--format", "json"]);
    f.ok(&["show", "ask@latest"]);
    f.ok(&["label", "set", "prod", "ask@latest"]);
    f.ok(&["label", "list"]);
    f.ok(&["label", "log", "prod"]);
    f.project.write(
        "prompts/ask.prompty",
        PROMPT.replace("one sentence", "two sentences"),
    );
    f.ok(&["diff", "ask@prod", "working"]);
    f.ok(&["diff", "ask@prod", "working", "--format", "json"]);
    f.ok(&["restore", "ask@prod", "--force"]);
    f.ok(&["runs"]);
    let runs: Value =
        serde_json::from_str(&f.ok(&["runs", "--format", "json"]).stdout).expect("runs JSON");
    let ids: Vec<String> = runs
        .as_array()
        .expect("a list of runs")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.len() >= 20, "{runs}");
    for id in &ids {
        f.ok(&["show", id]);
        f.ok(&["show", id, "--format", "json"]);
    }
    let export = f.ok(&["export"]);
    assert!(export.stdout.contains(ANSWER));
    f.ok(&["export", "--out", "reports/export.jsonl"]);
    let other = TempProject::new();
    let imported = f.run_in(
        other.root(),
        &[
            "import",
            &reports.join("export.jsonl").display().to_string(),
        ],
    );
    assert_eq!(imported.code, 0, "{imported:?}");

    // A promptfoo config with a key written inline: it is never copied.
    f.project.write(
        "pf/promptfooconfig.yaml",
        format!(
            "prompts: ['Say {{{{topic}}}}']\nproviders:\n  - id: openai:gpt-4o-mini\n    config:\n      apiKey: {}\ntests:\n  - vars: {{topic: hi}}\n",
            secret("OPENAI_API_KEY")
        ),
    );
    let converted = f.run(&[
        "import-promptfoo",
        "pf/promptfooconfig.yaml",
        "--out",
        "converted",
    ]);
    assert_eq!(converted.code, 0, "{converted:?}");
    assert!(root.join("converted/promptdeck.toml").is_file());
    // The inline key is in the project only in the promptfoo file it came from.
    std::fs::remove_file(root.join("pf/promptfooconfig.yaml")).expect("remove the config");

    // Models, the local tokenizer, benches and completions.
    f.ok(&["models"]);
    f.ok(&["models", "--format", "json"]);
    f.ok(&["models", "--remote"]);
    f.ok(&["models", "--remote", "--format", "json"]);
    f.ok(&["tokenize", "Hello, world!"]);
    f.ok(&[
        "bench",
        "store",
        "--versions",
        "20",
        "--outputs",
        "40",
        "--prompts",
        "2",
    ]);
    f.ok(&["bench", "harness", "--cases", "20", "--concurrency", "2"]);
    f.ok(&[
        "bench",
        "local",
        "--prompt-tokens",
        "8",
        "--tokens",
        "4",
        "--threads",
        "1",
    ]);
    f.ok(&["bench", "tui", "--versions", "20", "--tokens", "20"]);
    f.ok(&["completions", "bash"]);

    serve_answers_without_keys(&mut f);

    // Every command `--help` lists was run above; a new one fails here until it is added.
    let mut listed = BTreeSet::new();
    for group in [None, Some("bench"), Some("label")] {
        let mut args: Vec<&str> = group.into_iter().collect();
        args.push("--help");
        let help = f.ok(&args).stdout;
        for name in commands_in_help(&help) {
            if name != "help" {
                listed.insert(group.map_or(name.clone(), |g| format!("{g} {name}")));
            }
        }
    }
    listed.remove("bench");
    listed.remove("label");
    assert!(listed.len() >= 25, "{listed:?}");
    let missed: Vec<&String> = listed.difference(&f.ran).collect();
    assert!(
        missed.is_empty(),
        "commands not run with keys set: {missed:?}"
    );

    // Not vacuous: each server got its key, in its header only, and never in a body.
    for (provider, server) in &f.servers {
        let requests = server.requests.lock().expect("requests").clone();
        assert!(requests.len() >= 10, "{provider:?}: {}", requests.len());
        assert!(
            requests.iter().any(|r| r.target.contains("hop=1")),
            "{provider:?}: the redirect within the server was followed"
        );
        for request in &requests {
            assert_eq!(
                provider.key_header(request).as_deref(),
                Some(provider.key()),
                "{provider:?} {request:?}"
            );
            for (var, needle) in all_needles() {
                assert!(
                    !request.body.contains(&needle) && !request.target.contains(&needle),
                    "{var} ({needle}) in a request body or URL to {provider:?}: {request:?}"
                );
            }
        }
    }
    // What the target of the cross-server redirect received is searched too; below, it must
    // have received nothing at all (the redirect is not followed).
    let stolen = f.thief.requests.lock().expect("requests").clone();
    for request in &stolen {
        f.keep_text(
            &format!(
                "the redirect target's request {} {}",
                request.method, request.target
            ),
            format!("{:?}\n{}", request.headers, request.body),
        );
    }
    // The tool really printed an environment, and it reached the model's next request.
    let model = f.server(Provider::OpenAi);
    let observed = model
        .requests
        .lock()
        .expect("requests")
        .iter()
        .any(|r| r.body.contains("Observation: ") && r.body.contains("PATH="));
    assert!(
        observed,
        "the printenv tool's output never reached the model"
    );

    // Every file the commands left, under both projects.
    let mut files = Vec::new();
    collect_files(&root, &mut files);
    collect_files(other.root(), &mut files);
    let data = root.join(".promptdeck");
    for part in ["store", "cache"] {
        assert!(
            files.iter().any(|p| p.starts_with(data.join(part))
                && find(&std::fs::read(p).unwrap_or_default(), ANSWER.as_bytes())),
            "no {part} file holds an answer in plain bytes, so searching them proves nothing"
        );
    }
    assert!(
        files.iter().any(|p| p.starts_with(data.join("store"))
            && find(&std::fs::read(p).unwrap_or_default(), b"[redacted]")),
        "the stored errors hold the redacted echoes"
    );
    for file in &files {
        let bytes = std::fs::read(file).expect("read a file");
        f.evidence.push(Evidence {
            what: file.display().to_string(),
            bytes,
        });
    }

    let needles = all_needles();
    let mut hits = Vec::new();
    for evidence in &f.evidence {
        for (var, needle) in &needles {
            if find(&evidence.bytes, needle.as_bytes()) {
                hits.push(format!("{var} as `{needle}` in {}", evidence.what));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "{} leak(s):\n{}",
        hits.len(),
        hits.join("\n")
    );
    assert!(
        stolen.is_empty(),
        "a redirect to another server was followed: {} request(s)",
        stolen.len()
    );
    assert!(
        f.evidence.len() > 150,
        "{} pieces searched",
        f.evidence.len()
    );
}

/// `promptdeck serve` over the OpenAI backend: an answer, an upstream 401 that echoes the key,
/// and the model list, as a client sees them; the server's stderr.
fn serve_answers_without_keys(f: &mut Fixture) {
    let root = f.project.root().to_path_buf();
    f.note(&["serve"]);
    let mut command = f.command(
        &root,
        &["serve", "--port", "0", "--backend", "remote-openai"],
    );
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn promptdeck serve");
    let pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let port: u16 = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a `listening on` line from promptdeck serve");
        if let Some(rest) = line.strip_prefix("promptdeck serve: listening on http://127.0.0.1:") {
            break rest
                .split('/')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port");
        }
    };
    let ok = http(
        port,
        "POST",
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Which country is Lyon in?"}]})
            .to_string(),
    );
    assert!(ok.contains(ANSWER), "{ok}");
    let streamed = http(
        port,
        "POST",
        "/v1/chat/completions",
        &json!({"stream": true, "messages": [{"role": "user", "content": "Lyon?"}]}).to_string(),
    );
    let rejected = http(
        port,
        "POST",
        "/v1/chat/completions",
        &json!({"model": "custom", "messages": [{"role": "user", "content": "REJECT-401"}]})
            .to_string(),
    );
    assert!(rejected.contains("[redacted]"), "{rejected}");
    let reflected = http(
        port,
        "POST",
        "/v1/chat/completions",
        &json!({"model": "remote-anthropic", "messages": [{"role": "user", "content": "REFLECT-400"}]})
            .to_string(),
    );
    let models = http(port, "GET", "/v1/models", "");
    let _ = child.kill();
    let _ = child.wait();
    let stderr = reader.join().unwrap_or_default();
    for (what, text) in [
        ("serve: answer", ok),
        ("serve: streamed answer", streamed),
        ("serve: upstream 401", rejected),
        ("serve: upstream reflection", reflected),
        ("serve: models", models),
        ("serve: stderr", stderr),
    ] {
        f.keep_text(what, text);
    }
}

/// One HTTP/1.1 exchange with `promptdeck serve`; the whole response as text.
fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// The workbench in tmux: open, run the selected case on the OpenAI backend, quit. Its screen
/// and `.promptdeck/tui.log` (searched with the other files) must not show a key.
fn workbench_runs_without_leaking(f: &mut Fixture) {
    common::tmux::assert_available(
        "this test drives the workbench in tmux, which is not installed (Debian/Ubuntu: `apt-get install tmux`)",
    );
    let name = format!("pd-secrets-{}", std::process::id());
    let mut shell = String::from("NO_COLOR=1 RUST_LOG=trace ");
    for (var, value) in SECRETS {
        shell.push_str(&format!("{var}='{value}' "));
    }
    shell.push_str(&format!(
        "'{}'; echo \"EXITED $?\"; sleep 600",
        env!("CARGO_BIN_EXE_promptdeck")
    ));
    let before = f.server(Provider::OpenAi).count();
    f.note(&[]);
    let mut session = Session::start(None, name, f.project.root(), &shell, (120, 40));
    session.key_pause = Duration::from_millis(100);
    let limit = Duration::from_secs(30);
    session.wait_for(&["Which country is Lyon in?"], limit);
    session.keys(&["C-r"]);
    let ran = session.wait_for(&["run done"], limit);
    f.keep_text("the workbench's screen after a run", ran);
    session.keys(&["C-q"]);
    let closed = session.wait_for(&["EXITED"], limit);
    f.keep_text("the terminal after the workbench", closed);
    assert!(
        f.server(Provider::OpenAi).count() > before,
        "the workbench's run reached the server"
    );
}
