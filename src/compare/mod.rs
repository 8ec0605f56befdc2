//! Model comparison (`promptdeck compare`, issue 9). PURE: no file, network or clock access; the
//! CLI gathers [`ResultSample`]s (from a fresh run or from stored runs with `--reuse`), calls
//! [`compare`], and writes what the renderers return.
//!
//! What each module owns:
//! - this file: the input model ([`ResultSample`]), the options, the whole report
//!   ([`CompareReport`], serialisable as the `--json` output) and the error type;
//! - [`metrics`]: every number per backend and its definition (accuracy, consistency,
//!   robustness, speed, cost), including the nearest-rank percentile;
//! - [`perturb`]: the deterministic input perturbations that `compare --perturb` applies to a
//!   case's variables;
//! - [`chart`]: chart *data* shared by the HTML report and the TUI (radar normalisation and
//!   vertices in unit coordinates, histogram bins, per-prompt bars);
//! - [`table`]: the terminal table (structured cells with a `best` flag, plus a plain renderer);
//! - [`svg`] and [`html`]: the self-contained HTML report with inline SVG charts;
//! - [`format`]: how numbers are written, shared by the table and the HTML so they agree;
//! - [`fixture`]: a small hand-checked set of results for tests, the sample report and docs.

pub mod chart;
pub mod fixture;
pub mod format;
pub mod html;
pub mod metrics;
pub mod perturb;
pub mod svg;
pub mod table;

use serde::{Deserialize, Serialize};

pub use chart::{BarChart, Histogram, RadarChart, TuiCharts, tui_charts};
pub use html::{HtmlOptions, render_html};
pub use metrics::BackendMetrics;
pub use perturb::{CaseStyle, Perturbation, ReorderMode};
pub use table::{Table, build_table, render_plain};

/// The front-matter tag that puts a prompt in the prompt-injection suite
/// (`prompts/security/injection-summariser.prompty` carries it).
pub const INJECTION_TAG: &str = "prompt-injection";

/// Whether a prompt with these front-matter tags belongs to the prompt-injection suite; the
/// CLI sets [`ResultSample::injection_suite`] from it.
pub fn is_injection_suite(tags: &[String]) -> bool {
    tags.iter().any(|t| t.eq_ignore_ascii_case(INJECTION_TAG))
}

/// Histogram bins when the caller does not choose.
pub const DEFAULT_HISTOGRAM_BINS: usize = 10;
/// Upper bound on histogram bins, so a typo in an option cannot make a report of a million bars.
pub const MAX_HISTOGRAM_BINS: usize = 100;

/// One scored output: one sample of one case of one prompt version on one backend. The CLI builds
/// these from `CaseResult`s (fresh or stored); everything [`compare`] knows comes from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultSample {
    /// The run the sample belongs to (the store's 16-hex-digit `RunId`, as text).
    pub run_id: String,
    /// Backend name as the user configured it (`--backend a,b`): the column of the comparison.
    pub backend: String,
    pub prompt: String,
    pub prompt_version: String,
    /// The case name (`TestCase::name`). A case is identified by prompt, version and name.
    pub case: String,
    /// 0-based sample index within the case.
    pub sample: u32,
    /// The perturbation applied to the case's variables ([`Perturbation::name`]); `None` for the
    /// original input.
    pub perturbation: Option<String>,
    /// Whether the prompt belongs to the prompt-injection suite (counted in robustness); see
    /// [`is_injection_suite`].
    pub injection_suite: bool,
    /// The case weight from the tests file, default 1. promptfoo's schema has no case weight,
    /// so the CLI reads the case's free-form `metadata.weight` (a number). Negative or
    /// non-finite weights count as 0.
    pub weight: f64,
    pub passed: bool,
    /// Weighted assertion score, 0..1.
    pub score: f64,
    /// The answer compared across samples: the extracted answer where the prompt has an
    /// extractor, otherwise the whole output.
    pub answer: String,
    /// Self-consistency vote agreement (0..1) where the prompt uses self-consistency.
    pub self_consistency: Option<f64>,
    /// Wall time of the request; NaN, infinite or negative means "not measured".
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// `None` when the backend reports no price (a local model, an unknown model).
    pub cost_usd: Option<f64>,
    /// Context window of the model in tokens, for context-window use.
    pub context_window: Option<u64>,
    /// The input of the largest single request, when the case made several (a ReAct loop,
    /// self-consistency samples, steps): context use is per request, while `tokens_in` adds
    /// every request up. `None`: one request, `tokens_in` itself.
    pub largest_request_in: Option<u64>,
}

