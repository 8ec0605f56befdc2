//! Behavioural tests of the [`Store`] API, run against both backends, plus
//! the ignored scale benchmark.

use std::collections::BTreeMap;
use std::time::Instant;

use super::*;

fn unit(prompt: &str, body: &str) -> UnitFiles {
    UnitFiles {
        prompt: prompt.into(),
        files: BTreeMap::from([
            (format!("prompts/{prompt}.prompt"), body.to_string()),
            (format!("prompts/{prompt}.tests.yaml"), "- name: a\n".into()),
            ("partials/sys.j2".to_string(), "be brief".into()),
        ]),
    }
}

fn meta(version: &str, prompt: &str) -> RunMeta {
    RunMeta {
        version: version.into(),
        prompt: prompt.into(),
        backend: "mock".into(),
        model: "m-1".into(),
        parameters: serde_json::json!({"temperature": 0.7, "z": 1, "a": [1, 2]}),
    }
}

fn result(case: u32, sample: u32, passed: Option<bool>, cost: f64) -> CaseResult {
    CaseResult {
        case,
        sample,
        case_name: format!("case-{case}"),
        messages: vec![
            Message {
                role: "system".into(),
                content: "be brief".into(),
            },
            Message {
                role: "user".into(),
                content: format!("q{case}"),
            },
        ],
        output: format!("answer {case}/{sample} ✓"),
        finish_reason: Some("stop".into()),
        latency_ms: 120,
        ttft_ms: Some(30),
        usage: TokenUsage {
            input: 10,
            output: 5,
        },
        cost,
        error: None,
        cached: false,
        assertions: vec![serde_json::json!({"kind": "contains", "ok": true})],
        passed,
        // Some results carry a technique record, so export/import round trips cover it.
        technique: (sample % 2 == 1).then(|| {
            serde_json::json!({"kind": "self-consistency", "calls": [],
                "votes": {"answers": ["7", null], "answer": "7",
                          "distribution": [["7", 1]], "agreement": 0.5}})
        }),
    }
}

#[test]
fn results_written_before_technique_records_still_read() {
    let mut old = serde_json::to_value(result(0, 0, Some(true), 0.5)).unwrap();
    assert!(old.get("technique").is_none(), "absent when None: {old}");
    old.as_object_mut().unwrap().remove("technique");
    let read: CaseResult = serde_json::from_value(old).unwrap();
    assert_eq!(read.technique, None);
    let with = result(0, 1, Some(true), 0.5);
    let back: CaseResult = serde_json::from_value(serde_json::to_value(&with).unwrap()).unwrap();
    assert_eq!(back, with);
}

