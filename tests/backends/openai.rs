use std::time::Duration;

use promptdeck::backend::{BackendError, FinishReason, Kind, build, complete};
use serde_json::json;
use tokio::time::Instant;

use crate::server::{Reply, Server, json, response, split, sse, sse_head};
use crate::{config, request, set_key};

fn ok_body() -> serde_json::Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    })
}

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

pub fn stream_body(with_done: bool) -> String {
    let mut s = String::new();
    s.push_str(&chunk(json!({"role": "assistant", "content": ""}), None));
    s.push_str(": keep-alive\n\n");
    s.push_str(&chunk(json!({"content": "Hel"}), None));
    s.push_str(&chunk(json!({"content": "lo, wörld"}), None));
    s.push_str(&chunk(json!({}), Some("length")));
    let usage = json!({"id": "c", "object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}});
    s.push_str(&format!("data: {usage}\r\n\r\n"));
    if with_done {
        s.push_str("data: [DONE]\n\n");
    }
    s
}

fn err_body(message: &str, kind: &str, code: &str) -> serde_json::Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[tokio::test]
async fn non_streaming_request_and_response() {
    let server = Server::start(|_, _| json(200, &[], &ok_body())).await;
    set_key("PD_OA_1", "sk-test-1");
    let mut cfg = config(Kind::OpenAi, &format!("{}/v1", server.url()), "PD_OA_1");
    cfg.stream = false;
    let backend = build(&cfg, None).unwrap();
    let mut req = request("Hi");
    req.parameters.temperature = Some(0.2);
    req.parameters.top_p = Some(0.9);
    req.parameters.max_tokens = Some(50);
    req.parameters.seed = Some(7);
    req.parameters.stop = vec!["END".into()];
    req.parameters.top_k = Some(40);
    req.extra.insert("n_probs".into(), json!(2));
    let c = complete(backend.as_ref(), req, |_| {}).await.unwrap();
    assert_eq!(c.text, "Hello there");
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (12, 3));
    assert!(!c.cached);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let r = server.request(0);
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test-1"));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let b = r.json();
    assert_eq!(b["model"], "test-model");
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(b["messages"][1], json!({"role": "user", "content": "Hi"}));
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["top_p"], 0.9);
    // A compatible server (not api.openai.com) gets the classic name and its own extras.
    assert_eq!(b["max_tokens"], 50);
    assert_eq!(b["seed"], 7);
    assert_eq!(b["stop"], json!(["END"]));
    assert_eq!(b["top_k"], 40);
    assert_eq!(b["n_probs"], 2);
    assert!(b.get("stream").is_none());
}