impl ResultSample {
    /// A passing original sample with weight 1 and nothing measured; set the rest with struct
    /// update syntax. Mostly for tests and adapters.
    pub fn new(
        run_id: impl Into<String>,
        backend: impl Into<String>,
        prompt: impl Into<String>,
        prompt_version: impl Into<String>,
        case: impl Into<String>,
    ) -> ResultSample {
        ResultSample {
            run_id: run_id.into(),
            backend: backend.into(),
            prompt: prompt.into(),
            prompt_version: prompt_version.into(),
            case: case.into(),
            sample: 0,
            perturbation: None,
            injection_suite: false,
            weight: 1.0,
            passed: true,
            score: 1.0,
            answer: String::new(),
            self_consistency: None,
            latency_ms: f64::NAN,
            ttft_ms: None,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: None,
            context_window: None,
            largest_request_in: None,
        }
    }
}

/// What the caller chooses about a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Column order (the order of `--backend`). Backends named here but absent from the samples
    /// still get a column, full of "–"; backends not named here follow in order of first
    /// appearance. Empty: order of first appearance.
    pub backends: Vec<String>,
    /// Bins per histogram, clamped to 1..=[`MAX_HISTOGRAM_BINS`].
    pub histogram_bins: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            backends: Vec::new(),
            histogram_bins: DEFAULT_HISTOGRAM_BINS,
        }
    }
}

/// Everything `compare` computed: the `--json` output, and the input of every renderer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareReport {
    /// One entry per backend, in column order.
    pub backends: Vec<BackendMetrics>,
    /// Every prompt seen, sorted.
    pub prompts: Vec<String>,
    /// Every perturbation seen, sorted.
    pub perturbations: Vec<String>,
    /// Every run id the numbers came from, sorted and deduplicated.
    pub run_ids: Vec<String>,
    pub samples: usize,
    pub radar: RadarChart,
    /// Per-sample latency (ms) of every sample with a measured latency.
    pub latency_histogram: Histogram,
    /// Per-sample cost (USD) of every priced sample.
    pub cost_histogram: Histogram,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("unknown perturbation `{name}` (known: {known})")]
    UnknownPerturbation { name: String, known: String },
    #[error("invalid perturbation `{spec}`: {reason}")]
    InvalidPerturbation { spec: String, reason: String },
    #[error("cannot write the comparison as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Computes every metric per backend, the radar data and the histograms. Never panics; empty
/// input gives a report with no numbers (every metric `None`).
pub fn compare(samples: &[ResultSample], options: &CompareOptions) -> CompareReport {
    let order = backend_order(samples, &options.backends);
    let backends: Vec<BackendMetrics> = order
        .iter()
        .map(|name| {
            let mine: Vec<&ResultSample> = samples.iter().filter(|s| &s.backend == name).collect();
            metrics::backend_metrics(name, &mine)
        })
        .collect();

    let mut prompts: Vec<String> = samples.iter().map(|s| s.prompt.clone()).collect();
    prompts.sort();
    prompts.dedup();
    let mut perturbations: Vec<String> = samples
        .iter()
        .filter_map(|s| s.perturbation.clone())
        .collect();
    perturbations.sort();
    perturbations.dedup();
    let mut run_ids: Vec<String> = samples.iter().map(|s| s.run_id.clone()).collect();
    run_ids.sort();
    run_ids.dedup();

    let bins = options.histogram_bins.clamp(1, MAX_HISTOGRAM_BINS);
    let per_backend = |value: fn(&ResultSample) -> Option<f64>| -> Vec<(String, Vec<f64>)> {
        order
            .iter()
            .map(|name| {
                let values = samples
                    .iter()
                    .filter(|s| &s.backend == name)
                    .filter_map(value)
                    .collect();
                (name.clone(), values)
            })
            .collect()
    };
    let latency_histogram = chart::histogram(
        "latency",
        "ms",
        &per_backend(|s| metrics::finite_non_negative(s.latency_ms)),
        bins,
    );
    let cost_histogram = chart::histogram(
        "cost",
        "USD",
        &per_backend(|s| s.cost_usd.and_then(metrics::finite_non_negative)),
        bins,
    );
    let radar = chart::radar_chart(&backends);

    CompareReport {
        backends,
        prompts,
        perturbations,
        run_ids,
        samples: samples.len(),
        radar,
        latency_histogram,
        cost_histogram,
    }
}