/// Runs `f` against a fresh store of each backend.
fn each(f: impl Fn(&dyn Store)) {
    f(&MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    f(&SledStore::open(dir.path()).unwrap());
}

fn export_bytes(s: &dyn Store) -> Vec<u8> {
    let mut out = Vec::new();
    s.export(&mut out).unwrap();
    out
}

#[test]
fn commit_history_and_parents() {
    each(|s| {
        let a = s.commit(&unit("p", "v1"), "first", "ann").unwrap();
        let CommitOutcome::Created(a) = a else {
            panic!("not created")
        };
        assert_eq!(
            s.commit(&unit("p", "v1"), "again", "bob").unwrap(),
            CommitOutcome::Existing(a.clone())
        );
        let b = s.commit(&unit("p", "v2"), "second", "ann").unwrap();
        let b = b.id().to_string();
        s.commit(&unit("q", "other"), "", "").unwrap();
        let vb = s.get_version(&b).unwrap().unwrap();
        assert_eq!(vb.parent.as_deref(), Some(a.as_str()));
        assert_eq!(vb.message, "second");
        assert!(s.get_version(&a).unwrap().unwrap().parent.is_none());
        assert_eq!(s.latest_version("p").unwrap().unwrap().id, b);
        assert!(s.latest_version("nope").unwrap().is_none());
        s.set_label("p", "prod", &a, "ann").unwrap();
        s.set_label("p", "baseline", &a, "ann").unwrap();
        let h = s.history("p").unwrap();
        assert_eq!(
            h.iter().map(|e| e.version.id.as_str()).collect::<Vec<_>>(),
            [b.as_str(), a.as_str()]
        );
        assert!(h[0].labels.is_empty());
        assert_eq!(h[1].labels, ["baseline", "prod"]);
        assert!(h[0].version.created_at > h[1].version.created_at);
        assert_eq!(s.prompts().unwrap(), ["p", "q"]);
        assert!(s.history("nope").unwrap().is_empty());
    });
}

#[test]
fn invalid_units_are_refused() {
    each(|s| {
        let mut u = unit("p", "x");
        u.files.insert("../escape".into(), String::new());
        assert!(matches!(
            s.commit(&u, "", ""),
            Err(StoreError::Invalid { .. })
        ));
        assert!(s.commit(&unit("", "x"), "", "").is_err());
        assert!(s.prompts().unwrap().is_empty());
    });
}

#[test]
fn short_ids_and_prefixes() {
    each(|s| {
        let ids: Vec<String> = (0..300)
            .map(|i| {
                s.commit(&unit("p", &format!("body {i}")), "", "")
                    .unwrap()
                    .id()
                    .to_string()
            })
            .collect();
        for id in &ids {
            let short = s.short_id(id);
            assert!(short.len() >= 7 && id.starts_with(&short));
            assert_eq!(&s.resolve_version_prefix(&short).unwrap(), id);
            assert_eq!(
                &s.resolve_version_prefix(&short.to_uppercase()).unwrap(),
                id
            );
            assert_eq!(&s.resolve_version_prefix(id).unwrap(), id);
        }
        // 300 ids over 16 first digits: every 1-digit prefix is shared.
        let first = &ids[0][..1];
        match s.resolve_version_prefix(first) {
            Err(StoreError::AmbiguousVersion { candidates, .. }) => {
                assert!(candidates.len() > 1 && candidates.len() <= MAX_CANDIDATES);
                assert!(candidates.iter().all(|c| c.starts_with(first)));
            }
            other => panic!("{other:?}"),
        }
        let missing = (0..16 * 16 * 16)
            .map(|n| format!("{n:03x}"))
            .find(|p| !ids.iter().any(|id| id.starts_with(p.as_str())))
            .unwrap();
        assert!(matches!(
            s.resolve_version_prefix(&missing),
            Err(StoreError::VersionNotFound { .. })
        ));
        assert!(matches!(
            s.resolve_version_prefix("xyz"),
            Err(StoreError::Invalid { .. })
        ));
        assert!(s.resolve_version_prefix("").is_err());
    });
}

#[test]
fn labels_and_log() {
    each(|s| {
        let a = s.commit(&unit("p", "1"), "", "").unwrap().id().to_string();
        let b = s.commit(&unit("p", "2"), "", "").unwrap().id().to_string();
        let q = s.commit(&unit("q", "1"), "", "").unwrap().id().to_string();
        let e1 = s.set_label("p", "prod", &a, "ann").unwrap();
        assert_eq!((e1.from, e1.to.as_str()), (None, a.as_str()));
        let e2 = s.set_label("p", "prod", &b, "bob").unwrap();
        assert_eq!(e2.from.as_deref(), Some(a.as_str()));
        s.set_label("q", "prod", &q, "cy").unwrap();
        s.set_label("p", "staging", &a, "cy").unwrap();
        let l = s.get_label("p", "prod").unwrap().unwrap();
        assert_eq!((l.version.as_str(), l.by.as_str()), (b.as_str(), "bob"));
        assert!(s.get_label("p", "nope").unwrap().is_none());
        let all = s.list_labels(None).unwrap();
        assert_eq!(
            all.iter()
                .map(|l| (l.prompt.as_str(), l.label.as_str()))
                .collect::<Vec<_>>(),
            [("p", "prod"), ("p", "staging"), ("q", "prod")]
        );
        assert_eq!(s.list_labels(Some("q")).unwrap().len(), 1);
        let log = s.label_log("prod", Some("p")).unwrap();
        assert_eq!(
            log.iter().map(|e| e.by.as_str()).collect::<Vec<_>>(),
            ["ann", "bob"]
        );
        assert_eq!(s.label_log("prod", None).unwrap().len(), 3);
        assert!(matches!(
            s.set_label("p", "prod", &q, "x"),
            Err(StoreError::Invalid { .. })
        ));
        assert!(s.set_label("p", "bad name", &a, "x").is_err());
        assert!(matches!(
            s.set_label("p", "prod", &"0".repeat(64), "x"),
            Err(StoreError::VersionNotFound { .. })
        ));
        assert_eq!(s.label_log("prod", Some("p")).unwrap().len(), 2);
    });
}

#[test]
fn runs_and_results() {
    each(|s| {
        let v = s.commit(&unit("p", "1"), "", "").unwrap().id().to_string();
        let v2 = s.commit(&unit("p", "2"), "", "").unwrap().id().to_string();
        let r1 = s.begin_run(meta(&v, "p")).unwrap();
        let r2 = s.begin_run(meta(&v2, "p")).unwrap();
        let r3 = s.begin_run(meta(&v, "p")).unwrap();
        assert!(r1 < r2 && r2 < r3);
        for (c, smp) in [(2, 0), (0, 1), (10, 0), (0, 0)] {
            s.record_result(r1, &result(c, smp, Some(c != 10), 0.001))
                .unwrap();
        }
        s.record_result(r1, &result(1, 0, None, 0.0)).unwrap();
        let got: Vec<(u32, u32)> = s
            .results(r1)
            .unwrap()
            .iter()
            .map(|r| (r.case, r.sample))
            .collect();
        assert_eq!(got, [(0, 0), (0, 1), (1, 0), (2, 0), (10, 0)]);
        assert_eq!(s.pass_rate(r1).unwrap(), Some(0.75));
        assert_eq!(s.pass_rate(r2).unwrap(), None);
        let run = s.get_run(r1).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.owner_pid, std::process::id());
        assert_eq!(run.parameters, meta(&v, "p").parameters);
        s.finish_run(r1, RunStatus::Complete).unwrap();
        let run = s.get_run(r1).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Complete);
        assert!(run.ended_at.is_some());
        assert!(matches!(
            s.record_result(r1, &result(5, 0, None, 0.0)),
            Err(StoreError::RunNotRunning { .. })
        ));
        assert!(s.finish_run(r2, RunStatus::Running).is_err());
        let ids = |runs: Vec<Run>| runs.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(s.list_runs(None).unwrap()), [r3, r2, r1]);
        assert_eq!(ids(s.list_runs(Some("p")).unwrap()), [r3, r2, r1]);
        assert!(s.list_runs(Some("q")).unwrap().is_empty());
        assert_eq!(ids(s.runs_for_version(&v).unwrap()), [r3, r1]);
        assert_eq!(ids(s.runs_for_version(&v2).unwrap()), [r2]);
        // Short run ids resolve back; the 48-bit time prefix is shared.
        for r in [r1, r2, r3] {
            let short = s.short_run_id(r);
            assert!(short.len() >= 8);
            assert_eq!(s.resolve_run_prefix(&short).unwrap(), r);
        }
        assert!(matches!(
            s.resolve_run_prefix(&r1.to_string()[..8]),
            Err(StoreError::AmbiguousRun { .. })
        ));
        assert!(matches!(
            s.resolve_run_prefix("ffffffff"),
            Err(StoreError::RunNotFound(_))
        ));
        let unknown = RunId(1);
        assert!(matches!(
            s.record_result(unknown, &result(0, 0, None, 0.0)),
            Err(StoreError::RunNotFound(_))
        ));
        assert!(s.results(unknown).is_err());
        assert!(s.get_run(unknown).unwrap().is_none());
        assert!(matches!(
            s.begin_run(meta(&"0".repeat(64), "p")),
            Err(StoreError::VersionNotFound { .. })
        ));
        assert!(s.begin_run(meta(&v, "q")).is_err());
    });
}