#[tokio::test]
async fn streaming_split_at_awkward_boundaries() {
    for step in [1, 3, 7, 64] {
        let server = Server::start(move |_, _| sse(&stream_body(true), step)).await;
        set_key("PD_OA_2", "sk-test-2");
        let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_2"), None).unwrap();
        let mut pieces = Vec::new();
        let c = complete(backend.as_ref(), request("Hi"), |t| {
            pieces.push(t.to_string())
        })
        .await
        .unwrap();
        assert_eq!(c.text, "Hello, wörld", "step {step}");
        assert_eq!(pieces.concat(), "Hello, wörld");
        assert_eq!(c.finish_reason, FinishReason::Length);
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (9, 4));
        assert!(c.ttft_ms <= c.latency_ms);
        let b = server.request(0).json();
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limited_429_honours_retry_after() {
    let server = Server::start(|n, _| {
        if n == 0 {
            json(
                429,
                &[("retry-after", "3")],
                &err_body(
                    "Rate limit reached for requests",
                    "requests",
                    "rate_limit_exceeded",
                ),
            )
        } else {
            sse(&stream_body(true), 16)
        }
    })
    .await;
    set_key("PD_OA_3", "sk-test-3");
    let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_3"), None).unwrap();
    let start = Instant::now();
    let c = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap();
    assert_eq!(c.text, "Hello, wörld");
    assert_eq!(server.count(), 2);
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = Server::start(|n, _| match n {
        0 => json(
            500,
            &[],
            &err_body("The server had an error", "server_error", "x"),
        ),
        1 => Reply::Parts(
            vec![response(
                503,
                &[],
                "text/html",
                "<html>Service Unavailable</html>",
            )],
            Duration::ZERO,
        ),
        _ => sse(&stream_body(true), 10),
    })
    .await;
    set_key("PD_OA_4", "sk-test-4");
    let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_4"), None).unwrap();
    let c = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap();
    assert_eq!(c.text, "Hello, wörld");
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server =
        Server::start(|_, _| json(502, &[], &err_body("bad gateway", "server_error", "x"))).await;
    set_key("PD_OA_5", "sk-test-5");
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_OA_5");
    cfg.retries = 2;
    let backend = build(&cfg, None).unwrap();
    let err = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Api { status: 502, .. }),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("(gave up after 3 attempts)"),
        "the error says the retries were spent: {err}"
    );
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn client_errors_fail_at_once_with_the_providers_message() {
    for (status, message) in [
        (401, "Incorrect API key provided: sk-te***t-6."),
        (400, "Invalid value for 'temperature': must be at most 2."),
        (404, "The model `nope` does not exist"),
    ] {
        let body = err_body(message, "invalid_request_error", "code_x");
        let server = Server::start(move |_, _| json(status, &[], &body)).await;
        set_key("PD_OA_6", "sk-test-6");
        let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_6"), None).unwrap();
        let err = complete(backend.as_ref(), request("Hi"), |_| {})
            .await
            .unwrap_err();
        match &err {
            BackendError::Api {
                status: s,
                message: m,
                ..
            } => {
                assert_eq!(*s, status);
                assert!(m.contains(message), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.count(), 1);
    }
}

#[tokio::test]
async fn connection_reset_before_answer_is_retried() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::ResetAfter(Vec::new())
        } else {
            sse(&stream_body(true), 5)
        }
    })
    .await;
    set_key("PD_OA_7", "sk-test-7");
    let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_7"), None).unwrap();
    let c = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap();
    assert_eq!(c.text, "Hello, wörld");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn connection_reset_after_text_keeps_the_partial_text() {
    let body = stream_body(true);
    let cut = body.find("lo, w").unwrap();
    let server = Server::start(move |_, _| {
        Reply::ResetAfter(vec![sse_head(), body.as_bytes()[..cut].to_vec()])
    })
    .await;
    set_key("PD_OA_8", "sk-test-8");
    let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_8"), None).unwrap();
    let err = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    match err {
        BackendError::Truncated { partial_text, .. } => assert_eq!(partial_text, "Hel"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.count(),
        1,
        "a stream that produced text is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn stalled_stream_hits_the_idle_timeout() {
    let body = stream_body(true);
    let cut = body.find("data: [DONE]").unwrap();
    let server = Server::start(move |_, _| {
        let mut parts = vec![sse_head()];
        parts.extend(split(&body[..cut], 11));
        Reply::Stall(parts)
    })
    .await;
    set_key("PD_OA_9", "sk-test-9");
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_OA_9");
    cfg.timeout = Duration::from_secs(30);
    let backend = build(&cfg, None).unwrap();
    let start = Instant::now();
    let err = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    match err {
        BackendError::Truncated {
            partial_text,
            reason,
        } => {
            assert_eq!(partial_text, "Hello, wörld");
            assert!(reason.contains("no data"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_secs(30));

    // Stalling before any text: a plain timeout, retried, then reported.
    let server = Server::start(|_, _| Reply::Stall(vec![sse_head()])).await;
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_OA_9");
    cfg.timeout = Duration::from_secs(30);
    cfg.retries = 1;
    let backend = build(&cfg, None).unwrap();
    let err = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Timeout(_)), "{err:?}");
    assert_eq!(server.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn keep_alives_do_not_hold_a_stalled_stream_open() {
    // Text, then only keep-alive comments, one a second for 200 s: bytes keep coming but the
    // answer never does, so the 30 s idle timeout must still end it.
    let body = stream_body(true);
    let cut = body.find("data: [DONE]").unwrap();
    let server = Server::start(move |_, _| {
        let mut parts = vec![sse_head(), body.as_bytes()[..cut].to_vec()];
        parts.extend((0..200).map(|_| b": keep-alive\n\n".to_vec()));
        Reply::Parts(parts, Duration::from_secs(1))
    })
    .await;
    set_key("PD_OA_KA", "sk-test-ka");
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_OA_KA");
    cfg.timeout = Duration::from_secs(30);
    let backend = build(&cfg, None).unwrap();
    let start = Instant::now();
    let err = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    match err {
        BackendError::Truncated { reason, .. } => {
            assert!(reason.contains("no data"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
}

#[tokio::test]
async fn stream_without_done_is_truncated() {
    let server = Server::start(|_, _| sse(&stream_body(false), 9)).await;
    set_key("PD_OA_10", "sk-test-10");
    let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_10"), None).unwrap();
    let err = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    match err {
        BackendError::Truncated {
            partial_text,
            reason,
        } => {
            assert_eq!(partial_text, "Hello, wörld");
            assert!(reason.contains("[DONE]"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_content_type_and_malformed_json_are_clear_errors() {
    let server = Server::start(|_, _| {
        Reply::Parts(
            vec![response(
                200,
                &[],
                "text/html; charset=utf-8",
                "<html>Please log in</html>",
            )],
            Duration::ZERO,
        )
    })
    .await;
    set_key("PD_OA_11", "sk-test-11");
    let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_11"), None).unwrap();
    let err = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::Protocol(_)), "{err:?}");
    assert!(
        text.contains("text/html") && text.contains("Please log in"),
        "{text}"
    );

    let server = Server::start(|_, _| {
        Reply::Parts(
            vec![response(200, &[], "application/json", "{\"choices\": [")],
            Duration::ZERO,
        )
    })
    .await;
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_OA_11");
    cfg.stream = false;
    let err = complete(build(&cfg, None).unwrap().as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("malformed JSON"), "{err}");

    let server = Server::start(|_, _| sse("data: {not json}\n\n", 4)).await;
    let cfg = config(Kind::OpenAi, &server.url(), "PD_OA_11");
    let err = complete(build(&cfg, None).unwrap().as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("malformed stream event"), "{err}");
}

#[tokio::test]
async fn json_answer_to_a_stream_request_is_accepted() {
    let server = Server::start(|_, _| json(200, &[], &ok_body())).await;
    set_key("PD_OA_12", "sk-test-12");
    let backend = build(&config(Kind::OpenAi, &server.url(), "PD_OA_12"), None).unwrap();
    let c = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap();
    assert_eq!(c.text, "Hello there");
}

#[tokio::test]
async fn loopback_server_needs_no_key() {
    let server = Server::start(|_, _| sse(&stream_body(true), 50)).await;
    let backend = build(
        &config(Kind::OpenAi, &server.url(), "PD_OA_UNSET_NEVER_SET"),
        None,
    )
    .unwrap();
    let c = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap();
    assert_eq!(c.text, "Hello, wörld");
    assert_eq!(server.request(0).header("authorization"), None);
}

#[tokio::test]
async fn list_models() {
    let server = Server::start(|_, _| {
        json(
            200,
            &[],
            &json!({"object": "list", "data": [
            {"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "openai"},
            {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"}]}),
        )
    })
    .await;
    set_key("PD_OA_13", "sk-test-13");
    let backend = build(
        &config(Kind::OpenAi, &format!("{}/v1", server.url()), "PD_OA_13"),
        None,
    )
    .unwrap();
    assert_eq!(
        backend.list_models().await.unwrap(),
        vec!["gpt-4o", "gpt-4o-mini"]
    );
    let r = server.request(0);
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(r.header("authorization"), Some("Bearer sk-test-13"));
}
