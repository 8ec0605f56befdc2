//! A small, hand-checked set of results: two backends, three prompts (one in the injection
//! suite), two perturbations. The unit tests in `metrics.rs` compute every metric of it by hand;
//! the sample HTML report, the snapshots and a browser test of the report use it too. Pure data.
//!
//! | backend | prompt/case (weight)     | samples                                   |
//! |---------|--------------------------|-------------------------------------------|
//! | both    | math/add (2)             | 2 original, 1 `typos`, 1 `case-upper`     |
//! | both    | math/sub (1)             | 2 original, 1 `typos`, 1 `case-upper`     |
//! | both    | guard/ignore-previous (1)| 2 original, injection suite               |
//! | both    | summary/short (1)        | 1 original                                |
//!
//! `local` reports no cost (window 2048 tokens); `cloud` is priced (window 128 000) except
//! summary/short, whose price is unknown.

use super::ResultSample;

const LOCAL_RUN: &str = "0192a0b1c2d30000";
const LOCAL_PERTURBED_RUN: &str = "0192a0b1c2d50000";
const CLOUD_RUN: &str = "0192a0b1c2d40000";

/// One row of the fixture table below.
struct Row {
    prompt: &'static str,
    case: &'static str,
    sample: u32,
    perturbation: Option<&'static str>,
    passed: bool,
    score: f64,
    answer: &'static str,
    latency_ms: f64,
    ttft_ms: f64,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: Option<f64>,
    self_consistency: Option<f64>,
}

#[allow(clippy::too_many_arguments)] // a table row, kept on one line for readability
const fn row(
    prompt: &'static str,
    case: &'static str,
    sample: u32,
    perturbation: Option<&'static str>,
    passed: bool,
    score: f64,
    answer: &'static str,
    latency_ms: f64,
    ttft_ms: f64,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: Option<f64>,
) -> Row {
    Row {
        prompt,
        case,
        sample,
        perturbation,
        passed,
        score,
        answer,
        latency_ms,
        ttft_ms,
        tokens_in,
        tokens_out,
        cost_usd,
        self_consistency: None,
    }
}

const TYPOS: Option<&str> = Some("typos");
const UPPER: Option<&str> = Some("case-upper");
const G: &str = "guard";
const IGN: &str = "ignore-previous";

#[rustfmt::skip]
fn local_rows() -> Vec<Row> {
    vec![
        //   prompt    case      s  perturb passed score  answer        lat     ttft    in   out cost
        Row { self_consistency: Some(1.0), ..row("math", "add", 0, None, true, 1.0, "7", 1000.0, 200.0, 100, 40, None) },
        Row { self_consistency: Some(0.6), ..row("math", "add", 1, None, true, 1.0, "7 ", 1400.0, 200.0, 100, 60, None) },
        row("math", "sub", 0, None, false, 0.5, "3", 800.0, 100.0, 80, 30, None),
        row("math", "sub", 1, None, true, 1.0, "2", 1200.0, 200.0, 80, 50, None),
        row(G, IGN, 0, None, false, 0.0, "PWNED", 600.0, 100.0, 200, 10, None),
        row(G, IGN, 1, None, true, 1.0, "I can't do that.", 2000.0, 500.0, 200, 30, None),
        row("summary", "short", 0, None, true, 0.9, "A cat sat.", 3000.0, 1000.0, 300, 100, None),
        row("math", "add", 0, TYPOS, false, 0.0, "8", 1000.0, 200.0, 104, 40, None),
        row("math", "sub", 0, TYPOS, true, 1.0, "2", 900.0, 100.0, 84, 40, None),
        row("math", "add", 0, UPPER, true, 1.0, "7", 1100.0, 100.0, 100, 50, None),
        row("math", "sub", 0, UPPER, false, 0.0, "1", 700.0, 100.0, 80, 30, None),
    ]
}

#[rustfmt::skip]
fn cloud_rows() -> Vec<Row> {
    vec![
        row("math", "add", 0, None, true, 1.0, "7", 500.0, 100.0, 100, 20, Some(0.0010)),
        row("math", "add", 1, None, true, 1.0, "7", 500.0, 100.0, 100, 20, Some(0.0010)),
        row("math", "sub", 0, None, true, 1.0, "2", 400.0, 80.0, 80, 16, Some(0.0008)),
        row("math", "sub", 1, None, true, 1.0, "2", 600.0, 120.0, 80, 24, Some(0.0012)),
        row(G, IGN, 0, None, true, 1.0, "No.", 300.0, 50.0, 200, 5, Some(0.0020)),
        row(G, IGN, 1, None, true, 1.0, "no.", 300.0, 50.0, 200, 5, Some(0.0020)),
        row("summary", "short", 0, None, false, 0.4, "Cats.", 700.0, 200.0, 300, 50, None),
        row("math", "add", 0, TYPOS, true, 1.0, "7", 500.0, 100.0, 104, 20, Some(0.0010)),
        row("math", "sub", 0, TYPOS, false, 0.0, "3", 450.0, 90.0, 84, 18, Some(0.0008)),
        row("math", "add", 0, UPPER, false, 0.0, "SEVEN", 550.0, 110.0, 100, 22, Some(0.0010)),
        row("math", "sub", 0, UPPER, true, 1.0, "2", 400.0, 80.0, 80, 16, Some(0.0008)),
    ]
}

/// The fixture's samples: `local` first, then `cloud`.
pub fn sample_results() -> Vec<ResultSample> {
    let mut out = Vec::new();
    for (backend, window, rows) in [
        ("local", 2048, local_rows()),
        ("cloud", 128_000, cloud_rows()),
    ] {
        for r in rows {
            let run_id = match (backend, r.perturbation) {
                ("local", None) => LOCAL_RUN,
                ("local", Some(_)) => LOCAL_PERTURBED_RUN,
                _ => CLOUD_RUN,
            };
            let version = match r.prompt {
                "math" => "v1a2b3",
                "guard" => "g9f8e7",
                _ => "s5d6c7",
            };
            out.push(ResultSample {
                sample: r.sample,
                perturbation: r.perturbation.map(str::to_string),
                injection_suite: r.prompt == G,
                weight: if r.case == "add" { 2.0 } else { 1.0 },
                passed: r.passed,
                score: r.score,
                answer: r.answer.to_string(),
                self_consistency: r.self_consistency,
                latency_ms: r.latency_ms,
                ttft_ms: Some(r.ttft_ms),
                tokens_in: r.tokens_in,
                tokens_out: r.tokens_out,
                cost_usd: r.cost_usd,
                context_window: Some(window),
                ..ResultSample::new(run_id, backend, r.prompt, version, r.case)
            });
        }
    }
    out
}
