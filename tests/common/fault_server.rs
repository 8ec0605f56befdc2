//! A fault-injecting loopback server for each provider wire format (OpenAI, Anthropic, Gemini),
//! written on raw TCP so it can misbehave at the byte level: 429 with and without Retry-After,
//! 500, 502, 503, connection resets, stalls before and in the middle of a stream, SSE streams
//! cut before their end marker, malformed JSON, a wrong content type, slow answers.
//!
//! The fault of every attempt is a pure function of (seed, case, attempt number), so a test can
//! predict, for each case, how many attempts the client's retry policy makes and how the case
//! ends ([`FaultPlan::expect`]), and compare that with what the server saw and what the binary
//! reported. A case is recognised by the marker `q-NNNNNN` anywhere in the request body.
//!
//! Include with `#[path = "common/fault_server.rs"] mod fault_server;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "loopback.rs"]
mod loopback;

use loopback::{response, sse_event, sse_head, write_parts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::OpenAi, Provider::Anthropic, Provider::Gemini];

    pub fn kind(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
        }
    }

    /// The `base_url` a backend of this kind needs to reach `server`.
    pub fn base_url(self, server: &FaultServer) -> String {
        match self {
            Provider::OpenAi => format!("http://{}/v1", server.addr),
            _ => format!("http://{}", server.addr),
        }
    }
}

/// What the server does with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A correct streamed answer.
    Ok,
    /// A correct answer in pieces 150 ms apart (below the client's idle timeout).
    Slow,
    /// 429 with `Retry-After: 1`.
    RateLimitRetryAfter,
    /// 429 without any hint: the client's own backoff applies.
    RateLimitNoHint,
    /// 429 asking for an hour, longer than `max_retry_time`: the client must give up at once.
    RateLimitTooLong,
    Status500,
    /// 502 with an HTML page, as a proxy sends it.
    Status502,
    Status503,
    /// The request is read, then the connection is reset (RST) without an answer.
    Reset,
    /// The event-stream head, then silence: no text has reached the client.
    StallBeforeText,
    /// Head and the first piece of text, then silence.
    StallMidStream,
    /// Head and the first piece of text, then only keep-alives (SSE comments; Anthropic's
    /// `ping` events) every 250 ms, forever: bytes keep coming, the answer never does.
    KeepAliveStall,
    /// Head and the first piece of text, then a clean close before the end marker.
    TruncatedSse,
    /// An event whose data is not JSON, before any text.
    MalformedJson,
    /// 200 with `text/html`.
    WrongContentType,
}

impl Fault {
    /// Every fault with its weight out of 1000 per attempt.
    pub const MIX: [(Fault, u32); 15] = [
        (Fault::Ok, 460),
        (Fault::Slow, 30),
        (Fault::RateLimitRetryAfter, 40),
        (Fault::RateLimitNoHint, 60),
        (Fault::RateLimitTooLong, 10),
        (Fault::Status500, 50),
        (Fault::Status502, 50),
        (Fault::Status503, 50),
        (Fault::Reset, 60),
        (Fault::StallBeforeText, 20),
        (Fault::StallMidStream, 20),
        (Fault::KeepAliveStall, 20),
        (Fault::TruncatedSse, 40),
        (Fault::MalformedJson, 45),
        (Fault::WrongContentType, 45),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Ok => "ok",
            Fault::Slow => "slow",
            Fault::RateLimitRetryAfter => "429 Retry-After: 1",
            Fault::RateLimitNoHint => "429 no hint",
            Fault::RateLimitTooLong => "429 Retry-After: 3600",
            Fault::Status500 => "500",
            Fault::Status502 => "502 (HTML)",
            Fault::Status503 => "503",
            Fault::Reset => "connection reset",
            Fault::StallBeforeText => "stall before text",
            Fault::StallMidStream => "stall mid-stream",
            Fault::KeepAliveStall => "keep-alives, no answer",
            Fault::TruncatedSse => "truncated SSE",
            Fault::MalformedJson => "malformed JSON",
            Fault::WrongContentType => "wrong content type",
        }
    }

    /// How the client's policy classifies the attempt (see `BackendError::is_retryable`).
    fn class(self) -> Class {
        match self {
            Fault::Ok | Fault::Slow => Class::Answer,
            Fault::RateLimitRetryAfter => Class::Retry { hint_s: Some(1.0) },
            Fault::RateLimitTooLong => Class::Retry {
                hint_s: Some(3600.0),
            },
            Fault::RateLimitNoHint
            | Fault::Status500
            | Fault::Status502
            | Fault::Status503
            | Fault::Reset
            | Fault::StallBeforeText => Class::Retry { hint_s: None },
            // Text already reached the consumer, or the answer is not in the provider's
            // format: another attempt would repeat text or fail the same way.
            Fault::StallMidStream
            | Fault::KeepAliveStall
            | Fault::TruncatedSse
            | Fault::MalformedJson
            | Fault::WrongContentType => Class::Fatal,
        }
    }

    /// A piece of the error message the client must report when a case ends on this fault.
    pub fn expected_error(self) -> &'static str {
        match self {
            Fault::Ok | Fault::Slow => "",
            Fault::RateLimitRetryAfter | Fault::RateLimitNoHint | Fault::RateLimitTooLong => {
                "HTTP 429"
            }
            Fault::Status500 => "HTTP 500",
            Fault::Status502 => "HTTP 502",
            Fault::Status503 => "HTTP 503",
            Fault::Reset => "connection failed",
            Fault::StallBeforeText => "no data from the server",
            Fault::StallMidStream | Fault::KeepAliveStall => "response truncated after",
            Fault::TruncatedSse => "response truncated after",
            Fault::MalformedJson => "malformed",
            Fault::WrongContentType => "content type",
        }
    }
}

