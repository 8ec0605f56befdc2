//! `promptdeck serve` end to end on the real embedded model: the binary is started with
//! `--port 0`, its port read from the `listening on` line, and it is then spoken to over raw
//! HTTP/1.1 (`/v1/models`, `/v1/chat/completions` whole and streamed, OpenAI-style errors) and
//! used as the server of an `openai` backend by a second `promptdeck run`. The local model is
//! found (or fetched on first use) by the binary itself.

mod common;

#[path = "common/bounded.rs"]
mod bounded;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Run, TempProject};

/// Starting includes finding the model, or fetching it on a machine that has never run it.
const STARTUP_LIMIT: Duration = Duration::from_secs(300);
/// One HTTP exchange or one `promptdeck run`, answer included.
const REQUEST_LIMIT: Duration = Duration::from_secs(60);

const QUESTION: &str = "What is the capital of France? Answer in one word.";
const LISTENING: &str = "promptdeck serve: listening on http://127.0.0.1:";

/// A running `promptdeck serve`, killed when dropped, so a failed assertion never leaves it
/// behind.
struct Served {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `promptdeck serve --port 0 --backend local` in `project` and waits (bounded) for
    /// the line that names its port.
    fn start(project: &TempProject) -> Served {
        let mut command = common::binary();
        command
            .args(["serve", "--port", "0", "--backend", "local"])
            .current_dir(project.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn promptdeck serve");
        let pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log = Arc::clone(&stderr);
        // Keeps draining stderr after the port is known, so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut served = Served {
            child,
            port: 0,
            stderr,
        };
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(LISTENING) {
                        let (port, tail) = rest.split_once('/').expect("a path after the port");
                        assert!(tail.starts_with("v1 "), "{line}");
                        assert!(tail.contains("default backend: local"), "{line}");
                        served.port = port.parse().expect("a port number");
                        return served;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no `listening on` line within {STARTUP_LIMIT:?}; stderr:\n{}",
                    served.log()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "promptdeck serve exited ({:?}) before listening; stderr:\n{}",
                    served.child.try_wait(),
                    served.log()
                ),
            }
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn get(&self, path: &str) -> Response {
        http(self.port, "GET", path, None)
    }

    fn post(&self, path: &str, body: &str) -> Response {
        http(self.port, "POST", path, Some(body))
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts an OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
    fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{self:?}"
        );
        let body = self.json();
        let error = &body["error"];
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| !m.trim().is_empty()),
            "{body}"
        );
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert!(
            error.get("param").is_some() && error.get("code").is_some(),
            "{body}"
        );
    }
}

/// One HTTP/1.1 exchange over a fresh connection (`Connection: close`), with every read and the
/// whole exchange bounded; decodes a chunked body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve");
    stream.set_read_timeout(Some(REQUEST_LIMIT)).unwrap();
    stream.set_write_timeout(Some(REQUEST_LIMIT)).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes()).expect("send request");

    let deadline = Instant::now() + REQUEST_LIMIT;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        assert!(
            Instant::now() < deadline,
            "{method} {path}: no end of response within {REQUEST_LIMIT:?}"
        );
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{method} {path}: reading the response failed: {e}"),
        }
    }
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..head_end].to_vec()).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk terminator");
        data = &data[size + 2..];
    }
}

