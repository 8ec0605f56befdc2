//! Google Gemini API (generativelanguage, v1beta).
//!
//! `POST {base}/v1beta/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse`
//! for streams, with the key in `x-goog-api-key`. Roles are `user` and `model`; system prompts
//! go in `systemInstruction`. A stream has no end event: its last chunk carries `finishReason`.
//! Errors are `{"error": {"code", "message", "status"}}`.

use serde_json::{Map, Value, json};

use super::config::BackendConfig;
use super::error::BackendError;
use super::http::{Decoder, Final, Prepared, Wire, merge_extra, protocol, warn_unsupported};
use super::sse::SseEvent;
use super::types::{ChatRequest, FinishReason, Role, Usage};

const PROVIDER: &str = "Gemini";

pub(crate) struct Gemini;

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "LANGUAGE"
        | "IMAGE_SAFETY" => FinishReason::ContentFilter,
        "UNEXPECTED_TOOL_CALL" => FinishReason::ToolCall,
        _ => FinishReason::Error,
    }
}

/// Model names may be given with or without the API's `models/` prefix.
pub(crate) fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

fn usage(value: &Value) -> Option<Usage> {
    let u = value.get("usageMetadata").filter(|u| u.is_object())?;
    let count = |name: &str| u.get(name).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input_tokens: count("promptTokenCount"),
        // Thinking tokens are billed as output.
        output_tokens: count("candidatesTokenCount") + count("thoughtsTokenCount"),
    })
}

/// Text, and the finish reason if this response ends the answer.
fn read_response(value: &Value) -> (String, Option<FinishReason>) {
    let candidate = value.get("candidates").and_then(|c| c.get(0));
    let text = candidate
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                // Thought summaries are not part of the answer.
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>()
        })
        .unwrap_or_default();
    let mut finish = candidate
        .and_then(|c| c.get("finishReason"))
        .and_then(Value::as_str)
        .map(finish_reason);
    // A blocked prompt has no candidates at all, only feedback.
    if candidate.is_none() && value.pointer("/promptFeedback/blockReason").is_some() {
        finish = Some(FinishReason::ContentFilter);
    }
    (text, finish)
}

fn error_in(body: &Value) -> Option<(u16, String)> {
    // Some Gemini endpoints wrap the error object in a one-element array.
    let body = body.as_array().and_then(|a| a.first()).unwrap_or(body);
    let err = body.get("error")?;
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let code = err.get("code").and_then(Value::as_u64).unwrap_or(500);
    let status = err.get("status").and_then(Value::as_str);
    let text = match status {
        Some(s) => format!("{message} [{s}]"),
        None => message.to_string(),
    };
    Some((u16::try_from(code).unwrap_or(500), text))
}

impl Wire for Gemini {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn auth_headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        key.map(|k| vec![("x-goog-api-key", k.to_string())])
            .unwrap_or_default()
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
        let system: Vec<Value> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| json!({"text": m.content}))
            .collect();
        let contents: Vec<Value> = req
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| {
                let role = if m.role == Role::Assistant {
                    "model"
                } else {
                    "user"
                };
                json!({"role": role, "parts": [{"text": m.content}]})
            })
            .collect();
        let mut config = Map::new();
        if let Some(t) = p.temperature {
            config.insert("temperature".into(), t.into());
        }
        if let Some(t) = p.top_p {
            config.insert("topP".into(), t.into());
        }
        if let Some(k) = p.top_k {
            config.insert("topK".into(), k.into());
        }
        if let Some(n) = p.max_tokens {
            config.insert("maxOutputTokens".into(), n.into());
        }
        if !p.stop.is_empty() {
            config.insert("stopSequences".into(), p.stop.clone().into());
        }
        if let Some(s) = p.seed {
            // The API's seed is an int32; larger seeds are folded rather than rejected.
            config.insert("seed".into(), (s % (i32::MAX as u64 + 1)).into());
        }
        for (name, set) in [
            ("min_p", p.min_p.is_some()),
            ("repeat_penalty", p.repeat_penalty.is_some()),
        ] {
            if set {
                warn_unsupported(PROVIDER, name, &mut warnings);
            }
        }
        let mut body = Map::new();
        if !system.is_empty() {
            body.insert("systemInstruction".into(), json!({"parts": system}));
        }
        body.insert("contents".into(), contents.into());
        if !config.is_empty() {
            body.insert("generationConfig".into(), Value::Object(config));
        }
        merge_extra(&mut body, &req.extra);
        let (method, query) = if stream {
            (
                "streamGenerateContent",
                vec![("alt".to_string(), "sse".to_string())],
            )
        } else {
            ("generateContent", Vec::new())
        };
        Prepared {
            path: format!("/v1beta/models/{}:{method}", model_id(model)),
            query,
            body: Value::Object(body),
            warnings,
        }
    }

    fn parse_full(&self, body: &Value) -> Result<(String, Final), BackendError> {
        if let Some((status, message)) = error_in(body) {
            return Err(BackendError::Api {
                status,
                message,
                retry_after: None,
            });
        }
        if body.get("candidates").is_none() && body.get("promptFeedback").is_none() {
            return Err(protocol(PROVIDER, "the response has no `candidates`"));
        }
        let (text, finish) = read_response(body);
        Ok((
            text,
            Final {
                finish_reason: finish.unwrap_or(FinishReason::Stop),
                usage: usage(body).unwrap_or_default(),
            },
        ))
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(GeminiStream::default())
    }

    fn error_message(&self, body: &Value) -> Option<String> {
        error_in(body).map(|(_, m)| m)
    }

    fn models_page(&self, page: Option<&str>) -> (String, Vec<(String, String)>) {
        let mut query = vec![("pageSize".to_string(), "1000".to_string())];
        if let Some(token) = page {
            query.push(("pageToken".into(), token.into()));
        }
        ("/v1beta/models".into(), query)
    }

    fn parse_models(&self, body: &Value) -> Result<(Vec<String>, Option<String>), BackendError> {
        let models = body
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol(PROVIDER, "the model list has no `models` array"))?;
        let ids = models
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str))
            .map(|n| model_id(n).to_string())
            .collect();
        let next = body
            .get("nextPageToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((ids, next))
    }
}

#[derive(Default)]
struct GeminiStream {
    usage: Usage,
    finish: Option<FinishReason>,
}

impl Decoder for GeminiStream {
    fn event(&mut self, event: &SseEvent, text: &mut Vec<String>) -> Result<(), BackendError> {
        let value: Value = serde_json::from_str(&event.data).map_err(|e| {
            protocol(
                PROVIDER,
                format!("malformed stream event ({e}): {:.200}", event.data),
            )
        })?;
        if let Some((status, message)) = error_in(&value) {
            return Err(BackendError::Api {
                status,
                message,
                retry_after: None,
            });
        }
        let (piece, finish) = read_response(&value);
        text.push(piece);
        if let Some(u) = usage(&value) {
            self.usage = u;
        }
        if finish.is_some() {
            self.finish = finish;
        }
        Ok(())
    }

    fn end(&self) -> Option<Final> {
        self.finish.map(|finish_reason| Final {
            finish_reason,
            usage: self.usage,
        })
    }

    /// The final chunk may be followed by a last usage update, so read to the end.
    fn stop_at_end(&self) -> bool {
        false
    }

    fn end_marker(&self) -> &'static str {
        "a chunk with `finishReason`"
    }
}