enum Class {
    Answer,
    Retry { hint_s: Option<f64> },
    Fatal,
}

/// The client's retry settings as written to promptdeck.toml.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub retries: u32,
    pub max_retry_time_s: f64,
}

/// How a case must end under a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub attempts: usize,
    /// The fault of the last attempt.
    pub last: Fault,
    /// `None`: an answer; else a piece of the error message.
    pub error: Option<&'static str>,
}

/// The seeded choice of faults.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    pub seed: u64,
    /// Faults with their weights; [`Fault::MIX`] for the fault tests.
    pub mix: &'static [(Fault, u32)],
}

impl FaultPlan {
    /// Every fault of [`Fault::MIX`], chosen by `seed`.
    pub fn faulty(seed: u64) -> FaultPlan {
        FaultPlan {
            seed,
            mix: &Fault::MIX,
        }
    }

    /// A server that always answers correctly, for tests that break the client instead.
    pub fn healthy() -> FaultPlan {
        FaultPlan {
            seed: 0,
            mix: &[(Fault::Ok, 1)],
        }
    }

    pub fn fault(&self, case: u32, attempt: usize) -> Fault {
        let mut z = self.seed
            ^ u64::from(case).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (attempt as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let total: u32 = self.mix.iter().map(|(_, w)| w).sum();
        let mut pick = (z % u64::from(total.max(1))) as u32;
        for &(fault, weight) in self.mix {
            if pick < weight {
                return fault;
            }
            pick -= weight;
        }
        Fault::Ok
    }

    /// Replays the client's retry policy over this case's faults. Waits never come near
    /// `max_retry_time` in these tests (at most a few seconds per case), except the hour-long
    /// Retry-After, which exceeds it on its own.
    pub fn expect(&self, case: u32, policy: Policy) -> Expected {
        let mut attempt = 0;
        loop {
            let fault = self.fault(case, attempt);
            let give_up = |error| Expected {
                attempts: attempt + 1,
                last: fault,
                error: Some(error),
            };
            match fault.class() {
                Class::Answer => {
                    return Expected {
                        attempts: attempt + 1,
                        last: fault,
                        error: None,
                    };
                }
                Class::Fatal => return give_up(fault.expected_error()),
                Class::Retry { hint_s } => {
                    let too_long = hint_s.is_some_and(|h| h > policy.max_retry_time_s);
                    if attempt as u32 >= policy.retries || too_long {
                        return give_up(fault.expected_error());
                    }
                }
            }
            attempt += 1;
        }
    }
}

/// The answer text of a case: what the test's assertion looks for.
pub fn answer(case: u32) -> String {
    format!("ok q-{case:06}")
}

pub struct FaultServer {
    pub addr: SocketAddr,
    pub provider: Provider,
    pub plan: FaultPlan,
    /// Faults served, per case, in attempt order.
    pub log: Arc<Mutex<BTreeMap<u32, Vec<Fault>>>>,
    /// Requests without a case marker (answered 400).
    pub unknown: Arc<Mutex<usize>>,
}

impl FaultServer {
    /// Starts serving on the current tokio runtime.
    pub async fn start(provider: Provider, plan: FaultPlan) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(BTreeMap::new()));
        let unknown = Arc::new(Mutex::new(0));
        let (task_log, task_unknown) = (Arc::clone(&log), Arc::clone(&unknown));
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (log, unknown) = (Arc::clone(&task_log), Arc::clone(&task_unknown));
                tokio::spawn(async move {
                    serve(socket, provider, plan, log, unknown).await;
                });
            }
        });
        FaultServer {
            addr,
            provider,
            plan,
            log,
            unknown,
        }
    }

    /// Attempts seen per case.
    pub fn attempts(&self) -> BTreeMap<u32, Vec<Fault>> {
        self.log.lock().expect("fault log").clone()
    }

    /// How often each fault was served.
    pub fn mix(&self) -> BTreeMap<Fault, usize> {
        let mut mix = BTreeMap::new();
        for faults in self.log.lock().expect("fault log").values() {
            for f in faults {
                *mix.entry(*f).or_insert(0) += 1;
            }
        }
        mix
    }
}

