//! OpenAI Chat Completions, also spoken by Ollama, llama.cpp's server, vLLM and most gateways.
//!
//! `POST {base}/chat/completions`, bearer auth; streamed answers are `chat.completion.chunk`
//! events ending in `data: [DONE]`, with usage in a last chunk when `stream_options.include_usage`
//! is set. Errors are `{"error": {"message", "type", "code"}}`.

use serde_json::{Map, Value, json};

use super::config::{BackendConfig, OPENAI_BASE_URL};
use super::error::BackendError;
use super::http::{Decoder, Final, Prepared, Wire, merge_extra, protocol, warn_unsupported};
use super::sse::SseEvent;
use super::types::{ChatRequest, FinishReason, Role, Usage};

const PROVIDER: &str = "OpenAI";

pub(crate) struct OpenAi;

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" | "eos" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" | "function_call" => FinishReason::ToolCall,
        _ => FinishReason::Error,
    }
}

fn usage(value: &Value) -> Option<Usage> {
    let u = value.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// `{"error": {...}}` inside a 200 stream: some compatible servers report failures this way.
fn error_in(value: &Value) -> Option<String> {
    let err = value.get("error")?;
    match err {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) => {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            let tag = err
                .get("code")
                .and_then(Value::as_str)
                .or_else(|| err.get("type").and_then(Value::as_str));
            Some(match tag {
                Some(t) => format!("{message} [{t}]"),
                None => message.to_string(),
            })
        }
        _ => None,
    }
}

impl Wire for OpenAi {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn auth_headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        key.map(|k| vec![("authorization", format!("Bearer {k}"))])
            .unwrap_or_default()
    }

    fn prepare(
        &self,
        cfg: &BackendConfig,
        model: &str,
        req: &ChatRequest,
        stream: bool,
    ) -> Prepared {
        let p = &req.parameters;
        // OpenAI itself rejects unknown sampling fields and, for reasoning models, `max_tokens`;
        // compatible servers (llama.cpp, vLLM) take `top_k`/`min_p`/`repeat_penalty` and know
        // only the older `max_tokens`.
        let official = cfg.base_url() == OPENAI_BASE_URL.trim_end_matches('/');
        let mut warnings = Vec::new();
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                json!({"role": role, "content": m.content})
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), model.into());
        body.insert("messages".into(), messages.into());
        if let Some(t) = p.temperature {
            body.insert("temperature".into(), t.into());
        }
        if let Some(t) = p.top_p {
            body.insert("top_p".into(), t.into());
        }
        if let Some(n) = p.max_tokens {
            let name = if official {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            body.insert(name.into(), n.into());
        }
        if !p.stop.is_empty() {
            body.insert("stop".into(), p.stop.clone().into());
        }
        if let Some(s) = p.seed {
            body.insert("seed".into(), s.into());
        }
        let local_only = [
            ("top_k", p.top_k.map(Value::from)),
            ("min_p", p.min_p.map(Value::from)),
            ("repeat_penalty", p.repeat_penalty.map(Value::from)),
        ];
        for (name, value) in local_only {
            if let Some(v) = value {
                if official {
                    warn_unsupported(PROVIDER, name, &mut warnings);
                } else {
                    body.insert(name.into(), v);
                }
            }
        }
        if stream {
            body.insert("stream".into(), true.into());
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        merge_extra(&mut body, &req.extra);
        Prepared {
            path: "/chat/completions".into(),
            query: Vec::new(),
            body: Value::Object(body),
            warnings,
        }
    }

    fn parse_full(&self, body: &Value) -> Result<(String, Final), BackendError> {
        if let Some(message) = error_in(body) {
            return Err(BackendError::Api {
                status: 200,
                message,
                retry_after: None,
            });
        }
        let choice = body
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| protocol(PROVIDER, "the response has no `choices`"))?;
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let reason = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map_or(FinishReason::Stop, finish_reason);
        Ok((
            text,
            Final {
                finish_reason: reason,
                usage: usage(body).unwrap_or_default(),
            },
        ))
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::new(OpenAiStream::default())
    }

    fn error_message(&self, body: &Value) -> Option<String> {
        error_in(body)
    }

    fn models_page(&self, _page: Option<&str>) -> (String, Vec<(String, String)>) {
        ("/models".into(), Vec::new())
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
        Ok((ids, None))
    }
}

#[derive(Default)]
struct OpenAiStream {
    finish: Option<FinishReason>,
    usage: Usage,
    done: bool,
}

impl Decoder for OpenAiStream {
    fn event(&mut self, event: &SseEvent, text: &mut Vec<String>) -> Result<(), BackendError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            protocol(
                PROVIDER,
                format!("malformed stream event ({e}): {data:.200}"),
            )
        })?;
        if let Some(message) = error_in(&value) {
            return Err(BackendError::Api {
                status: 200,
                message,
                retry_after: None,
            });
        }
        if let Some(u) = usage(&value) {
            self.usage = u;
        }
        if let Some(choice) = value.get("choices").and_then(|c| c.get(0)) {
            if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str) {
                text.push(t.to_string());
            }
            if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(finish_reason(r));
            }
        }
        Ok(())
    }

    fn end(&self) -> Option<Final> {
        self.done.then(|| Final {
            // `[DONE]` without a finish reason: servers that omit it stopped normally.
            finish_reason: self.finish.unwrap_or(FinishReason::Stop),
            usage: self.usage,
        })
    }

    fn end_marker(&self) -> &'static str {
        "`data: [DONE]`"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::config::Kind;
    use crate::backend::types::Parameters;

    #[test]
    fn official_api_gets_warnings_and_the_new_max_tokens_name() {
        let cfg = BackendConfig::new("o", Kind::OpenAi, "gpt-4o");
        let req = ChatRequest {
            parameters: Parameters {
                top_k: Some(40),
                min_p: Some(0.05),
                repeat_penalty: Some(1.1),
                max_tokens: Some(10),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = OpenAi.prepare(&cfg, "gpt-4o", &req, false);
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert!(p.warnings.iter().any(|w| w.contains("`top_k`")));
        assert_eq!(p.body["max_completion_tokens"], 10);
        for name in ["top_k", "min_p", "repeat_penalty", "max_tokens"] {
            assert!(p.body.get(name).is_none(), "{name}");
        }
    }
}
