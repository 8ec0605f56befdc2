use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use promptdeck::backend::{Backend, BackendError, Kind, build, complete};
use serde_json::json;
use tokio::time::Instant;

use crate::server::{Reply, Server, json, response, sse, sse_head};
use crate::{config, request, set_key, temp_dir};

fn openai_ok() -> Reply {
    sse(
        &format!(
            "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": "cached?"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 1000, "completion_tokens": 2000}})
        ),
        8,
    )
}

#[tokio::test]
async fn cache_hits_misses_and_sample_separation() {
    let server = Server::start(|_, _| openai_ok()).await;
    set_key("PD_CO_1", "sk-cache-1");
    let dir = temp_dir("cache");
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_CO_1");
    cfg.model = "gpt-4o-mini".into();
    let backend = build(&cfg, Some(dir.clone())).unwrap();

    let first = complete(backend.as_ref(), request("q"), |_| {})
        .await
        .unwrap();
    assert!(!first.cached);
    let cost = first.cost.unwrap();
    assert!((cost - (0.15e-3 + 1.2e-3)).abs() < 1e-12, "{cost}");
    let second = complete(backend.as_ref(), request("q"), |_| {})
        .await
        .unwrap();
    assert!(second.cached);
    assert_eq!(second.text, "cached?");
    assert_eq!(second.usage, first.usage);
    assert_eq!(server.count(), 1);

    let mut other_sample = request("q");
    other_sample.sample_index = 1;
    assert!(
        !complete(backend.as_ref(), other_sample.clone(), |_| {})
            .await
            .unwrap()
            .cached
    );
    assert!(
        complete(backend.as_ref(), other_sample, |_| {})
            .await
            .unwrap()
            .cached
    );
    assert_eq!(server.count(), 2);

    let mut fresh = request("q");
    fresh.no_cache = true;
    assert!(
        !complete(backend.as_ref(), fresh, |_| {})
            .await
            .unwrap()
            .cached
    );
    assert_eq!(server.count(), 3);

    // A different prompt misses; the configured price overrides the table.
    let mut cfg2 = cfg.clone();
    cfg2.prices = Some(promptdeck::backend::Prices {
        input: 1.0,
        output: 0.0,
    });
    let priced = build(&cfg2, Some(dir.clone())).unwrap();
    let c = complete(priced.as_ref(), request("other"), |_| {})
        .await
        .unwrap();
    assert!(!c.cached);
    assert!((c.cost.unwrap() - 1e-3).abs() < 1e-12);

    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.ends_with(".json") && f.len() == 64 + 5),
        "{files:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn concurrency_limit_holds_over_real_sockets() {
    let server = Server::start(|_, _| {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let mut parts = vec![sse_head()];
        parts.extend(body.as_bytes().chunks(20).map(<[u8]>::to_vec));
        Reply::Parts(parts, Duration::from_millis(8))
    })
    .await;
    set_key("PD_CO_2", "sk-conc-2");
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_CO_2");
    cfg.concurrency = 2;
    let backend: Arc<dyn Backend> = build(&cfg, None).unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let b = Arc::clone(&backend);
        tasks.push(tokio::spawn(async move {
            complete(b.as_ref(), request(&format!("case {i}")), |_| {}).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().text, "x");
    }
    assert_eq!(server.count(), 8);
    assert_eq!(server.peak_active.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn requests_per_minute_over_real_sockets() {
    let server = Server::start(|_, _| openai_ok()).await;
    set_key("PD_CO_3", "sk-rpm-3");
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_CO_3");
    cfg.requests_per_minute = Some(3);
    let backend = build(&cfg, None).unwrap();
    let start = Instant::now();
    for i in 0..5 {
        complete(backend.as_ref(), request(&format!("{i}")), |_| {})
            .await
            .unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(70),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.count(), 5);
}

#[tokio::test(start_paused = true)]
async fn api_key_never_appears_in_errors_debug_or_cache() {
    const KEY: &str = "sk-PDSECRET-7f3a9c2e1b-do-not-leak";
    set_key("PD_CO_SECRET", KEY);
    let echo = format!("Incorrect API key provided: {KEY}");
    let server = Server::start(move |n, req| {
        // Gateways that echo credentials back are the worst case, so this one does.
        let auth = req.header("authorization").unwrap_or("").to_string();
        match n {
            0 => json(
                401,
                &[],
                &json!({"error": {"message": echo, "type": "invalid_request_error"}}),
            ),
            1 => Reply::Parts(
                vec![response(
                    502,
                    &[],
                    "text/plain",
                    &format!("upstream said {auth}"),
                )],
                Duration::ZERO,
            ),
            2 => Reply::Parts(
                vec![response(200, &[], "text/html", &format!("<p>{auth}</p>"))],
                Duration::ZERO,
            ),
            3 => sse(&format!("data: {{\"broken {auth}\n\n"), 9),
            4 => Reply::ResetAfter(vec![
                sse_head(),
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n".to_vec(),
            ]),
            5 => Reply::Stall(vec![sse_head()]),
            6 => sse(
                &format!(
                    "data: {}\n\n",
                    json!({"error": {"message": format!("bad {auth}")}})
                ),
                9,
            ),
            _ => openai_ok(),
        }
    })
    .await;
    let dir = temp_dir("secret");
    let mut cfg = config(Kind::OpenAi, &server.url(), "PD_CO_SECRET");
    cfg.retries = 0;
    cfg.timeout = Duration::from_secs(5);
    let backend = build(&cfg, Some(dir.clone())).unwrap();
    let mut texts = vec![format!("{cfg:?}")];
    for i in 0..7 {
        let mut req = request("q");
        req.no_cache = true;
        let err = complete(backend.as_ref(), req, |_| {}).await.unwrap_err();
        texts.push(format!("{i}: {err} / {err:?}"));
    }
    // The variable-missing path, and a bad configuration.
    let mut missing = cfg.clone();
    missing.api_key_env = Some("PD_CO_SECRET_UNSET".into());
    missing.base_url = Some("https://gateway.invalid/v1".into());
    let err = complete(
        build(&missing, None).unwrap().as_ref(),
        request("q"),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackendError::MissingKey { .. }));
    texts.push(format!("{err} / {err:?}"));
    let mut bad = cfg.clone();
    bad.headers.insert("x-bad".into(), "line\nbreak".into());
    texts.push(format!("{:?}", build(&bad, None).err()));
    // A success, then everything written to the cache.
    let ok = complete(backend.as_ref(), request("q"), |_| {})
        .await
        .unwrap();
    texts.push(format!("{ok:?}"));
    for entry in std::fs::read_dir(&dir).unwrap() {
        texts.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert_eq!(server.count(), 8);
    for t in &texts {
        assert!(!t.contains(KEY), "key leaked: {t}");
        assert!(!t.contains("PDSECRET"), "key fragment leaked: {t}");
    }
    assert!(texts.iter().any(|t| t.contains("[redacted]")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn invalid_configuration_is_rejected_at_build() {
    let mut cfg = config(Kind::Gemini, "ftp://example", "X");
    assert!(matches!(
        build(&cfg, None).err(),
        Some(BackendError::Config(_))
    ));
    cfg.base_url = None;
    cfg.concurrency = 0;
    assert!(
        build(&cfg, None)
            .err()
            .unwrap()
            .to_string()
            .contains("concurrency")
    );
}