/// The case marker `q-NNNNNN` in a request body.
fn case_of(body: &[u8]) -> Option<u32> {
    body.windows(8)
        .position(|w| w.starts_with(b"q-") && w[2..].iter().all(u8::is_ascii_digit))
        .and_then(|p| std::str::from_utf8(&body[p + 2..p + 8]).ok())
        .and_then(|digits| digits.parse().ok())
}

/// Reads one request: its head (lower-cased) and its body.
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let (head, body) = loopback::read_request(socket).await?;
    Some((head.to_ascii_lowercase(), body))
}

/// The credential a request carried, whichever provider header holds it.
fn credential(head: &str) -> String {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| matches!(n.trim(), "authorization" | "x-api-key" | "x-goog-api-key"))
        .map(|(_, v)| v.trim().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn serve(
    mut socket: TcpStream,
    provider: Provider,
    plan: FaultPlan,
    log: Arc<Mutex<BTreeMap<u32, Vec<Fault>>>>,
    unknown: Arc<Mutex<usize>>,
) {
    let Some((head, body)) = read_request(&mut socket).await else {
        return;
    };
    let _ = socket.set_nodelay(true);
    let Some(case) = case_of(&body) else {
        *unknown.lock().expect("unknown count") += 1;
        let _ = socket
            .write_all(&response(400, &[], "text/plain", "no case marker"))
            .await;
        return;
    };
    let fault = {
        let mut log = log.lock().expect("fault log");
        let attempts = log.entry(case).or_default();
        let fault = plan.fault(case, attempts.len());
        attempts.push(fault);
        fault
    };
    let text = answer(case);
    // Three pieces, so a stream cut after the first has delivered text but not the answer.
    let pieces = [&text[..3], &text[3..6], &text[6..]];
    match fault {
        Fault::Ok => {
            let mut parts = vec![sse_head()];
            parts.extend(events(provider, &pieces, true));
            write_parts(&mut socket, &parts, Duration::ZERO).await;
        }
        Fault::Slow => {
            let mut parts = vec![sse_head()];
            parts.extend(events(provider, &pieces, true));
            write_parts(&mut socket, &parts, Duration::from_millis(150)).await;
        }
        Fault::RateLimitRetryAfter => {
            let r = error_response(provider, 429, &[("Retry-After", "1")], "");
            write_parts(&mut socket, &[r], Duration::ZERO).await;
        }
        Fault::RateLimitNoHint => {
            let r = error_response(provider, 429, &[], "");
            write_parts(&mut socket, &[r], Duration::ZERO).await;
        }
        Fault::RateLimitTooLong => {
            let r = error_response(provider, 429, &[("Retry-After", "3600")], "");
            write_parts(&mut socket, &[r], Duration::ZERO).await;
        }
        Fault::Status500 => {
            // Like a gateway that echoes request headers in its error page: the client must
            // not pass the key on to reports, the store or the terminal.
            let echo = format!("request headers: {}", credential(&head));
            let r = error_response(provider, 500, &[], &echo);
            write_parts(&mut socket, &[r], Duration::ZERO).await;
        }
        Fault::Status503 => {
            let r = error_response(provider, 503, &[], "");
            write_parts(&mut socket, &[r], Duration::ZERO).await;
        }
        Fault::Status502 => {
            let page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
            let r = response(502, &[], "text/html", page);
            write_parts(&mut socket, &[r], Duration::ZERO).await;
        }
        Fault::Reset => {
            let _ = socket.set_zero_linger();
            drop(socket);
        }
        Fault::StallBeforeText => {
            let _ = socket.write_all(&sse_head()).await;
            wait_for_close(&mut socket).await;
        }
        Fault::StallMidStream => {
            let mut parts = vec![sse_head()];
            parts.extend(events(provider, &pieces[..1], false));
            for p in parts {
                let _ = socket.write_all(&p).await;
            }
            wait_for_close(&mut socket).await;
        }
        Fault::KeepAliveStall => {
            let mut parts = vec![sse_head()];
            parts.extend(events(provider, &pieces[..1], false));
            for p in parts {
                let _ = socket.write_all(&p).await;
            }
            let keep_alive: &[u8] = match provider {
                Provider::Anthropic => b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
                _ => b": keep-alive\n\n",
            };
            // Until the client gives up: a write to a closed connection fails.
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if socket.write_all(keep_alive).await.is_err() || socket.flush().await.is_err() {
                    return;
                }
            }
        }
        Fault::TruncatedSse => {
            let mut parts = vec![sse_head()];
            parts.extend(events(provider, &pieces[..1], false));
            write_parts(&mut socket, &parts, Duration::ZERO).await;
        }
        Fault::MalformedJson => {
            let parts = vec![
                sse_head(),
                b"data: {\"choices\": [{\"delta\": {\"content\": \"ok\n\n".to_vec(),
            ];
            write_parts(&mut socket, &parts, Duration::ZERO).await;
        }
        Fault::WrongContentType => {
            let page = "<html><body>Please sign in to continue</body></html>";
            let r = response(200, &[], "text/html; charset=utf-8", page);
            write_parts(&mut socket, &[r], Duration::ZERO).await;
        }
    }
}