/// A store with a bit of everything, including awkward floats.
fn populate(s: &dyn Store) {
    let a = s
        .commit(&unit("p", "1"), "m1", "ann")
        .unwrap()
        .id()
        .to_string();
    let b = s
        .commit(&unit("p", "2"), "m2", "bob")
        .unwrap()
        .id()
        .to_string();
    let c = s
        .commit(&unit("x/q", "é\n\"q\""), "", "")
        .unwrap()
        .id()
        .to_string();
    s.set_label("p", "prod", &a, "ann").unwrap();
    s.set_label("p", "prod", &b, "bob").unwrap();
    s.set_label("x/q", "baseline", &c, "ann").unwrap();
    let r = s.begin_run(meta(&b, "p")).unwrap();
    for (i, cost) in [0.1 + 0.2, 1e-300, 123456.789e10, 0.0, 5e-324]
        .into_iter()
        .enumerate()
    {
        s.record_result(r, &result(i as u32, 0, Some(i % 2 == 0), cost))
            .unwrap();
    }
    s.finish_run(r, RunStatus::Failed).unwrap();
    let r2 = s.begin_run(meta(&c, "x/q")).unwrap();
    s.record_result(r2, &result(0, 3, None, 1.0)).unwrap();
}

#[test]
fn export_import_roundtrip_is_exact_and_idempotent() {
    for src_mem in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let src: Box<dyn Store> = if src_mem {
            Box::new(MemoryStore::new())
        } else {
            Box::new(SledStore::open(dir.path().join("a")).unwrap())
        };
        populate(src.as_ref());
        let first = export_bytes(src.as_ref());
        let text = String::from_utf8(first.clone()).unwrap();
        assert!(text.starts_with("{\"kind\":\"promptdeck-export\",\"format\":1}\n"));
        assert_eq!(text.lines().count(), 1 + 3 + 2 + 3 + 2 + 6);

        let dst = SledStore::open(dir.path().join("b")).unwrap();
        let sum = dst.import(&mut first.as_slice()).unwrap();
        assert_eq!(
            sum,
            ImportSummary {
                versions: 3,
                labels: 2,
                label_log: 3,
                runs: 2,
                results: 6
            }
        );
        assert_eq!(export_bytes(&dst), first);
        // Twice: nothing changes.
        assert_eq!(
            dst.import(&mut first.as_slice()).unwrap(),
            ImportSummary::default()
        );
        assert_eq!(export_bytes(&dst), first);
        let mem = MemoryStore::new();
        mem.import(&mut first.as_slice()).unwrap();
        assert_eq!(export_bytes(&mem), first);
        // Floats survive bit for bit.
        let run = dst.list_runs(Some("p")).unwrap().remove(0);
        let costs: Vec<u64> = dst
            .results(run.id)
            .unwrap()
            .iter()
            .map(|r| r.cost.to_bits())
            .collect();
        assert_eq!(
            costs,
            [0.1 + 0.2, 1e-300, 123456.789e10, 0.0, 5e-324f64].map(f64::to_bits)
        );
    }
}

