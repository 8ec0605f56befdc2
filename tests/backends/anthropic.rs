use std::time::Duration;

use promptdeck::backend::{BackendError, FinishReason, Kind, build, complete};
use serde_json::{Value, json};

use crate::server::{Reply, Server, json, sse, sse_event as event, sse_head};
use crate::{config, request, set_key};

fn stream_events(stop: bool) -> Vec<String> {
    let mut v = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [],
            "model": "claude-x", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Bonjour"}}),
        ),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": " à tous"}}),
        ),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
            "usage": {"output_tokens": 15}}),
        ),
    ];
    if stop {
        v.push(event("message_stop", json!({"type": "message_stop"})));
    }
    v
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[tokio::test]
async fn non_streaming_request_and_response() {
    let server = Server::start(|_, _| {
        json(
            200,
            &[],
            &json!({"id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Hi!"}], "model": "claude-x",
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 2}}),
        )
    })
    .await;
    set_key("PD_AN_1", "sk-ant-test-1");
    let mut cfg = config(Kind::Anthropic, &server.url(), "PD_AN_1");
    cfg.stream = false;
    let backend = build(&cfg, None).unwrap();
    let mut req = request("Hello");
    req.parameters.top_k = Some(5);
    req.parameters.temperature = Some(0.5);
    req.parameters.stop = vec!["###".into()];
    req.parameters.seed = Some(1);
    req.parameters.min_p = Some(0.1);
    let c = complete(backend.as_ref(), req, |_| {}).await.unwrap();
    assert_eq!(c.text, "Hi!");
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (10, 2));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("`seed`"));
    assert!(c.warnings[1].contains("`min_p`"));
    let r = server.request(0);
    assert_eq!(r.target, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some("sk-ant-test-1"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    let b = r.json();
    assert_eq!(b["system"], "Be brief.");
    assert_eq!(b["messages"], json!([{"role": "user", "content": "Hello"}]));
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(b["top_k"], 5);
    assert_eq!(b["stop_sequences"], json!(["###"]));
    assert!(b.get("seed").is_none() && b.get("min_p").is_none());
}

#[tokio::test]
async fn streaming_events_split_across_packets() {
    for step in [1, 5, 13, 200] {
        let server = Server::start(move |_, _| sse(&stream_events(true).concat(), step)).await;
        set_key("PD_AN_2", "sk-ant-test-2");
        let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_2"), None).unwrap();
        let c = complete(backend.as_ref(), request("Hello"), |_| {})
            .await
            .unwrap();
        assert_eq!(c.text, "Bonjour à tous", "step {step}");
        assert_eq!(c.finish_reason, FinishReason::Length);
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (25, 15));
        assert_eq!(server.request(0).json()["stream"], true);
    }
}

#[tokio::test]
async fn overloaded_error_event_before_text_is_retried_after_text_truncates() {
    let overloaded = event("error", error_body("overloaded_error", "Overloaded"));
    let early = overloaded.clone();
    let server = Server::start(move |n, _| {
        if n == 0 {
            sse(&early, 7)
        } else {
            sse(&stream_events(true).concat(), 7)
        }
    })
    .await;
    set_key("PD_AN_3", "sk-ant-test-3");
    let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_3"), None).unwrap();
    let c = complete(backend.as_ref(), request("Hello"), |_| {})
        .await
        .unwrap();
    assert_eq!(c.text, "Bonjour à tous");
    assert_eq!(server.count(), 2);

    let mut late = stream_events(false)[..4].concat();
    late.push_str(&overloaded);
    let server = Server::start(move |_, _| sse(&late, 7)).await;
    let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_3"), None).unwrap();
    let err = complete(backend.as_ref(), request("Hello"), |_| {})
        .await
        .unwrap_err();
    match err {
        BackendError::Truncated {
            partial_text,
            reason,
        } => {
            assert_eq!(partial_text, "Bonjour");
            assert!(reason.contains("Overloaded"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn http_529_is_retried_and_401_is_not() {
    let server = Server::start(|n, _| {
        if n == 0 {
            json(529, &[], &error_body("overloaded_error", "Overloaded"))
        } else {
            sse(&stream_events(true).concat(), 64)
        }
    })
    .await;
    set_key("PD_AN_4", "sk-ant-test-4");
    let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_4"), None).unwrap();
    assert_eq!(
        complete(backend.as_ref(), request("x"), |_| {})
            .await
            .unwrap()
            .text,
        "Bonjour à tous"
    );
    assert_eq!(server.count(), 2);

    let server = Server::start(|_, _| {
        json(
            401,
            &[],
            &error_body("authentication_error", "invalid x-api-key"),
        )
    })
    .await;
    let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_4"), None).unwrap();
    let err = complete(backend.as_ref(), request("x"), |_| {})
        .await
        .unwrap_err();
    match &err {
        BackendError::Api {
            status: 401,
            message,
            ..
        } => {
            assert!(message.contains("invalid x-api-key"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn stream_without_message_stop_is_truncated() {
    let server = Server::start(|_, _| sse(&stream_events(false).concat(), 21)).await;
    set_key("PD_AN_5", "sk-ant-test-5");
    let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_5"), None).unwrap();
    match complete(backend.as_ref(), request("x"), |_| {})
        .await
        .unwrap_err()
    {
        BackendError::Truncated {
            partial_text,
            reason,
        } => {
            assert_eq!(partial_text, "Bonjour à tous");
            assert!(reason.contains("message_stop"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn missing_key_is_a_clear_error_and_sends_nothing() {
    let server = Server::start(|_, _| Reply::Stall(vec![sse_head()])).await;
    set_key("PD_AN_EMPTY", "");
    let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_EMPTY"), None).unwrap();
    let err = complete(backend.as_ref(), request("x"), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::MissingKey { .. }), "{err:?}");
    assert!(err.to_string().contains("PD_AN_EMPTY"), "{err}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn list_models_follows_pages() {
    let server = Server::start(|n, _| {
        if n == 0 {
            json(
                200,
                &[],
                &json!({"data": [{"type": "model", "id": "claude-a", "display_name": "A",
                "created_at": "2025-01-01T00:00:00Z"}], "has_more": true,
                "first_id": "claude-a", "last_id": "claude-a"}),
            )
        } else {
            json(
                200,
                &[],
                &json!({"data": [{"type": "model", "id": "claude-b", "display_name": "B",
                "created_at": "2025-01-01T00:00:00Z"}], "has_more": false,
                "first_id": "claude-b", "last_id": "claude-b"}),
            )
        }
    })
    .await;
    set_key("PD_AN_6", "sk-ant-test-6");
    let backend = build(&config(Kind::Anthropic, &server.url(), "PD_AN_6"), None).unwrap();
    assert_eq!(
        backend.list_models().await.unwrap(),
        vec!["claude-a", "claude-b"]
    );
    assert_eq!(server.request(0).target, "/v1/models?limit=1000");
    assert_eq!(
        server.request(1).target,
        "/v1/models?limit=1000&after_id=claude-a"
    );
    assert_eq!(
        server.request(1).header("anthropic-version"),
        Some("2023-06-01")
    );
}
