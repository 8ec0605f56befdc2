use promptdeck::backend::{BackendError, FinishReason, Kind, build, complete};
use serde_json::{Value, json};

use crate::server::{Server, json, sse};
use crate::{config, request, set_key};

fn chunk(text: &str, finish: Option<&str>, usage: Option<(u64, u64)>) -> String {
    let mut c = json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
        "index": 0}], "modelVersion": "gemini-2.0-flash"});
    if let Some(f) = finish {
        c["candidates"][0]["finishReason"] = json!(f);
    }
    if let Some((p, o)) = usage {
        c["usageMetadata"] = json!({"promptTokenCount": p, "candidatesTokenCount": o,
            "totalTokenCount": p + o});
    }
    format!("data: {c}\r\n\r\n")
}

fn stream_body(finish: Option<&str>) -> String {
    [
        chunk("Guten", None, Some((8, 1))),
        chunk(" Tag", None, Some((8, 2))),
        chunk("!", finish, Some((8, 3))),
    ]
    .concat()
}

#[tokio::test]
async fn non_streaming_request_and_response() {
    let server = Server::start(|_, _| {
        json(200, &[], &json!({"candidates": [{"content": {"parts": [{"text": "Hallo"}], "role": "model"},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5}}))
    })
    .await;
    set_key("PD_GE_1", "AIza-test-1");
    let mut cfg = config(Kind::Gemini, &server.url(), "PD_GE_1");
    cfg.stream = false;
    cfg.model = "models/gemini-2.0-flash".into();
    cfg.query.insert("tag".into(), "x".into());
    let backend = build(&cfg, None).unwrap();
    let mut req = request("Hi");
    req.messages.push(promptdeck::backend::Message::new(
        promptdeck::backend::Role::Assistant,
        "Yo",
    ));
    req.messages.push(promptdeck::backend::Message::new(
        promptdeck::backend::Role::User,
        "Again",
    ));
    req.parameters.temperature = Some(0.1);
    req.parameters.top_p = Some(0.8);
    req.parameters.top_k = Some(3);
    req.parameters.max_tokens = Some(20);
    req.parameters.seed = Some(42);
    req.parameters.stop = vec!["\n\n".into()];
    req.parameters.repeat_penalty = Some(1.1);
    let c = complete(backend.as_ref(), req, |_| {}).await.unwrap();
    assert_eq!(c.text, "Hallo");
    assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (4, 1));
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("repeat_penalty"));
    assert!(c.cost.is_some(), "gemini-2.0-flash has a default price");
    let r = server.request(0);
    assert_eq!(
        r.target,
        "/v1beta/models/gemini-2.0-flash:generateContent?tag=x"
    );
    assert_eq!(r.header("x-goog-api-key"), Some("AIza-test-1"));
    let b = r.json();
    assert_eq!(
        b["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        b["contents"],
        json!([
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Yo"}]},
        {"role": "user", "parts": [{"text": "Again"}]}])
    );
    assert_eq!(
        b["generationConfig"],
        json!({"temperature": 0.1, "topP": 0.8, "topK": 3,
        "maxOutputTokens": 20, "stopSequences": ["\n\n"], "seed": 42})
    );
}

#[tokio::test]
async fn streaming_split_across_packets() {
    for step in [1, 6, 17, 300] {
        let server = Server::start(move |_, _| sse(&stream_body(Some("MAX_TOKENS")), step)).await;
        set_key("PD_GE_2", "AIza-test-2");
        let backend = build(&config(Kind::Gemini, &server.url(), "PD_GE_2"), None).unwrap();
        let c = complete(backend.as_ref(), request("Hi"), |_| {})
            .await
            .unwrap();
        assert_eq!(c.text, "Guten Tag!");
        assert_eq!(c.finish_reason, FinishReason::Length);
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (8, 3));
        assert_eq!(
            server.request(0).target,
            "/v1beta/models/test-model:streamGenerateContent?alt=sse"
        );
    }
}

#[tokio::test]
async fn safety_finish_is_content_filter_and_missing_finish_is_truncation() {
    let server = Server::start(|_, _| sse(&stream_body(Some("SAFETY")), 40)).await;
    set_key("PD_GE_3", "AIza-test-3");
    let backend = build(&config(Kind::Gemini, &server.url(), "PD_GE_3"), None).unwrap();
    let c = complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::ContentFilter);

    let server = Server::start(|_, _| sse(&stream_body(None), 40)).await;
    let backend = build(&config(Kind::Gemini, &server.url(), "PD_GE_3"), None).unwrap();
    match complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err()
    {
        BackendError::Truncated {
            partial_text,
            reason,
        } => {
            assert_eq!(partial_text, "Guten Tag!");
            assert!(reason.contains("finishReason"));
        }
        other => panic!("{other:?}"),
    }
}

fn error(code: u16, message: &str, status: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

#[tokio::test]
async fn errors_carry_the_providers_message() {
    let server = Server::start(|_, _| {
        json(
            400,
            &[],
            &error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
            ),
        )
    })
    .await;
    set_key("PD_GE_4", "AIza-test-4");
    let backend = build(&config(Kind::Gemini, &server.url(), "PD_GE_4"), None).unwrap();
    match complete(backend.as_ref(), request("Hi"), |_| {})
        .await
        .unwrap_err()
    {
        BackendError::Api {
            status: 400,
            message,
            ..
        } => {
            assert!(message.contains("API key not valid"), "{message}");
            assert!(message.contains("INVALID_ARGUMENT"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 1);

    let server = Server::start(|n, _| {
        if n == 0 {
            json(
                503,
                &[],
                &error(503, "The model is overloaded.", "UNAVAILABLE"),
            )
        } else {
            sse(&stream_body(Some("STOP")), 40)
        }
    })
    .await;
    let backend = build(&config(Kind::Gemini, &server.url(), "PD_GE_4"), None).unwrap();
    assert_eq!(
        complete(backend.as_ref(), request("Hi"), |_| {})
            .await
            .unwrap()
            .text,
        "Guten Tag!"
    );
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn list_models_follows_pages() {
    let server = Server::start(|n, _| {
        if n == 0 {
            json(
                200,
                &[],
                &json!({"models": [{"name": "models/gemini-2.0-flash"}], "nextPageToken": "p2"}),
            )
        } else {
            json(
                200,
                &[],
                &json!({"models": [{"name": "models/gemini-2.5-pro"}]}),
            )
        }
    })
    .await;
    set_key("PD_GE_5", "AIza-test-5");
    let backend = build(&config(Kind::Gemini, &server.url(), "PD_GE_5"), None).unwrap();
    assert_eq!(
        backend.list_models().await.unwrap(),
        vec!["gemini-2.0-flash", "gemini-2.5-pro"]
    );
    assert_eq!(
        server.request(1).target,
        "/v1beta/models?pageSize=1000&pageToken=p2"
    );
    assert_eq!(
        server.request(1).header("x-goog-api-key"),
        Some("AIza-test-5")
    );
}