fn chat_body(stream: bool) -> String {
    let mut body = json!({
        "model": "local",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 16,
        "temperature": 0,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

#[test]
fn serve_speaks_the_openai_api() {
    let project = TempProject::new();
    let served = Served::start(&project);

    let models = served.get("/v1/models");
    assert_eq!(models.status, 200, "{models:?}");
    let list = models.json();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["local"], "{list}");
    assert_eq!(list["data"][0]["object"], "model");

    // Whole answer.
    let whole = served.post("/v1/chat/completions", &chat_body(false));
    assert_eq!(whole.status, 200, "{whole:?}\n{}", served.log());
    assert!(
        whole
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{whole:?}"
    );
    let completion = whole.json();
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    assert_eq!(completion["model"], "local");
    assert!(
        completion["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")),
        "{completion}"
    );
    let choice = &completion["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().expect("content");
    assert!(text.contains("Paris"), "{completion}");
    let finish = choice["finish_reason"].as_str().expect("finish_reason");
    assert!(["stop", "length"].contains(&finish), "{completion}");
    let usage = &completion["usage"];
    let prompt_tokens = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let completion_tokens = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert!(prompt_tokens > 0 && completion_tokens > 0, "{usage}");
    assert!(completion_tokens <= 16, "max_tokens is honoured: {usage}");
    assert_eq!(usage["total_tokens"], prompt_tokens + completion_tokens);

    // The same request streamed: same text (greedy decoding is deterministic), chunk shape,
    // the finish reason, the usage chunk asked for, and `[DONE]` last.
    let streamed = served.post("/v1/chat/completions", &chat_body(true));
    assert_eq!(streamed.status, 200, "{streamed:?}");
    assert!(
        streamed
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{streamed:?}"
    );
    let events: Vec<&str> = streamed
        .body
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
        })
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{}", streamed.body);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect();
    let id = chunks[0]["id"].clone();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut deltas = String::new();
    let mut finishes = Vec::new();
    let mut usages = Vec::new();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(chunk["id"], id, "one id for the whole stream");
        assert_eq!(chunk["model"], "local");
        if let Some(usage) = chunk.get("usage") {
            assert_eq!(chunk["choices"], json!([]), "{chunk}");
            usages.push(usage.clone());
            continue;
        }
        let choice = &chunk["choices"][0];
        if let Some(piece) = choice["delta"]["content"].as_str() {
            deltas.push_str(piece);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finishes.push(reason.to_owned());
        }
    }
    assert_eq!(deltas, text, "streamed and whole answers differ");
    assert_eq!(finishes, [finish], "{}", streamed.body);
    assert_eq!(usages, [completion["usage"].clone()], "{}", streamed.body);

    // Bad requests get OpenAI-style errors.
    served
        .post("/v1/chat/completions", "this is not JSON")
        .assert_error(400);
    served
        .post("/v1/chat/completions", r#"{"model": "local"}"#)
        .assert_error(400);
    served
        .post("/v1/chat/completions", r#"{"messages": []}"#)
        .assert_error(400);
    served
        .post(
            "/v1/chat/completions",
            r#"{"messages": [{"role": "wizard", "content": "hi"}]}"#,
        )
        .assert_error(400);
    served.get("/v1/nowhere").assert_error(404);
    served.post("/v1/completions", "{}").assert_error(404);
    served.get("/v1/chat/completions").assert_error(405);

    // Ctrl-C stops it cleanly.
    #[cfg(unix)]
    {
        let mut served = served;
        let pid = i32::try_from(served.child.id()).expect("pid");
        // SAFETY: signals only the child this test started, which is still running.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let status = bounded::wait_within(&mut served.child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("serve ignored SIGINT; stderr:\n{}", served.log()));
        assert!(status.success(), "{status:?}");
        // The reader thread may still be copying the last line.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !served.log().contains("promptdeck serve: stopped") {
            assert!(Instant::now() < deadline, "{}", served.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// promptdeck's own `openai` backend, pointed at `promptdeck serve`: no key is needed on
/// loopback, the answer streams to stdout and the run is stored.
#[test]
fn openai_backend_runs_against_serve() {
    let server_project = TempProject::new();
    let served = Served::start(&server_project);

    let project = TempProject::with_config(&format!(
        "[defaults]\nbackend = \"local\"\n\n[backends.served]\nkind = \"openai\"\nmodel = \"local\"\nbase_url = \"{}\"\ntimeout = 30\nretries = 0\n",
        served.base_url()
    ));
    project.write(
        "prompts/hello.prompty",
        format!(
            "---\nname: hello\nmodel:\n  parameters:\n    temperature: 0\n    max_tokens: 16\n---\nuser:\n{QUESTION}\n"
        ),
    );
    let run = |args: &[&str]| {
        let mut command = common::binary();
        command
            .args(args)
            .current_dir(project.root())
            .env_remove("OPENAI_API_KEY");
        Run::from(bounded::output_within(command, REQUEST_LIMIT))
    };

    let answer = run(&["run", "hello", "--backend", "served"]);
    assert_eq!(answer.code, 0, "{answer:?}\nserve:\n{}", served.log());
    assert!(answer.stdout.contains("Paris"), "{answer:?}");
    assert!(
        answer
            .stderr
            .lines()
            .any(|l| l.starts_with("run ") && l.contains("served (local)")),
        "{answer:?}"
    );
    assert!(
        answer.stderr.lines().any(|l| l.starts_with("done in ")),
        "{answer:?}"
    );

    let runs = run(&["runs", "--format", "json"]);
    assert_eq!(runs.code, 0, "{runs:?}");
    let runs: Value = serde_json::from_str(&runs.stdout).expect("runs JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs:#}");
    let listed = &runs[0];
    assert_eq!(listed["status"], "complete", "{listed}");
    assert_eq!(listed["backend"], "served");
    assert_eq!(listed["model"], "local");
    assert_eq!(listed["prompt"], "hello");

    let id = listed["id"].as_str().expect("run id");
    let shown = run(&["show", id, "--format", "json"]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let shown: Value = serde_json::from_str(&shown.stdout).expect("show JSON");
    let result = &shown["results"][0];
    let output = result["output"].as_str().expect("output");
    assert_eq!(answer.stdout.trim_end(), output.trim_end(), "{shown:#}");
    assert!(result["usage"]["input"].as_u64() > Some(0), "{result}");
    assert!(result["usage"]["output"].as_u64() > Some(0), "{result}");
    assert_eq!(
        result["messages"],
        json!([{"role": "user", "content": QUESTION}])
    );
}