/// Holds the connection open and silent until the client gives up on it.
async fn wait_for_close(socket: &mut TcpStream) {
    let mut tmp = [0u8; 1024];
    while let Ok(n) = socket.read(&mut tmp).await {
        if n == 0 {
            return;
        }
    }
}

/// The provider's own error body for a status.
fn error_response(
    provider: Provider,
    status: u16,
    headers: &[(&str, &str)],
    detail: &str,
) -> Vec<u8> {
    let message = match status {
        429 => "Rate limit reached; slow down".to_string(),
        503 => "The server is overloaded".to_string(),
        _ => format!("The server had an error while processing your request ({detail})"),
    };
    let body = match provider {
        Provider::OpenAi => {
            json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
        }
        Provider::Anthropic => {
            let kind = if status == 429 {
                "rate_limit_error"
            } else {
                "api_error"
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Provider::Gemini => {
            let code = if status == 429 {
                "RESOURCE_EXHAUSTED"
            } else {
                "UNAVAILABLE"
            };
            json!({"error": {"code": status, "message": message, "status": code}})
        }
    };
    response(status, headers, "application/json", &body.to_string())
}

/// The stream events carrying `pieces`, each its own TCP write; with `end`, the provider's end
/// marker and usage follow.
fn events(provider: Provider, pieces: &[&str], end: bool) -> Vec<Vec<u8>> {
    let mut out: Vec<String> = Vec::new();
    match provider {
        Provider::OpenAi => {
            let chunk = |delta: Value, finish: Option<&str>| {
                let c = json!({"id": "chatcmpl-f", "object": "chat.completion.chunk",
                    "created": 1, "model": "m", "choices": [{"index": 0, "delta": delta,
                    "finish_reason": finish}]});
                format!("data: {c}\n\n")
            };
            for p in pieces {
                out.push(chunk(json!({"content": p}), None));
            }
            if end {
                out.push(chunk(json!({}), Some("stop")));
                let usage = json!({"id": "chatcmpl-f", "object": "chat.completion.chunk",
                    "created": 1, "model": "m", "choices": [],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}});
                out.push(format!("data: {usage}\n\ndata: [DONE]\n\n"));
            }
        }
        Provider::Anthropic => {
            let mut start = sse_event(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_f", "type": "message",
                    "role": "assistant", "content": [], "model": "claude-f",
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            );
            start.push_str(&sse_event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}),
            ));
            out.push(start);
            for p in pieces {
                out.push(sse_event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": p}}),
                ));
            }
            if end {
                let mut tail = sse_event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                );
                tail.push_str(&sse_event(
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                           "usage": {"output_tokens": 3}}),
                ));
                tail.push_str(&sse_event("message_stop", json!({"type": "message_stop"})));
                out.push(tail);
            }
        }
        Provider::Gemini => {
            let last = pieces.len() - 1;
            for (i, p) in pieces.iter().enumerate() {
                let mut c = json!({"candidates": [{"content": {"parts": [{"text": p}],
                    "role": "model"}, "index": 0}], "modelVersion": "gemini-f"});
                if end && i == last {
                    c["candidates"][0]["finishReason"] = json!("STOP");
                    c["usageMetadata"] = json!({"promptTokenCount": 7,
                        "candidatesTokenCount": 3, "totalTokenCount": 10});
                }
                out.push(format!("data: {c}\r\n\r\n"));
            }
        }
    }
    out.into_iter().map(String::into_bytes).collect()
}