#[test]
fn import_merges_into_existing_store() {
    each(|dst| {
        let src = MemoryStore::new();
        populate(&src);
        let data = export_bytes(&src);
        // The destination already has one of the versions, committed later.
        dst.commit(&unit("p", "1"), "local", "me").unwrap();
        let sum = dst.import(&mut data.as_slice()).unwrap();
        assert_eq!(sum.versions, 2);
        assert_eq!(dst.history("p").unwrap().len(), 2);
        assert_eq!(
            dst.get_label("p", "prod").unwrap().unwrap().version,
            src.get_label("p", "prod").unwrap().unwrap().version
        );
        assert_eq!(
            dst.import(&mut data.as_slice()).unwrap(),
            ImportSummary::default()
        );
    });
}

#[test]
fn rejected_import_changes_nothing() {
    let src = MemoryStore::new();
    populate(&src);
    let good = String::from_utf8(export_bytes(&src)).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let bad_cases: Vec<(String, usize)> = vec![
        // Garbage after valid versions.
        (format!("{}\n{}\n{{oops\n", lines[0], lines[1]), 3),
        // A tampered version (content changed, id kept).
        (
            format!(
                "{}\n{}\n",
                lines[0],
                lines[1].replacen("be brief", "be BRIEF", 1)
            ),
            2,
        ),
        // Missing header.
        (lines[1..].join("\n"), 1),
        // Label pointing at a version not in the file nor the store.
        (format!("{}\n{}\n", lines[0], lines[6]), 2),
        // Result of a run that is not in the file.
        (format!("{}\n{}\n", lines[0], lines[lines.len() - 1]), 2),
        // Newer export format.
        (lines[0].replace("\"format\":1", "\"format\":9") + "\n", 1),
    ];
    each(|dst| {
        let before = export_bytes(dst);
        for (text, want_line) in &bad_cases {
            match dst.import(&mut text.as_bytes()) {
                Err(StoreError::Import { line, message }) => {
                    assert_eq!(line, *want_line, "{message}")
                }
                other => panic!("accepted bad import: {other:?}"),
            }
            assert_eq!(export_bytes(dst), before);
        }
        let not_utf8 = [lines[0].as_bytes(), b"\n\xff\xfe\n"].concat();
        assert!(matches!(
            dst.import(&mut not_utf8.as_slice()),
            Err(StoreError::Import { line: 2, .. })
        ));
    });
}

