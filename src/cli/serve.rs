//! `promptdeck serve`: an OpenAI-compatible HTTP endpoint (`/v1/chat/completions`, streaming and
//! not, and `/v1/models`) over the local engine or any configured backend, so editors, agents and
//! promptfoo can use the embedded model. It binds loopback unless told otherwise.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::run::{OpenBackend, open_backend};
use super::{CliError, Exit};
use crate::backend::{
    Backend, BackendError, ChatRequest, Chunk, FinishReason, Message, Parameters, Role,
};
use crate::project::Project;

type Body = UnsyncBoxBody<hyper::body::Bytes, Infallible>;

/// Backends the server can route to, by the name clients put in `model`.
struct Routes {
    default: String,
    backends: BTreeMap<String, OpenBackend>,
}

pub fn run(
    project: &Project,
    host: &str,
    port: u16,
    backend: Option<&str>,
) -> Result<Exit, CliError> {
    let default = backend
        .map(str::to_owned)
        .unwrap_or_else(|| project.config.default_backend.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?;
    let mut backends = BTreeMap::new();
    backends.insert(default.clone(), open_backend(project, &default)?);
    // Other configured API backends are cheap to build and routable by name; the local engine is
    // started only when it is the one served, so `serve --backend gpt` does not load a model.
    for name in project.config.backends.keys() {
        if !backends.contains_key(name) {
            if let Ok(Some(_)) = project.api_backend_config(name) {
                if let Ok(opened) = open_backend(project, name) {
                    backends.insert(name.clone(), opened);
                }
            }
        }
    }
    let routes = Arc::new(Routes { default, backends });
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|_| CliError::Usage(format!("--host {host} is not an IP address")))?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: serving on {addr}, reachable from other machines; promptdeck serve has no authentication"
        );
    }
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Usage(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CliError::Io(e.to_string()))?;
        // Scripts (and tests) read this line to learn the port when --port 0 was given.
        eprintln!(
            "promptdeck serve: listening on http://{local}/v1 (default backend: {})",
            routes.default
        );
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => { eprintln!("accept failed: {e}"); continue; }
                },
                _ = tokio::signal::ctrl_c() => break,
            };
            let routes = Arc::clone(&routes);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| handle(Arc::clone(&routes), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
        eprintln!("promptdeck serve: stopped");
        Ok(Exit::Ok)
    })
}

fn full(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(hyper::body::Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response<Body> {
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}});
    full(status, "application/json", body.to_string())
}

async fn handle(routes: Arc<Routes>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let response = match (req.method(), path.as_str()) {
        (&Method::GET, "/v1/models" | "/models") => models(&routes),
        (&Method::POST, "/v1/chat/completions" | "/chat/completions") => chat(&routes, req).await,
        (_, "/v1/models" | "/models" | "/v1/chat/completions" | "/chat/completions") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("{} is not allowed here", req.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no route {path}; promptdeck serves /v1/chat/completions and /v1/models"),
        ),
    };
    Ok(response)
}

fn models(routes: &Routes) -> Response<Body> {
    let data: Vec<Value> = routes
        .backends
        .iter()
        .map(|(name, opened)| json!({"id": name, "object": "model", "created": 0, "owned_by": "promptdeck", "root": opened.model}))
        .collect();
    full(
        StatusCode::OK,
        "application/json",
        json!({"object": "list", "data": data}).to_string(),
    )
}

/// What a chat request asks for, in promptdeck's terms.
struct Parsed {
    backend: String,
    request: ChatRequest,
    stream: bool,
    include_usage: bool,
}

