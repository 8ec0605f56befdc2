//! `promptdeck bench harness`: how fast the test harness itself is, with the model taken out of
//! the picture. An in-process loopback server (its own thread and runtime) answers every
//! OpenAI-compatible chat request at once; a generated project holds one prompt with N cases of
//! three assertions each, on a backend with concurrency C pointing at that server; the suite runs
//! through exactly the code path of `promptdeck test` (render, request, score, store every
//! result, compare, report). Prints wall time, peak RSS (VmHWM) and results per second.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::matrix::ProgressMode;
use super::test::{FailOnArg, TestArgs};
use super::{CliError, Exit};
use crate::project::Project;

pub struct HarnessArgs {
    pub cases: usize,
    pub concurrency: u32,
    /// Keep the generated project here instead of a temporary folder.
    pub keep: Option<std::path::PathBuf>,
}

pub fn harness(args: &HarnessArgs) -> Result<Exit, CliError> {
    if args.cases == 0 || args.concurrency == 0 {
        return Err(CliError::Usage(
            "--cases and --concurrency must be at least 1".to_owned(),
        ));
    }
    let served = Arc::new(AtomicUsize::new(0));
    let addr = start_server(Arc::clone(&served))?;
    let temp;
    let dir = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
            dir.clone()
        }
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    write_project(&dir, args, &format!("http://{addr}/v1"))?;
    let project = Project::discover(&dir, Some(&dir))?;
    let test_args = TestArgs {
        prompts: Vec::new(),
        backend: Vec::new(),
        baseline: None,
        baseline_file: None,
        update_baseline: false,
        fail_on: FailOnArg::Any,
        junit: None,
        json: None,
        markdown: None,
        repeat: 1,
        no_cache: true,
    };
    let start = Instant::now();
    let run = super::test::execute(&project, &dir, &test_args, ProgressMode::Quiet, false)?;
    let wall = start.elapsed();
    let peak = peak_rss_kib();
    let s = &run.report.summary;
    println!(
        "bench harness: {} cases × 3 assertions at concurrency {} against a loopback OpenAI-compatible server",
        args.cases, args.concurrency
    );
    println!(
        "  wall {:.3} s · {:.0} results/s · peak RSS {} · {} passed, {} failed · {} requests served · {} results stored",
        wall.as_secs_f64(),
        run.results as f64 / wall.as_secs_f64().max(1e-9),
        peak.map_or_else(
            || "unknown".to_owned(),
            |k| format!("{:.1} MB", k as f64 / 1024.0)
        ),
        s.passed,
        s.failed,
        served.load(Ordering::Relaxed),
        run.results
    );
    Ok(if s.passed == args.cases {
        Exit::Ok
    } else {
        Exit::TestsFailed
    })
}

/// A temporary folder removed on drop (the harness must not leave projects behind).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, CliError> {
        let dir = std::env::temp_dir().join(format!(
            "promptdeck-harness-{}-{}",
            std::process::id(),
            crate::store::now_millis()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The generated project: one prompt, `cases` cases with three assertions each.
fn write_project(dir: &Path, args: &HarnessArgs, base_url: &str) -> Result<(), CliError> {
    let config = format!(
        "[defaults]\nbackend = \"loopback\"\n\n[backends.loopback]\nkind = \"openai\"\nmodel = \"bench\"\nbase_url = \"{base_url}\"\nconcurrency = {}\nretries = 0\n",
        args.concurrency
    );
    let prompt = "---\nname: bench\nmodel:\n  parameters:\n    temperature: 0\n    max_tokens: 16\n---\nsystem:\nRepeat the question's number.\nuser:\nWhat is {{ n }}?\n";
    let mut tests = String::with_capacity(args.cases * 160);
    for i in 0..args.cases {
        let _ = write!(
            tests,
            "- description: case {i}\n  vars: {{n: {i}}}\n  assert:\n    - type: contains\n      value: \"{i}\"\n    - type: icontains\n      value: answer\n    - type: regex\n      value: '^Answer: \\d+'\n"
        );
    }
    let write = |path: &Path, text: &str| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(path, text)
            .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))
    };
    write(&dir.join("promptdeck.toml"), &config)?;
    write(&dir.join("prompts/bench.prompty"), prompt)?;
    write(&dir.join("prompts/bench.tests.yaml"), &tests)
}

/// Starts the loopback server on its own thread and runtime; returns its address.
fn start_server(served: Arc<AtomicUsize>) -> Result<std::net::SocketAddr, CliError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| CliError::Io(format!("cannot bind a loopback port: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Io(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| CliError::Io(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the server runtime: {e}")))?;
    std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let served = Arc::clone(&served);
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |req| answer(req, Arc::clone(&served)));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .map_err(|e| CliError::Io(format!("cannot start the server thread: {e}")))?;
    Ok(addr)
}

/// Answers `Answer: N` where N is the last number of the last message, as JSON or SSE.
async fn answer(
    req: Request<Incoming>,
    served: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    served.fetch_add(1, Ordering::Relaxed);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let last = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let number: String = last
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .unwrap_or("0")
        .to_owned();
    let content = format!("Answer: {number}");
    let usage = json!({"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23});
    let (content_type, text) = if request["stream"].as_bool() == Some(true) {
        let chunk = json!({"id": "b", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": null}]});
        let end = json!({"id": "b", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        let usage =
            json!({"id": "b", "object": "chat.completion.chunk", "choices": [], "usage": usage});
        (
            "text/event-stream",
            format!("data: {chunk}\n\ndata: {end}\n\ndata: {usage}\n\ndata: [DONE]\n\n"),
        )
    } else {
        (
            "application/json",
            json!({"id": "b", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}], "usage": usage}).to_string(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// Peak resident set size of this process in KiB (`VmHWM`), where /proc exists.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