/// Scale check: 10,000 versions over 100 prompts and 100,000 results.
/// Run with `cargo test --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_history_and_get_version_at_scale() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let body = "You are a careful assistant. ".repeat(20);
    // Fill through import: one batch instead of 110,000 flushed writes.
    let src = MemoryStore::new();
    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 0..10_000 {
        let u = unit(&format!("prompt{:03}", i % 100), &format!("{body} #{i}"));
        ids.push(src.commit(&u, "bench", "bench").unwrap().id().to_string());
    }
    for r in 0..100 {
        let v = &ids[r * 100];
        let run = src
            .begin_run(meta(v, &format!("prompt{:03}", (r * 100) % 100)))
            .unwrap();
        let results: Vec<CaseResult> = (0..1000)
            .map(|c| {
                let mut res = result(c, 0, Some(c % 3 != 0), 0.0004);
                res.output = format!("{} {c}", "model output text ".repeat(10));
                res
            })
            .collect();
        src.record_results(run, &results).unwrap();
        src.finish_run(run, RunStatus::Complete).unwrap();
    }
    let data = export_bytes(&src);
    println!(
        "generate: {:?}, export size {} bytes",
        t.elapsed(),
        data.len()
    );
    let t = Instant::now();
    let sum = store.import(&mut data.as_slice()).unwrap();
    println!("import: {:?} {sum:?}", t.elapsed());
    assert_eq!((sum.versions, sum.results), (10_000, 100_000));

    // Reopen so lookups start from a cold cache, as in a fresh CLI process.
    drop(store);
    let t = Instant::now();
    let store = SledStore::open(dir.path()).unwrap();
    println!("reopen: {:?}", t.elapsed());
    let mut th = std::time::Duration::ZERO;
    for p in ["prompt042", "prompt043", "prompt042", "prompt099"] {
        let t = Instant::now();
        let h = store.history(p).unwrap();
        let e = t.elapsed();
        println!("history({p}, {} versions): {e:?}", h.len());
        assert_eq!(h.len(), 100);
        th = th.max(e);
    }
    let t = Instant::now();
    for id in ids.iter().step_by(100) {
        assert!(store.get_version(id).unwrap().is_some());
    }
    let tg = t.elapsed() / 100;
    let t = Instant::now();
    let latest = store.latest_version("prompt042").unwrap();
    let tl = t.elapsed();
    assert!(latest.is_some());
    let t = Instant::now();
    let res = store.results(store.list_runs(None).unwrap()[0].id).unwrap();
    let tr = t.elapsed();
    assert_eq!(res.len(), 1000);
    let t = Instant::now();
    let short = store.short_id(&ids[5]);
    let resolved = store.resolve_version_prefix(&short).unwrap();
    let ts = t.elapsed();
    assert_eq!(resolved, ids[5]);
    let t = Instant::now();
    let v = store
        .commit(&unit("prompt042", "one more"), "", "")
        .unwrap();
    let tc = t.elapsed();
    let run = store.begin_run(meta(v.id(), "prompt042")).unwrap();
    let t = Instant::now();
    store.record_result(run, &result(0, 0, None, 0.0)).unwrap();
    let trr = t.elapsed();
    println!(
        "history worst: {th:?}; get_version: {tg:?} avg; latest_version: {tl:?}; \
         results(1000): {tr:?}; short_id+resolve: {ts:?}; commit: {tc:?}; record_result: {trr:?}"
    );
    let raw: usize = data.len();
    drop(store);
    let on_disk: u64 = walk(dir.path());
    println!(
        "on disk: {on_disk} bytes; raw export payload: {raw} bytes; ratio {:.2}",
        on_disk as f64 / raw as f64
    );
    assert!(th.as_millis() < 50 && tg.as_millis() < 50);
}

fn walk(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += walk(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