fn parse_chat(routes: &Routes, body: &[u8]) -> Result<Parsed, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let model = value.get("model").and_then(Value::as_str).unwrap_or("");
    let backend = if routes.backends.contains_key(model) {
        model.to_owned()
    } else {
        routes.default.clone()
    };
    let raw_messages = value
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be a list")?;
    let mut messages = Vec::new();
    for (i, m) in raw_messages.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                return Err(format!(
                    "messages[{i}].role {other:?} is not supported (system, user, assistant)"
                ));
            }
        };
        let content = match m.get("content") {
            Some(Value::String(text)) => text.clone(),
            // Content parts: only text parts can be served by a text model.
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""))
                        }
                        other => {
                            return Err(format!(
                                "messages[{i}] has a content part of type {other:?}; only text is supported"
                            ));
                        }
                    }
                }
                text
            }
            Some(Value::Null) | None => String::new(),
            Some(_) => {
                return Err(format!(
                    "messages[{i}].content must be a string or a list of parts"
                ));
            }
        };
        messages.push(Message::new(role, content));
    }
    if messages.is_empty() {
        return Err("`messages` must not be empty".to_owned());
    }
    let number = |key: &str| value.get(key).and_then(Value::as_f64);
    let whole = |key: &str| value.get(key).and_then(Value::as_u64);
    let stop = match value.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let parameters = Parameters {
        temperature: number("temperature"),
        top_p: number("top_p"),
        top_k: whole("top_k").and_then(|k| u32::try_from(k).ok()),
        min_p: number("min_p"),
        max_tokens: whole("max_completion_tokens")
            .or_else(|| whole("max_tokens"))
            .and_then(|n| u32::try_from(n).ok()),
        seed: whole("seed"),
        stop,
        repeat_penalty: number("repeat_penalty"),
    };
    let stream = value
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_usage = value
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let request = ChatRequest {
        model: String::new(),
        messages,
        parameters,
        extra: serde_json::Map::new(),
        sample_index: 0,
        no_cache: false,
    };
    Ok(Parsed {
        backend,
        request,
        stream,
        include_usage,
    })
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Error => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolCall => "tool_calls",
    }
}

fn backend_error(e: &BackendError) -> Response<Body> {
    match e {
        BackendError::Api {
            status, message, ..
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            error(status, "upstream_error", message.clone())
        }
        other => error(StatusCode::BAD_GATEWAY, "upstream_error", other.to_string()),
    }
}

async fn chat(routes: &Routes, req: Request<Incoming>) -> Response<Body> {
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("cannot read the request body: {e}"),
            );
        }
    };
    let parsed = match parse_chat(routes, &body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", message),
    };
    let Some(opened) = routes.backends.get(&parsed.backend) else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no backend {}", parsed.backend),
        );
    };
    let id = format!("chatcmpl-{:016x}", crate::store::now_millis());
    let created = crate::store::now_millis() / 1000;
    let model = parsed.backend.clone();
    if !parsed.stream {
        return match crate::backend::complete(opened.backend.as_ref(), parsed.request, |_| {}).await
        {
            Ok(done) => {
                let body = json!({
                    "id": id, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": null,
                                 "finish_reason": finish_reason(done.finish_reason)}],
                    "usage": {"prompt_tokens": done.usage.input_tokens, "completion_tokens": done.usage.output_tokens,
                              "total_tokens": done.usage.input_tokens + done.usage.output_tokens},
                });
                full(StatusCode::OK, "application/json", body.to_string())
            }
            Err(e) => backend_error(&e),
        };
    }
    stream_response(opened.backend.as_ref(), parsed, id, created, model)
}

/// Server-sent events in OpenAI's `chat.completion.chunk` shape, ending with `data: [DONE]`.
fn stream_response(
    backend: &dyn Backend,
    parsed: Parsed,
    id: String,
    created: i64,
    model: String,
) -> Response<Body> {
    let include_usage = parsed.include_usage;
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let upstream = backend.stream(parsed.request);
    let events = futures_util::stream::once(async move { first.to_string() })
        .chain(upstream.flat_map(move |item| {
            let lines: Vec<String> = match item {
                Ok(Chunk::Text(text)) => vec![chunk(json!({"content": text}), None).to_string()],
                Ok(Chunk::Done(done)) => {
                    let mut out = vec![chunk(json!({}), Some(finish_reason(done.finish_reason))).to_string()];
                    if include_usage {
                        let mut usage = chunk(json!({}), None);
                        usage["choices"] = json!([]);
                        usage["usage"] = json!({"prompt_tokens": done.usage.input_tokens, "completion_tokens": done.usage.output_tokens,
                                                "total_tokens": done.usage.input_tokens + done.usage.output_tokens});
                        out.push(usage.to_string());
                    }
                    out.push("[DONE]".to_owned());
                    out
                }
                // Headers are gone by now: an error travels as an error event, as OpenAI does.
                Err(e) => vec![json!({"error": {"message": e.to_string(), "type": "upstream_error", "param": null, "code": null}}).to_string()],
            };
            futures_util::stream::iter(lines)
        }))
        .map(|data| Ok::<_, Infallible>(Frame::data(hyper::body::Bytes::from(format!("data: {data}\n\n")))));
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(events)));
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    response
}
