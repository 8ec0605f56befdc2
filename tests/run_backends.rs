//! `promptdeck run PROMPT --backend NAME` through the real binary for every API kind (OpenAI,
//! Anthropic, Gemini), against loopback servers that speak each provider's wire format: the
//! streamed answer on stdout, the run line and token counts on stderr, the exact request each
//! provider receives, the stored run (`runs`, `show`) with usage and cost, failures (401, a
//! missing key variable), the response cache and `--no-cache`, `models --remote`, and that an
//! API key never appears in any output, export or file under `.promptdeck/`.
//!
//! The servers run on a tokio runtime inside the test process; the binary is a child process
//! pointed at them through `base_url`, with the key set only in the child's environment.

mod common;

#[path = "common/bounded.rs"]
mod bounded;
#[allow(dead_code)]
#[path = "backends/server.rs"]
mod server;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use common::{Run, TempProject};
use server::{Recorded, Reply, Server, sse_event};

/// The variable every test backend reads its key from; set only on child commands.
const KEY_VAR: &str = "PD_RUN_BACKENDS_TEST_KEY";
const KEY: &str = "sk-test-key-0123456789";
/// Distinctive, so any leak of it (or of a piece of it) is found by a byte search.
const SECRET: &str = "sk-test-REDACTME-1234567890";
const SECRET_PART: &str = "REDACTME";

const SYSTEM: &str = "You answer geography questions in one sentence.";
const USER: &str = "Which country is Lyon in?";
const PROMPT: &str = common::ASK_PROMPT;
const TESTS: &str = "- description: lyon
  vars:
    city: Lyon
  assert:
    - type: contains
      value: France
";
/// A `--var` that makes the servers answer 401 (the marker reaches them in the request body).
const REJECT: &str = "city=REJECT-ME";
/// Makes the servers answer 401 with a plain-text page, as a gateway might.
const REJECT_PLAIN: &str = "city=REJECT-PLAIN";

/// The answer every server streams, in these pieces, with these token counts.
const PIECES: [&str; 4] = ["Lyon is ", "in Fr", "ance", ", of course."];
const ANSWER: &str = "Lyon is in France, of course.";
const TOKENS_IN: u64 = 23;
const TOKENS_OUT: u64 = 9;
/// `prices = { input = 2.0, output = 8.0 }` per million tokens.
const COST: f64 = (TOKENS_IN as f64 * 2.0 + TOKENS_OUT as f64 * 8.0) / 1e6;

const COMMAND_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
}

const ALL: [Provider; 3] = [Provider::OpenAi, Provider::Anthropic, Provider::Gemini];