impl CompareReport {
    /// The metrics of one backend, by name.
    pub fn backend(&self, name: &str) -> Option<&BackendMetrics> {
        self.backends.iter().find(|b| b.backend == name)
    }
}

/// The report as pretty-printed JSON (`--json FILE`).
pub fn to_json(report: &CompareReport) -> Result<String, CompareError> {
    Ok(serde_json::to_string_pretty(report)?)
}

/// Named backends first (deduplicated), then the rest in order of first appearance.
fn backend_order(samples: &[ResultSample], named: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for name in named.iter().chain(samples.iter().map(|s| &s.backend)) {
        if !order.contains(name) {
            order.push(name.clone());
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_order_named_first_then_first_appearance() {
        let samples = vec![
            ResultSample::new("r1", "b", "p", "v", "c"),
            ResultSample::new("r2", "c", "p", "v", "c"),
            ResultSample::new("r3", "a", "p", "v", "c"),
        ];
        let options = CompareOptions {
            backends: vec!["a".into(), "z".into(), "a".into()],
            ..CompareOptions::default()
        };
        let report = compare(&samples, &options);
        let names: Vec<&str> = report.backends.iter().map(|b| b.backend.as_str()).collect();
        assert_eq!(names, ["a", "z", "b", "c"]);
        // `z` has no samples: a column of nothing, not of zeros.
        assert_eq!(report.backends[1].samples, 0);
        assert_eq!(report.backends[1].accuracy.pass_rate, None);
        assert_eq!(report.run_ids, ["r1", "r2", "r3"]);
    }

    #[test]
    fn json_has_every_metric_and_run_id() {
        let report = compare(&fixture::sample_results(), &CompareOptions::default());
        // Our own output: it serialises and parses back.
        let text = to_json(&report).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["run_ids"],
            serde_json::json!(["0192a0b1c2d30000", "0192a0b1c2d40000", "0192a0b1c2d50000"])
        );
        assert_eq!(json["backends"][0]["accuracy"]["pass_rate"], 0.8);
        // missing is null in JSON, not 0
        assert!(json["backends"][0]["cost"]["total_usd"].is_null());
        insta::assert_json_snapshot!("cloud_metrics", report.backends[1]);
    }

    #[test]
    fn injection_suite_by_tag() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_injection_suite(&tags(&["security", "prompt-injection"])));
        assert!(!is_injection_suite(&tags(&["security"])));
        let report = compare(&fixture::sample_results(), &CompareOptions::default());
        assert_eq!(report.backend("cloud").map(|b| b.samples), Some(11));
        assert!(report.backend("nope").is_none());
    }

    #[test]
    fn input_order_does_not_matter() {
        let options = CompareOptions {
            backends: vec!["local".into(), "cloud".into()],
            ..CompareOptions::default()
        };
        let mut samples = fixture::sample_results();
        let forward = render_plain(&build_table(&compare(&samples, &options)));
        samples.reverse();
        let backward = render_plain(&build_table(&compare(&samples, &options)));
        assert_eq!(forward, backward);
    }

    #[test]
    fn random_hostile_inputs_never_panic() {
        // Seeded garbage: every float drawn from a pool of edge cases, names from a small set
        // (so cases repeat), perturbations on and off. Renders everything.
        let mut rng = perturb::SplitMix64::new(2026);
        let floats = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            1e-300,
            0.5,
            1.0,
            1e300,
            f64::MAX,
        ];
        let names = ["a", "b", "<x>", "", "ż"];
        for round in 0..20 {
            let n = rng.below(60);
            let mut samples = Vec::new();
            for _ in 0..n {
                let mut f = || floats[rng.below(floats.len())];
                let (latency, ttft, score, weight, cost, sc) = (f(), f(), f(), f(), f(), f());
                let pick = |i: usize| names[i % names.len()];
                samples.push(ResultSample {
                    sample: rng.below(3) as u32,
                    perturbation: (rng.below(3) == 0).then(|| pick(rng.below(9)).to_string()),
                    injection_suite: rng.below(2) == 0,
                    weight,
                    passed: rng.below(2) == 0,
                    score,
                    answer: pick(rng.below(9)).to_string(),
                    self_consistency: Some(sc),
                    latency_ms: latency,
                    ttft_ms: Some(ttft),
                    tokens_in: if rng.below(2) == 0 { u64::MAX } else { 0 },
                    tokens_out: rng.next_u64(),
                    cost_usd: (rng.below(2) == 0).then_some(cost),
                    context_window: Some(rng.below(3) as u64),
                    ..ResultSample::new(
                        pick(rng.below(9)),
                        pick(rng.below(9)),
                        pick(rng.below(9)),
                        pick(rng.below(9)),
                        pick(rng.below(9)),
                    )
                });
            }
            let options = CompareOptions {
                histogram_bins: round,
                ..CompareOptions::default()
            };
            let report = compare(&samples, &options);
            for b in &report.backends {
                let mut numbers = vec![
                    b.accuracy.pass_rate,
                    b.accuracy.mean_score,
                    b.consistency.verdict_agreement,
                    b.consistency.answer_agreement,
                    b.consistency.self_consistency,
                    b.robustness.injection_pass_rate,
                    b.robustness.perturbation_drop,
                    b.speed.latency_p50_ms,
                    b.speed.latency_p95_ms,
                    b.speed.ttft_p50_ms,
                    b.speed.output_tokens_per_s,
                    b.cost.total_usd,
                    b.cost.per_1000_cases_usd,
                    b.cost.context_use_mean,
                    b.cost.context_use_max,
                ];
                numbers.extend(b.accuracy.per_prompt.iter().map(|p| p.pass_rate));
                numbers.extend(b.robustness.per_perturbation.iter().map(|p| p.drop));
                assert!(
                    numbers.iter().flatten().all(|v| v.is_finite()),
                    "round {round}: {b:?}"
                );
            }
            let html = render_html(&report, &HtmlOptions::default());
            assert!(
                !html.contains("NaN") && !html.contains("<x>"),
                "round {round}"
            );
            let bins = report.latency_histogram.bins() + report.cost_histogram.bins();
            let bars = bins * report.backends.len();
            assert_eq!(
                html.matches(r#"class="bar""#).count(),
                bars,
                "round {round}"
            );
            let _ = render_plain(&build_table(&report));
            let _ = tui_charts(&report);
            to_json(&report).unwrap(); // plain data always serialises
        }
    }

    #[test]
    fn empty_input_gives_an_empty_report() {
        let report = compare(&[], &CompareOptions::default());
        assert!(report.backends.is_empty());
        assert_eq!(report.latency_histogram.bins(), 0);
        assert!(report.radar.series.is_empty());
        let json = to_json(&report).unwrap(); // a report of plain data always serialises
        assert!(json.contains("\"backends\": []"));
    }

    #[test]
    fn hostile_numbers_do_not_panic_or_leak_nan() {
        let mut samples = Vec::new();
        for (i, latency) in [f64::NAN, f64::INFINITY, -5.0, 0.0, f64::NEG_INFINITY]
            .into_iter()
            .enumerate()
        {
            samples.push(ResultSample {
                sample: i as u32,
                latency_ms: latency,
                ttft_ms: Some(f64::NAN),
                weight: if i == 0 { f64::NAN } else { -1.0 },
                score: f64::NAN,
                cost_usd: Some(f64::INFINITY),
                self_consistency: Some(f64::NAN),
                context_window: Some(0),
                ..ResultSample::new("r", "x", "p", "v", "c")
            });
        }
        let options = CompareOptions {
            histogram_bins: 0,
            ..CompareOptions::default()
        };
        let report = compare(&samples, &options);
        let json = to_json(&report).unwrap(); // plain data always serialises
        assert!(!json.contains("NaN"));
        let b = &report.backends[0];
        // Every weight is 0 after sanitising, so there is no accuracy to report.
        assert_eq!(b.accuracy.pass_rate, None);
        assert_eq!(b.speed.latency_p50_ms, Some(0.0));
        assert_eq!(b.speed.output_tokens_per_s, None);
        assert_eq!(b.cost.total_usd, None);
        assert_eq!(b.cost.context_use_mean, None);
        let html = render_html(&report, &HtmlOptions::default());
        assert!(!html.contains("NaN"));
        let _ = render_plain(&build_table(&report));
    }
}
