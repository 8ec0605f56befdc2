//! Anthropic Messages API.
//!
//! `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`; system prompts go in the
//! top-level `system`, `max_tokens` is required. Streams are named events (`message_start`,
//! `content_block_delta` with `text_delta`, `message_delta` with the stop reason and output
//! usage, `message_stop`, `ping`, `error`). Errors are `{"type":"error","error":{type,message}}`.

use serde_json::{Map, Value, json};

use super::config::BackendConfig;
use super::error::BackendError;
use super::http::{Decoder, Final, Prepared, Wire, merge_extra, protocol, warn_unsupported};
use super::sse::SseEvent;
use super::types::{ChatRequest, FinishReason, Role, Usage};

const PROVIDER: &str = "Anthropic";
pub const API_VERSION: &str = "2023-06-01";
/// Sent when the prompt sets no `max_tokens`, which this API requires.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

pub(crate) struct Anthropic;

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCall,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Error,
    }
}

/// The HTTP status an error type stands for, so stream `error` events retry like responses.
fn status_of(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn error_parts(body: &Value) -> Option<(String, String)> {
    let err = body.get("error")?;
    let message = err.get("message").and_then(Value::as_str)?;
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("error");
    Some((message.to_string(), kind.to_string()))
}

fn usage_into(usage: &mut Usage, value: Option<&Value>) {
    if let Some(u) = value {
        if let Some(n) = u.get("input_tokens").and_then(Value::as_u64) {
            usage.input_tokens = n;
        }
        if let Some(n) = u.get("output_tokens").and_then(Value::as_u64) {
            usage.output_tokens = n;
        }
    }
}

impl Wire for Anthropic {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn auth_headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        let mut headers = vec![("anthropic-version", API_VERSION.to_string())];
        if let Some(k) = key {
            headers.push(("x-api-key", k.to_string()));
        }
        headers
    }

    fn prepare(
        &self,
        _cfg: &BackendConfig,
        model: &str,
        req: &ChatRequest,
        stream: bool,
    ) -> Prepared {
        let p = &req.parameters;
        let mut warnings = Vec::new();
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let messages: Vec<Value> = req
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| {
                let role = if m.role == Role::Assistant {
                    "assistant"
                } else {
                    "user"
                };
                json!({"role": role, "content": m.content})
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), model.into());
        body.insert(
            "max_tokens".into(),
            p.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
        );
        if !system.is_empty() {
            body.insert("system".into(), system.join("\n\n").into());
        }
        body.insert("messages".into(), messages.into());
        if let Some(t) = p.temperature {
            body.insert("temperature".into(), t.into());
        }
        if let Some(t) = p.top_p {
            body.insert("top_p".into(), t.into());
        }
        if let Some(k) = p.top_k {
            body.insert("top_k".into(), k.into());
        }
        if !p.stop.is_empty() {
            body.insert("stop_sequences".into(), p.stop.clone().into());
        }
        for (name, set) in [
            ("seed", p.seed.is_some()),
            ("min_p", p.min_p.is_some()),
            ("repeat_penalty", p.repeat_penalty.is_some()),
        ] {
            if set {
                warn_unsupported(PROVIDER, name, &mut warnings);
            }
        }
        if stream {
            body.insert("stream".into(), true.into());
        }
        merge_extra(&mut body, &req.extra);
        Prepared {
            path: "/v1/messages".into(),
            query: Vec::new(),
            body: Value::Object(body),
            warnings,
        }
    }

    fn parse_full(&self, body: &Value) -> Result<(String, Final), BackendError> {
        if body.get("type").and_then(Value::as_str) == Some("error") {
            let (message, kind) = error_parts(body).unwrap_or_default();
            return Err(BackendError::Api {
                status: status_of(&kind),
                message,
                retry_after: None,
            });
        }
        let content = body
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol(PROVIDER, "the response has no `content` array"))?;
        let text: String = content
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        let mut usage = Usage::default();
        usage_into(&mut usage, body.get("usage"));
        let reason = body
            .get("stop_reason")
            .and_then(Value::as_str)
            .map_or(FinishReason::Stop, finish_reason);
        Ok((
            text,
            Final {
                finish_reason: reason,
                usage,
            },
        ))
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(AnthropicStream::default())
    }

    fn error_message(&self, body: &Value) -> Option<String> {
        error_parts(body).map(|(message, kind)| format!("{message} [{kind}]"))
    }

    fn models_page(&self, page: Option<&str>) -> (String, Vec<(String, String)>) {
        let mut query = vec![("limit".to_string(), "1000".to_string())];
        if let Some(after) = page {
            query.push(("after_id".into(), after.into()));
        }
        ("/v1/models".into(), query)
    }

    fn parse_models(&self, body: &Value) -> Result<(Vec<String>, Option<String>), BackendError> {
        let data = body
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol(PROVIDER, "the model list has no `data` array"))?;
        let ids = data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let more = body.get("has_more").and_then(Value::as_bool) == Some(true);
        let next = more
            .then(|| {
                body.get("last_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .flatten();
        Ok((ids, next))
    }
}

#[derive(Default)]
struct AnthropicStream {
    usage: Usage,
    finish: Option<FinishReason>,
    stopped: bool,
}

impl Decoder for AnthropicStream {
    fn event(&mut self, event: &SseEvent, text: &mut Vec<String>) -> Result<(), BackendError> {
        let value: Value = serde_json::from_str(&event.data).map_err(|e| {
            protocol(
                PROVIDER,
                format!(
                    "malformed `{}` event ({e}): {:.200}",
                    event.event, event.data
                ),
            )
        })?;
        // The `type` in the data is authoritative; the SSE event name mirrors it.
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event.event.as_str());
        match kind {
            "message_start" => usage_into(&mut self.usage, value.pointer("/message/usage")),
            "content_block_delta"
                if value.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") =>
            {
                if let Some(t) = value.pointer("/delta/text").and_then(Value::as_str) {
                    text.push(t.to_string());
                }
            }
            "message_delta" => {
                if let Some(r) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.finish = Some(finish_reason(r));
                }
                usage_into(&mut self.usage, value.get("usage"));
            }
            "message_stop" => self.stopped = true,
            "error" => {
                let (message, kind) = error_parts(&value).unwrap_or_default();
                return Err(BackendError::Api {
                    status: status_of(&kind),
                    message: format!("{message} [{kind}]"),
                    retry_after: None,
                });
            }
            // ping, content_block_start/stop, and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    fn end(&self) -> Option<Final> {
        self.stopped.then(|| Final {
            finish_reason: self.finish.unwrap_or(FinishReason::Stop),
            usage: self.usage,
        })
    }

    fn end_marker(&self) -> &'static str {
        "`message_stop`"
    }
}