impl Provider {
    fn kind(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
        }
    }

    fn backend(self) -> String {
        format!("remote-{}", self.kind())
    }

    fn model(self) -> &'static str {
        match self {
            Provider::OpenAi => "gpt-test-mini",
            Provider::Anthropic => "claude-test",
            Provider::Gemini => "gemini-test",
        }
    }

    /// OpenAI-compatible bases include `/v1`; Anthropic and Gemini append their version.
    fn base_url(self, server: &Server) -> String {
        match self {
            Provider::OpenAi => format!("{}/v1", server.url()),
            _ => server.url(),
        }
    }

    /// The models each server lists, as `models --remote` should report them.
    fn listed_models(self) -> [&'static str; 2] {
        match self {
            Provider::OpenAi => ["gpt-test-mini", "gpt-test-large"],
            Provider::Anthropic => ["claude-test", "claude-test-opus"],
            Provider::Gemini => ["gemini-test", "gemini-test-pro"],
        }
    }

    /// The provider's own words in its 401 body (the rest echoes the key).
    fn rejection(self) -> &'static str {
        match self {
            Provider::OpenAi => "Incorrect API key provided",
            Provider::Anthropic => "invalid x-api-key",
            Provider::Gemini => "API key not valid",
        }
    }

    /// The key as the request carried it, in the provider's header.
    fn key_of(self, req: &Recorded) -> Option<String> {
        match self {
            Provider::OpenAi => req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned),
            Provider::Anthropic => req.header("x-api-key").map(str::to_owned),
            Provider::Gemini => req.header("x-goog-api-key").map(str::to_owned),
        }
    }

    /// How the server answers: model lists for GET, a 401 echoing the key for requests that
    /// carry the reject marker, a streamed answer otherwise.
    fn reply(self, req: &Recorded) -> Reply {
        if req.method == "GET" {
            return self.models_reply();
        }
        if req.body.contains("REJECT-ME") {
            return self.unauthorized(&self.key_of(req).unwrap_or_default());
        }
        if req.body.contains("REJECT-PLAIN") {
            // A gateway's plain-text error page that echoes the request's credentials.
            let page = format!(
                "401 Unauthorized: no access for key {}",
                self.key_of(req).unwrap_or_default()
            );
            return Reply::Parts(
                vec![server::response(401, &[], "text/plain", &page)],
                Duration::ZERO,
            );
        }
        server::sse(&self.stream_body(), 16)
    }

    fn stream_body(self) -> String {
        match self {
            Provider::OpenAi => {
                let chunk = |delta: Value, finish: Option<&str>| {
                    let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                        "created": 1, "model": "gpt-test-mini",
                        "choices": [{"index": 0, "delta": delta, "logprobs": null,
                                     "finish_reason": finish}]});
                    format!("data: {c}\n\n")
                };
                let mut body = chunk(json!({"role": "assistant", "content": ""}), None);
                for piece in PIECES {
                    body.push_str(&chunk(json!({"content": piece}), None));
                }
                body.push_str(&chunk(json!({}), Some("stop")));
                let usage = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                    "created": 1, "model": "gpt-test-mini", "choices": [],
                    "usage": {"prompt_tokens": TOKENS_IN, "completion_tokens": TOKENS_OUT,
                              "total_tokens": TOKENS_IN + TOKENS_OUT}});
                body.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
                body
            }
            Provider::Anthropic => {
                let mut body = sse_event(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                        "role": "assistant", "content": [], "model": "claude-test",
                        "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": TOKENS_IN, "output_tokens": 1}}}),
                );
                body.push_str(&sse_event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}}),
                ));
                body.push_str(&sse_event("ping", json!({"type": "ping"})));
                for piece in PIECES {
                    body.push_str(&sse_event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": piece}}),
                    ));
                }
                body.push_str(&sse_event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                body.push_str(&sse_event(
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                           "usage": {"output_tokens": TOKENS_OUT}}),
                ));
                body.push_str(&sse_event("message_stop", json!({"type": "message_stop"})));
                body
            }
            Provider::Gemini => {
                let last = PIECES.len() - 1;
                PIECES
                    .iter()
                    .enumerate()
                    .map(|(i, piece)| {
                        let mut c = json!({"candidates": [{"content": {"parts": [{"text": piece}],
                            "role": "model"}, "index": 0}], "modelVersion": "gemini-test"});
                        let out = if i == last { TOKENS_OUT } else { i as u64 + 1 };
                        c["usageMetadata"] = json!({"promptTokenCount": TOKENS_IN,
                            "candidatesTokenCount": out, "totalTokenCount": TOKENS_IN + out});
                        if i == last {
                            c["candidates"][0]["finishReason"] = json!("STOP");
                        }
                        format!("data: {c}\r\n\r\n")
                    })
                    .collect()
            }
        }
    }

    fn unauthorized(self, key: &str) -> Reply {
        let body = match self {
            Provider::OpenAi => json!({"error": {
                "message": format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            Provider::Anthropic => json!({"type": "error", "error": {
                "type": "authentication_error", "message": format!("invalid x-api-key: {key}")}}),
            Provider::Gemini => json!({"error": {"code": 401,
                "message": format!("API key not valid: {key}. Please pass a valid API key."),
                "status": "UNAUTHENTICATED"}}),
        };
        server::json(401, &[], &body)
    }

    fn models_reply(self) -> Reply {
        let [a, b] = self.listed_models();
        let body = match self {
            Provider::OpenAi => json!({"object": "list", "data": [
                {"id": a, "object": "model", "created": 1, "owned_by": "test"},
                {"id": b, "object": "model", "created": 1, "owned_by": "test"}]}),
            Provider::Anthropic => json!({"data": [
                {"type": "model", "id": a, "display_name": "Claude Test"},
                {"type": "model", "id": b, "display_name": "Claude Test Opus"}],
                "has_more": false, "first_id": a, "last_id": b}),
            Provider::Gemini => json!({"models": [
                {"name": format!("models/{a}"), "displayName": "Gemini Test"},
                {"name": format!("models/{b}"), "displayName": "Gemini Test Pro"}]}),
        };
        server::json(200, &[], &body)
    }

    /// Asserts the exact shape of a chat request: path, auth header, system placement, the
    /// max-tokens field, the model and the stream flag.
    fn check_request(self, req: &Recorded, key: &str) {
        assert_eq!(req.method, "POST");
        assert_eq!(self.key_of(req).as_deref(), Some(key), "{req:?}");
        let body = req.json();
        let temperature = match self {
            Provider::Gemini => body.pointer("/generationConfig/temperature"),
            _ => body.get("temperature"),
        };
        assert_eq!(temperature.and_then(Value::as_f64), Some(0.0), "{body}");
        match self {
            Provider::OpenAi => {
                assert_eq!(req.target, "/v1/chat/completions");
                assert_eq!(req.header("x-api-key"), None);
                assert_eq!(body["model"], "gpt-test-mini");
                assert_eq!(
                    body["messages"],
                    json!([{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": USER}])
                );
                // A compatible server (not api.openai.com) gets the classic field name.
                assert_eq!(body["max_tokens"], 64, "{body}");
                assert!(body.get("max_completion_tokens").is_none(), "{body}");
                assert_eq!(body["stream"], true);
                assert_eq!(body["stream_options"], json!({"include_usage": true}));
            }
            Provider::Anthropic => {
                assert_eq!(req.target, "/v1/messages");
                assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(req.header("authorization"), None);
                assert_eq!(body["model"], "claude-test");
                assert_eq!(body["system"], SYSTEM);
                assert_eq!(body["messages"], json!([{"role": "user", "content": USER}]));
                assert_eq!(body["max_tokens"], 64, "{body}");
                assert_eq!(body["stream"], true);
            }
            Provider::Gemini => {
                assert_eq!(
                    req.target,
                    "/v1beta/models/gemini-test:streamGenerateContent?alt=sse"
                );
                assert_eq!(req.header("authorization"), None);
                assert_eq!(
                    body["systemInstruction"],
                    json!({"parts": [{"text": SYSTEM}]})
                );
                assert_eq!(
                    body["contents"],
                    json!([{"role": "user", "parts": [{"text": USER}]}])
                );
                assert_eq!(body["generationConfig"]["maxOutputTokens"], 64, "{body}");
                // The model is in the path and streaming in the method; neither in the body.
                assert!(body.get("model").is_none(), "{body}");
                assert!(body.get("stream").is_none(), "{body}");
            }
        }
    }
}

/// Loopback servers for some providers, and a project with a backend for each.
struct Fixture {
    project: TempProject,
    servers: Vec<(Provider, Server)>,
    // Dropped last: the servers' tasks run on it.
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(providers: &[Provider]) -> Fixture {
        let runtime = common::runtime(2);
        let mut config = String::from("[defaults]\nbackend = \"local\"\n");
        let mut servers = Vec::new();
        for &provider in providers {
            let server = runtime.block_on(Server::start(move |_, req| provider.reply(req)));
            config.push_str(&format!(
                "\n[backends.{}]\nkind = \"{}\"\nmodel = \"{}\"\nbase_url = \"{}\"\n\
                 api_key_env = \"{KEY_VAR}\"\ntimeout = 10\nretries = 2\n\
                 prices = {{ input = 2.0, output = 8.0 }}\n",
                provider.backend(),
                provider.kind(),
                provider.model(),
                provider.base_url(&server),
            ));
            servers.push((provider, server));
        }
        let project = TempProject::with_config(&config);
        project.write("prompts/ask.prompty", PROMPT);
        project.write("prompts/ask.tests.yaml", TESTS);
        Fixture {
            project,
            servers,
            _runtime: runtime,
        }
    }

    fn server(&self, provider: Provider) -> &Server {
        common::paired(&self.servers, &provider)
    }

    /// Runs the binary in the project with `key` (or no key) in `KEY_VAR`.
    fn run(&self, key: Option<&str>, args: &[&str]) -> Run {
        let mut command = common::binary();
        command
            .args(args)
            .current_dir(self.project.root())
            .env_remove(KEY_VAR);
        if let Some(key) = key {
            command.env(KEY_VAR, key);
        }
        Run::from(bounded::output_within(command, COMMAND_LIMIT))
    }

    fn run_case(&self, provider: Provider, key: Option<&str>, extra: &[&str]) -> Run {
        let backend = provider.backend();
        let mut args = vec!["run", "ask", "--case", "lyon", "--backend", &backend];
        args.extend_from_slice(extra);
        self.run(key, &args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let run = self.run(Some(KEY), args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed invalid JSON ({e}): {}", run.stdout))
    }

    /// The full id of the run whose short id `run` printed. Short ids are the shortest unique
    /// prefix when printed; run ids start with a timestamp, so a later run can make an earlier
    /// short id ambiguous.
    fn full_run_id(&self, short: &str) -> String {
        let id = self.listed_run(short)["id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(id.len(), 16, "{id}");
        id
    }

    /// The entry of `runs --format json` whose id starts with `short`.
    fn listed_run(&self, short: &str) -> Value {
        let runs = self.json(&["runs", "--format", "json"]);
        let list = runs.as_array().expect("runs is a list");
        let found: Vec<&Value> = list
            .iter()
            .filter(|r| r["id"].as_str().unwrap_or("").starts_with(short))
            .collect();
        assert_eq!(found.len(), 1, "run {short} in {runs:#}");
        found[0].clone()
    }
}

/// The short run id from the `run ID · ...` line on stderr.
fn run_id(run: &Run) -> String {
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap_or_else(|| panic!("no run line on stderr: {run:?}"));
    let id = line.split_whitespace().nth(1).expect("run id").to_owned();
    assert!(
        id.len() >= 4 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{line}"
    );
    id
}

fn done_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|l| l.starts_with("done in "))
        .unwrap_or_else(|| panic!("no `done in` line on stderr: {run:?}"))
}

fn successful_run_is_streamed_recorded_and_cached(provider: Provider) {
    let fixture = Fixture::new(&[provider]);
    let server = fixture.server(provider);
    let backend = provider.backend();

    let first = fixture.run_case(provider, Some(KEY), &[]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.stdout, format!("{ANSWER}\n"));
    let id = run_id(&first);
    let run_line = first
        .stderr
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap();
    assert!(
        run_line.contains(&format!("{backend} ({})", provider.model())),
        "{run_line}"
    );
    let done = done_line(&first);
    assert!(
        done.contains(&format!("{TOKENS_IN} in, {TOKENS_OUT} out")),
        "{done}"
    );
    assert!(done.contains(&format!("${COST:.6}")), "{done}");
    assert!(!done.contains("cached"), "{done}");
    assert_eq!(server.count(), 1);
    provider.check_request(&server.request(0), KEY);

    let listed = fixture.listed_run(&id);
    assert_eq!(listed["status"], "complete", "{listed}");
    assert_eq!(listed["backend"], backend.as_str());
    assert_eq!(listed["model"], provider.model());
    assert_eq!(listed["prompt"], "ask");
    assert_eq!(listed["results"], 1);
    // The case's assertion is checked against the streamed answer and the verdict stored.
    assert!(
        first.stderr.contains("case \"lyon\": PASS (score 1.00)"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("  pass contains: "),
        "{}",
        first.stderr
    );
    assert_eq!(listed["passed"], 1, "{listed}");

    let shown = fixture.json(&["show", &id, "--format", "json"]);
    assert_eq!(shown["results"][0]["passed"], true, "{shown:#}");
    assert_eq!(
        shown["results"][0]["assertions"][0]["assertion"], "contains",
        "{shown:#}"
    );
    assert_eq!(shown["run"]["status"], "complete", "{shown:#}");
    assert_eq!(shown["run"]["backend"], backend.as_str());
    let result = &shown["results"][0];
    assert_eq!(result["output"], ANSWER, "{shown:#}");
    assert_eq!(result["case_name"], "lyon");
    assert_eq!(
        result["usage"],
        json!({"input": TOKENS_IN, "output": TOKENS_OUT})
    );
    assert_eq!(result["finish_reason"], "stop");
    assert_eq!(result["cached"], false);
    assert!(result["error"].is_null(), "{result}");
    let cost = result["cost"].as_f64().expect("a cost");
    assert!((cost - COST).abs() < 1e-12, "cost {cost}, expected {COST}");
    assert_eq!(
        result["messages"],
        json!([{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}])
    );

    // The same request again is answered from the cache, without asking the server.
    let second = fixture.run_case(provider, Some(KEY), &[]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(second.stdout, format!("{ANSWER}\n"));
    let done = done_line(&second);
    assert!(done.ends_with(", cached"), "{done}");
    assert!(
        done.contains(&format!("{TOKENS_IN} in, {TOKENS_OUT} out")),
        "{done}"
    );
    assert_eq!(server.count(), 1, "a cache hit must not reach the server");
    let cached = fixture.json(&["show", &run_id(&second), "--format", "json"]);
    assert_eq!(cached["results"][0]["cached"], true, "{cached:#}");
    assert_eq!(cached["results"][0]["output"], ANSWER);

    // --no-cache asks the server again.
    let third = fixture.run_case(provider, Some(KEY), &["--no-cache"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(third.stdout, format!("{ANSWER}\n"));
    assert!(!done_line(&third).contains("cached"), "{third:?}");
    assert_eq!(server.count(), 2);
    provider.check_request(&server.request(1), KEY);
}

fn unauthorized_fails_the_run(provider: Provider) {
    let fixture = Fixture::new(&[provider]);
    let run = fixture.run_case(provider, Some(KEY), &["--var", REJECT]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "", "no answer text on stdout");
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {run:?}"));
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(error.contains(provider.rejection()), "{error}");
    assert!(
        !run.stderr.contains(KEY),
        "the echoed key is redacted: {error}"
    );
    // 401 is not retried, although the backend allows retries.
    assert_eq!(fixture.server(provider).count(), 1);

    let id = run_id(&run);
    assert_eq!(fixture.listed_run(&id)["status"], "failed");
    let shown = fixture.json(&["show", &id, "--format", "json"]);
    assert_eq!(shown["run"]["status"], "failed", "{shown:#}");
    let stored = shown["results"][0]["error"].as_str().expect("an error");
    assert!(stored.contains(provider.rejection()), "{stored}");
    assert_eq!(shown["results"][0]["output"], "");
}

fn missing_key_is_named(provider: Provider) {
    let fixture = Fixture::new(&[provider]);
    let run = fixture.run_case(provider, None, &[]);
    // A configuration error: exit 2, and no run is recorded.
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains(&format!(
            "environment variable {KEY_VAR} is not set or empty"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&provider.backend()), "{}", run.stderr);
    assert_eq!(fixture.server(provider).count(), 0, "nothing was sent");
}

#[test]
fn openai_run_streams_records_and_caches() {
    successful_run_is_streamed_recorded_and_cached(Provider::OpenAi);
}

#[test]
fn anthropic_run_streams_records_and_caches() {
    successful_run_is_streamed_recorded_and_cached(Provider::Anthropic);
}

#[test]
fn gemini_run_streams_records_and_caches() {
    successful_run_is_streamed_recorded_and_cached(Provider::Gemini);
}

#[test]
fn openai_unauthorized_fails_the_run() {
    unauthorized_fails_the_run(Provider::OpenAi);
}

#[test]
fn anthropic_unauthorized_fails_the_run() {
    unauthorized_fails_the_run(Provider::Anthropic);
}

#[test]
fn gemini_unauthorized_fails_the_run() {
    unauthorized_fails_the_run(Provider::Gemini);
}

#[test]
fn anthropic_missing_key_is_named() {
    missing_key_is_named(Provider::Anthropic);
}

#[test]
fn gemini_missing_key_is_named() {
    missing_key_is_named(Provider::Gemini);
}

/// An OpenAI-compatible server on loopback (Ollama, llama.cpp, `promptdeck serve`) needs no
/// key: without the variable the request goes out with no `Authorization` header.
#[test]
fn openai_on_loopback_runs_without_a_key() {
    let fixture = Fixture::new(&[Provider::OpenAi]);
    let run = fixture.run_case(Provider::OpenAi, None, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, format!("{ANSWER}\n"));
    let server = fixture.server(Provider::OpenAi);
    assert_eq!(server.count(), 1);
    assert_eq!(server.request(0).header("authorization"), None);
}

#[test]
fn models_remote_lists_what_each_server_returns() {
    let fixture = Fixture::new(&ALL);
    let listing = fixture.json(&["models", "--remote", "--format", "json"]);
    let backends = listing["backends"].as_array().expect("backends");
    for provider in ALL {
        let entry = backends
            .iter()
            .find(|b| b["name"] == provider.backend().as_str())
            .unwrap_or_else(|| panic!("{} in {listing:#}", provider.backend()));
        assert_eq!(entry["kind"], provider.kind());
        assert_eq!(entry["api_key_env"], KEY_VAR);
        assert_eq!(
            entry["remote_models"],
            json!(provider.listed_models()),
            "{entry}"
        );
    }
    let text = fixture.run(Some(KEY), &["models", "--remote"]);
    assert_eq!(text.code, 0, "{text:?}");
    for provider in ALL {
        let [a, b] = provider.listed_models();
        assert!(
            text.stdout.contains(&format!("available: {a}, {b}")),
            "{}",
            text.stdout
        );
    }
    for (provider, server) in &fixture.servers {
        let requests = server.requests.lock().unwrap();
        assert_eq!(requests.len(), 2, "{provider:?}: {requests:?}");
        for request in requests.iter() {
            assert_eq!(request.method, "GET");
            assert_eq!(provider.key_of(request).as_deref(), Some(KEY));
        }
    }
}

/// A key may reach only the provider's request header: not stdout or stderr of any command, not
/// an error message (even when the server echoes the key), not the export, the store or the
/// cache.
#[test]
fn api_key_never_leaks() {
    let fixture = Fixture::new(&ALL);
    let mut outputs: Vec<(String, Run)> = Vec::new();
    let mut run_ids = Vec::new();
    for provider in ALL {
        let ok = fixture.run_case(provider, Some(SECRET), &[]);
        assert_eq!(ok.code, 0, "{ok:?}");
        run_ids.push(fixture.full_run_id(&run_id(&ok)));
        let rejected = fixture.run_case(provider, Some(SECRET), &["--var", REJECT]);
        assert_eq!(rejected.code, 1, "{rejected:?}");
        assert!(
            rejected.stderr.contains(provider.rejection()),
            "{rejected:?}"
        );
        // The echo arrived and was replaced, rather than the message being dropped.
        assert!(rejected.stderr.contains("[redacted]"), "{rejected:?}");
        run_ids.push(fixture.full_run_id(&run_id(&rejected)));
        let page = fixture.run_case(provider, Some(SECRET), &["--var", REJECT_PLAIN]);
        assert_eq!(page.code, 1, "{page:?}");
        assert!(page.stderr.contains("HTTP 401"), "{page:?}");
        assert!(
            page.stderr.contains("no access for key [redacted]"),
            "{page:?}"
        );
        run_ids.push(fixture.full_run_id(&run_id(&page)));
        outputs.push((format!("{provider:?} run"), ok));
        outputs.push((format!("{provider:?} rejected run"), rejected));
        outputs.push((format!("{provider:?} run rejected in plain text"), page));
        // The server really received the key, so finding no trace of it below means something.
        let server = fixture.server(provider);
        assert_eq!(server.count(), 3);
        for i in 0..3 {
            assert_eq!(provider.key_of(&server.request(i)).as_deref(), Some(SECRET));
        }
    }
    let mut commands: Vec<Vec<String>> = vec![
        vec!["runs".into()],
        vec!["runs".into(), "--format".into(), "json".into()],
        vec!["export".into()],
        vec!["export".into(), "--out".into(), "export.jsonl".into()],
        vec!["models".into(), "--remote".into()],
        vec![
            "models".into(),
            "--remote".into(),
            "--format".into(),
            "json".into(),
        ],
        vec!["history".into(), "ask".into()],
    ];
    for id in &run_ids {
        commands.push(vec!["show".into(), id.clone()]);
        commands.push(vec![
            "show".into(),
            id.clone(),
            "--format".into(),
            "json".into(),
        ]);
    }
    for args in commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = fixture.run(Some(SECRET), &args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        outputs.push((args.join(" "), run));
    }
    let export = std::fs::read(fixture.project.root().join("export.jsonl")).expect("export file");
    assert!(
        String::from_utf8_lossy(&export).contains(ANSWER),
        "the export holds the runs"
    );

    for (what, run) in &outputs {
        assert!(
            !run.stdout.contains(SECRET_PART),
            "stdout of {what}: {run:?}"
        );
        assert!(
            !run.stderr.contains(SECRET_PART),
            "stderr of {what}: {run:?}"
        );
    }
    assert!(!contains(&export, SECRET_PART.as_bytes()), "export.jsonl");
    let data = fixture.project.root().join(".promptdeck");
    let mut files = Vec::new();
    collect_files(&data, &mut files);
    // The files are searchable as bytes: the answers are in both the store and the cache.
    for part in ["store", "cache"] {
        assert!(
            files.iter().any(|f| f.starts_with(data.join(part))
                && contains(&std::fs::read(f).unwrap_or_default(), ANSWER.as_bytes())),
            "no {part} file holds the answer in plain bytes: {files:?}"
        );
    }
    for file in &files {
        let bytes = std::fs::read(file).expect("read a data file");
        assert!(
            !contains(&bytes, SECRET_PART.as_bytes()),
            "{} holds the key",
            file.display()
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a data folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}
