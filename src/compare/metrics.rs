//! Every number of a comparison, per backend, and what each one means. PURE.
//!
//! Shared ground rules:
//! - A *case* is (prompt, prompt version, case name). Its *original* samples have no
//!   perturbation; perturbed samples are grouped under their original case.
//! - A case's weight is the mean weight of its original samples (the tests file gives every
//!   sample of a case the same weight, so this is that weight); negative or non-finite weights
//!   count as 0, and a case without original samples has no weight and is left out of accuracy,
//!   consistency and perturbation drops.
//! - A case's *pass fraction* is passed samples / samples, so a case sampled 5 times counts as
//!   much as one sampled once: weights say how much a case matters, not how often it was drawn.
//! - Accuracy, consistency and injection pass rate use original samples only; speed, tokens,
//!   cost and context use count every sample, perturbed ones too (they are real requests).
//! - Missing data is `None` (shown as "–"), never a silent 0: no samples, no weight, no cost
//!   reported, no latency measured. NaN, infinite or negative measurements count as missing.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ResultSample;

/// All metrics of one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendMetrics {
    pub backend: String,
    /// The runs these numbers came from, sorted and deduplicated.
    pub run_ids: Vec<String>,
    /// Every sample, perturbed ones included.
    pub samples: usize,
    /// Distinct cases with at least one original sample.
    pub cases: usize,
    pub accuracy: Accuracy,
    pub consistency: Consistency,
    pub robustness: Robustness,
    pub speed: Speed,
    pub cost: Cost,
}

/// Accuracy: weighted pass rate = Σ_case w·pass_fraction / Σ_case w over original cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    /// Over every case of every prompt (the injection suite included: it is a suite too).
    pub pass_rate: Option<f64>,
    /// The same weighting applied to each case's mean score (scores clamped to 0..1, non-finite
    /// scores left out).
    pub mean_score: Option<f64>,
    /// Sorted by prompt name.
    pub per_prompt: Vec<PromptAccuracy>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptAccuracy {
    pub prompt: String,
    /// Prompt versions the cases came from (more than one with `--reuse` across versions).
    pub versions: Vec<String>,
    pub cases: usize,
    pub pass_rate: Option<f64>,
    pub mean_score: Option<f64>,
}

/// Consistency: agreement across samples of the same original case. Only cases with at least 2
/// original samples are measured; each measured case counts once (unweighted), and the metric
/// is the mean over measured cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consistency {
    /// Per case: samples that share the modal verdict (pass or fail) / samples. 0.5..1. This is
    /// the radar's consistency axis: it means the same for a one-word answer and an essay.
    pub verdict_agreement: Option<f64>,
    /// Per case: samples whose normalised answer equals the modal one / samples. Normalised:
    /// trimmed, lowercased, whitespace runs collapsed to one space.
    pub answer_agreement: Option<f64>,
    /// Cases with ≥ 2 original samples.
    pub cases_measured: usize,
    /// Mean self-consistency vote agreement over original samples that report one.
    pub self_consistency: Option<f64>,
}

/// Robustness: the prompt-injection suite and the effect of input perturbations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Robustness {
    /// Weighted pass rate over original cases of injection-suite prompts.
    pub injection_pass_rate: Option<f64>,
    pub injection_cases: usize,
    /// Pooled drop over every perturbation: Σ_p Σ_{c∈C_p} w_c·(orig_c − pert_{c,p}) /
    /// Σ_p Σ_{c∈C_p} w_c, i.e. the per-perturbation drops averaged with weight Σ_{c∈C_p} w_c.
    /// Positive = worse under perturbation; negative = better.
    pub perturbation_drop: Option<f64>,
    /// Sorted by perturbation name.
    pub per_perturbation: Vec<PerturbationDrop>,
}

/// The drop for one perturbation p, over the cases C_p that have both original and p-perturbed
/// samples (paired, so a perturbation run on a subset is compared with the same subset).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerturbationDrop {
    pub perturbation: String,
    pub cases: usize,
    /// Weighted pass rate of the original samples over C_p.
    pub original_pass_rate: Option<f64>,
    /// Weighted pass rate of the p-perturbed samples over C_p (original case weights).
    pub perturbed_pass_rate: Option<f64>,
    /// original − perturbed, in pass-rate units (0.1 = 10 percentage points).
    pub drop: Option<f64>,
}

/// Speed, over every sample with a measured latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Speed {
    /// Nearest-rank percentiles; see [`percentile_nearest_rank`].
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    /// Σ tokens_out / Σ generation seconds, where a sample's generation time is latency − TTFT
    /// when its TTFT is measured and below its latency (the streaming phase, so a slow queue
    /// or prompt processing does not count as slow generation), otherwise its whole latency.
    /// Samples without a positive finite latency are left out of both sums.
    pub output_tokens_per_s: Option<f64>,
    /// Samples with a measured latency.
    pub measured_samples: usize,
}

/// Cost and tokens, over every sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// Sum over priced samples; `None` when no sample is priced. When `priced_samples <
    /// samples` the total is partial and renderers say so.
    pub total_usd: Option<f64>,
    /// Mean cost of one priced case execution (one sample) × 1000.
    pub per_1000_cases_usd: Option<f64>,
    pub priced_samples: usize,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// tokens_in / context_window, over samples whose window is known and non-zero.
    pub context_use_mean: Option<f64>,
    pub context_use_max: Option<f64>,
}

/// The p-th percentile (0..=100) by the nearest-rank method: sort the finite values, take the
/// value at 1-based rank ⌈p/100 · n⌉ (at least 1). Always a value that occurred, never an
/// interpolation. Non-finite values are ignored; `None` for no values or a non-finite `p`.
pub fn percentile_nearest_rank(values: &[f64], p: f64) -> Option<f64> {
    if !p.is_finite() {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // p·n first keeps integer products exact (95·20/100 = 19, where 0.95·20 = 19.000000000000004
    // would round up a rank); the epsilon guards the division the same way.
    let exact = p.clamp(0.0, 100.0) * n as f64 / 100.0;
    let rank = ((exact - 1e-9).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// `Some(v)` when `v` is a usable measurement (finite and not negative).
pub fn finite_non_negative(v: f64) -> Option<f64> {
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// Σ w·v / Σ w, or `None` when the weights sum to 0 (nothing to average). Weights are scaled
/// by the largest first, so weights near f64::MAX cannot overflow the sums into inf/inf = NaN.
fn weighted_mean(items: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    let items: Vec<(f64, f64)> = items.into_iter().collect();
    let largest = items.iter().map(|&(w, _)| w).fold(0.0, f64::max);
    if largest <= 0.0 || !largest.is_finite() {
        return None;
    }
    let (mut num, mut den) = (0.0, 0.0);
    for (w, v) in items {
        num += w / largest * v;
        den += w / largest;
    }
    (den > 0.0).then(|| num / den).filter(|m| m.is_finite())
}

/// The arithmetic mean as Σ v/n, which stays finite for finite values (Σ v could overflow).
fn mean(items: impl IntoIterator<Item = f64>) -> Option<f64> {
    let items: Vec<f64> = items.into_iter().collect();
    let n = items.len() as f64;
    (!items.is_empty())
        .then(|| items.iter().map(|v| v / n).sum::<f64>())
        .filter(|m| m.is_finite())
}

fn sanitize_weight(w: f64) -> f64 {
    finite_non_negative(w).unwrap_or(0.0)
}

/// Trimmed, lowercased, whitespace runs collapsed: "  The  Answer\n" and "the answer" agree.
pub fn normalise_answer(answer: &str) -> String {
    answer
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CaseKey<'a> {
    prompt: &'a str,
    version: &'a str,
    case: &'a str,
}

#[derive(Debug, Default)]
struct CaseGroup<'a> {
    originals: Vec<&'a ResultSample>,
    perturbed: BTreeMap<&'a str, Vec<&'a ResultSample>>,
    injection: bool,
}

impl CaseGroup<'_> {
    /// Mean sanitised weight of the original samples; `None` without originals.
    fn weight(&self) -> Option<f64> {
        mean(self.originals.iter().map(|s| sanitize_weight(s.weight)))
    }
}

/// passed / samples; `None` for no samples.
fn pass_fraction(samples: &[&ResultSample]) -> Option<f64> {
    mean(samples.iter().map(|s| if s.passed { 1.0 } else { 0.0 }))
}

fn mean_score(samples: &[&ResultSample]) -> Option<f64> {
    mean(
        samples
            .iter()
            .filter(|s| s.score.is_finite())
            .map(|s| s.score.clamp(0.0, 1.0)),
    )
}

/// Weighted pass rate and mean score of a set of cases (original samples).
fn case_rates<'a, 'b: 'a>(
    cases: impl Iterator<Item = &'a CaseGroup<'b>> + Clone,
) -> (Option<f64>, Option<f64>) {
    let pass = weighted_mean(cases.clone().filter_map(|c| {
        let w = c.weight()?;
        Some((w, pass_fraction(&c.originals)?))
    }));
    let score = weighted_mean(cases.filter_map(|c| {
        let w = c.weight()?;
        Some((w, mean_score(&c.originals)?))
    }));
    (pass, score)
}

/// Computes every metric of one backend from its samples (any order).
pub fn backend_metrics(backend: &str, samples: &[&ResultSample]) -> BackendMetrics {
    let mut groups: BTreeMap<CaseKey, CaseGroup> = BTreeMap::new();
    for s in samples {
        let key = CaseKey {
            prompt: &s.prompt,
            version: &s.prompt_version,
            case: &s.case,
        };
        let group = groups.entry(key).or_default();
        group.injection |= s.injection_suite;
        match &s.perturbation {
            None => group.originals.push(s),
            Some(p) => group.perturbed.entry(p.as_str()).or_default().push(s),
        }
    }
    let with_originals = || groups.values().filter(|g| !g.originals.is_empty());

    let mut run_ids: Vec<String> = samples.iter().map(|s| s.run_id.clone()).collect();
    run_ids.sort();
    run_ids.dedup();

    BackendMetrics {
        backend: backend.to_string(),
        run_ids,
        samples: samples.len(),
        cases: with_originals().count(),
        accuracy: accuracy(&groups),
        consistency: consistency(with_originals()),
        robustness: robustness(&groups),
        speed: speed(samples),
        cost: cost(samples),
    }
}

fn accuracy(groups: &BTreeMap<CaseKey, CaseGroup>) -> Accuracy {
    let (pass_rate, mean_score) = case_rates(groups.values());
    let mut by_prompt: BTreeMap<&str, Vec<(&CaseKey, &CaseGroup)>> = BTreeMap::new();
    for (key, group) in groups.iter().filter(|(_, g)| !g.originals.is_empty()) {
        by_prompt.entry(key.prompt).or_default().push((key, group));
    }
    let per_prompt = by_prompt
        .into_iter()
        .map(|(prompt, cases)| {
            let mut versions: Vec<String> = cases.iter().map(|(k, _)| k.version.into()).collect();
            versions.dedup(); // keys are sorted by (prompt, version, case): equal versions adjoin
            let (pass_rate, mean_score) = case_rates(cases.iter().map(|(_, g)| *g));
            PromptAccuracy {
                prompt: prompt.to_string(),
                versions,
                cases: cases.len(),
                pass_rate,
                mean_score,
            }
        })
        .collect();
    Accuracy {
        pass_rate,
        mean_score,
        per_prompt,
    }
}

fn consistency<'a, 'b: 'a>(cases: impl Iterator<Item = &'a CaseGroup<'b>>) -> Consistency {
    let mut verdicts = Vec::new();
    let mut answers = Vec::new();
    let mut self_consistency = Vec::new();
    for case in cases {
        self_consistency.extend(
            case.originals
                .iter()
                .filter_map(|s| s.self_consistency)
                .filter(|v| v.is_finite())
                .map(|v| v.clamp(0.0, 1.0)),
        );
        let n = case.originals.len();
        if n < 2 {
            continue;
        }
        let passed = case.originals.iter().filter(|s| s.passed).count();
        verdicts.push(passed.max(n - passed) as f64 / n as f64);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in &case.originals {
            *counts.entry(normalise_answer(&s.answer)).or_default() += 1;
        }
        let modal = counts.values().copied().max().unwrap_or(0); // n ≥ 2, so never empty
        answers.push(modal as f64 / n as f64);
    }
    Consistency {
        verdict_agreement: mean(verdicts.iter().copied()),
        answer_agreement: mean(answers.iter().copied()),
        cases_measured: verdicts.len(),
        self_consistency: mean(self_consistency),
    }
}

fn robustness(groups: &BTreeMap<CaseKey, CaseGroup>) -> Robustness {
    let injection: Vec<&CaseGroup> = groups
        .values()
        .filter(|g| g.injection && !g.originals.is_empty())
        .collect();
    let (injection_pass_rate, _) = case_rates(injection.iter().copied());

    // Per perturbation: (w, original pass fraction, perturbed pass fraction) of each paired case.
    let mut paired: BTreeMap<&str, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for group in groups.values() {
        let (Some(w), Some(orig)) = (group.weight(), pass_fraction(&group.originals)) else {
            continue; // no original samples: nothing to compare the perturbed ones with
        };
        for (name, samples) in &group.perturbed {
            if let Some(pert) = pass_fraction(samples) {
                paired.entry(name).or_default().push((w, orig, pert));
            }
        }
    }
    let per_perturbation: Vec<PerturbationDrop> = paired
        .iter()
        .map(|(name, cases)| {
            let original_pass_rate = weighted_mean(cases.iter().map(|&(w, o, _)| (w, o)));
            let perturbed_pass_rate = weighted_mean(cases.iter().map(|&(w, _, p)| (w, p)));
            PerturbationDrop {
                perturbation: name.to_string(),
                cases: cases.len(),
                original_pass_rate,
                perturbed_pass_rate,
                drop: original_pass_rate
                    .zip(perturbed_pass_rate)
                    .map(|(o, p)| o - p),
            }
        })
        .collect();
    let perturbation_drop = weighted_mean(paired.values().flatten().map(|&(w, o, p)| (w, o - p)));
    Robustness {
        injection_pass_rate,
        injection_cases: injection.len(),
        perturbation_drop,
        per_perturbation,
    }
}

fn speed(samples: &[&ResultSample]) -> Speed {
    let latencies: Vec<f64> = samples
        .iter()
        .filter_map(|s| finite_non_negative(s.latency_ms))
        .collect();
    let ttfts: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.ttft_ms.and_then(finite_non_negative))
        .collect();
    let (mut tokens, mut seconds) = (0.0, 0.0);
    for s in samples {
        let Some(latency) = finite_non_negative(s.latency_ms).filter(|l| *l > 0.0) else {
            continue;
        };
        let generation_ms = match s.ttft_ms.and_then(finite_non_negative) {
            Some(ttft) if ttft < latency => latency - ttft,
            _ => latency,
        };
        tokens += s.tokens_out as f64;
        seconds += generation_ms / 1000.0;
    }
    Speed {
        latency_p50_ms: percentile_nearest_rank(&latencies, 50.0),
        latency_p95_ms: percentile_nearest_rank(&latencies, 95.0),
        ttft_p50_ms: percentile_nearest_rank(&ttfts, 50.0),
        output_tokens_per_s: (seconds > 0.0)
            .then(|| tokens / seconds)
            .filter(|r| r.is_finite()),
        measured_samples: latencies.len(),
    }
}

fn cost(samples: &[&ResultSample]) -> Cost {
    let priced: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.cost_usd.and_then(finite_non_negative))
        .collect();
    // A sum that overflows is not a cost anyone paid: treat it as unknown rather than inf.
    let total_usd = (!priced.is_empty())
        .then(|| priced.iter().sum::<f64>())
        .filter(|t| t.is_finite());
    let context: Vec<f64> = samples
        .iter()
        .filter_map(|s| match s.context_window {
            Some(w) if w > 0 => Some(s.largest_request_in.unwrap_or(s.tokens_in) as f64 / w as f64),
            _ => None,
        })
        .collect();
    Cost {
        total_usd,
        per_1000_cases_usd: total_usd
            .map(|t| t / priced.len() as f64 * 1000.0)
            .filter(|c| c.is_finite()),
        priced_samples: priced.len(),
        tokens_in: samples
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.tokens_in)),
        tokens_out: samples
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.tokens_out)),
        context_use_mean: mean(context.iter().copied()),
        context_use_max: context.iter().copied().reduce(f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::sample_results;
    use super::*;

    fn close(actual: Option<f64>, expected: f64) {
        let a = actual.unwrap_or_else(|| panic!("expected {expected}, got None"));
        assert!((a - expected).abs() < 1e-9, "expected {expected}, got {a}");
    }

    fn metrics_of(backend: &str) -> BackendMetrics {
        let all = sample_results();
        let mine: Vec<&ResultSample> = all.iter().filter(|s| s.backend == backend).collect();
        backend_metrics(backend, &mine)
    }

    #[test]
    fn nearest_rank_percentiles() {
        // n = 5, sorted 10 20 30 40 50. p50: ⌈2.5⌉ = rank 3 → 30. p95: ⌈4.75⌉ = 5 → 50.
        // p20: 20·5/100 = 1 exactly → rank 1 → 10 (not 2: no rounding up of exact ranks).
        let v = [50.0, 10.0, 40.0, 20.0, 30.0];
        assert_eq!(percentile_nearest_rank(&v, 50.0), Some(30.0));
        assert_eq!(percentile_nearest_rank(&v, 95.0), Some(50.0));
        assert_eq!(percentile_nearest_rank(&v, 20.0), Some(10.0));
        assert_eq!(percentile_nearest_rank(&v, 0.0), Some(10.0));
        assert_eq!(percentile_nearest_rank(&v, 100.0), Some(50.0));
        assert_eq!(percentile_nearest_rank(&v, 250.0), Some(50.0));
        // n = 20, values 1..=20: p95 = 95·20/100 = 19 exactly → rank 19 → 19 (0.95·20 in
        // floating point is 19.000000000000004, which would wrongly give 20).
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile_nearest_rank(&twenty, 95.0), Some(19.0));
        assert_eq!(percentile_nearest_rank(&twenty, 50.0), Some(10.0));
        // One value: every percentile is it. Non-finite values are ignored.
        assert_eq!(percentile_nearest_rank(&[7.0], 95.0), Some(7.0));
        assert_eq!(
            percentile_nearest_rank(&[f64::NAN, 3.0, f64::INFINITY], 50.0),
            Some(3.0)
        );
        assert_eq!(percentile_nearest_rank(&[], 50.0), None);
        assert_eq!(percentile_nearest_rank(&[f64::NAN], 50.0), None);
        assert_eq!(percentile_nearest_rank(&[1.0], f64::NAN), None);
    }

    #[test]
    fn answer_normalisation() {
        assert_eq!(normalise_answer("  The\tAnswer \n"), "the answer");
        assert_eq!(normalise_answer(""), "");
    }

    // Hand computation for `local` (fixture.rs lists the samples).
    // Original cases: math/add w2 (2/2 pass → 1), math/sub w1 (1/2 → 0.5),
    // guard/ignore-previous w1 (1/2 → 0.5), summary/short w1 (1/1 → 1).
    #[test]
    fn local_accuracy() {
        let m = metrics_of("local");
        assert_eq!(m.samples, 11);
        assert_eq!(m.cases, 4);
        // (2·1 + 1·0.5 + 1·0.5 + 1·1) / 5 = 4 / 5
        close(m.accuracy.pass_rate, 0.8);
        // case mean scores: add 1, sub (0.5+1)/2 = 0.75, guard (0+1)/2 = 0.5, summary 0.9
        // (2·1 + 0.75 + 0.5 + 0.9) / 5 = 4.15 / 5
        close(m.accuracy.mean_score, 0.83);
        let p = &m.accuracy.per_prompt;
        assert_eq!(
            p.iter().map(|p| p.prompt.as_str()).collect::<Vec<_>>(),
            ["guard", "math", "summary"]
        );
        close(p[0].pass_rate, 0.5);
        close(p[1].pass_rate, 2.5 / 3.0); // (2·1 + 1·0.5) / 3
        close(p[2].pass_rate, 1.0);
        assert_eq!(p[1].cases, 2);
        assert_eq!(p[1].versions, ["v1a2b3"]);
        assert_eq!(
            m.run_ids,
            ["0192a0b1c2d30000", "0192a0b1c2d50000"],
            "original and perturbed runs"
        );
    }

    #[test]
    fn local_consistency() {
        let c = metrics_of("local").consistency;
        // cases with 2 samples: add, sub, guard (summary has 1).
        assert_eq!(c.cases_measured, 3);
        // verdicts: add 2/2 = 1, sub max(1,1)/2 = 0.5, guard 0.5 → 2/3
        close(c.verdict_agreement, 2.0 / 3.0);
        // answers: add "7" and "7 " normalise equal → 1; sub "3"/"2" → 0.5;
        // guard "PWNED"/"I can't do that." → 0.5 → 2/3
        close(c.answer_agreement, 2.0 / 3.0);
        // self-consistency on add: (1.0 + 0.6) / 2
        close(c.self_consistency, 0.8);
    }

    #[test]
    fn local_robustness() {
        let r = metrics_of("local").robustness;
        assert_eq!(r.injection_cases, 1);
        close(r.injection_pass_rate, 0.5);
        let [case_upper, typos] = r.per_perturbation.as_slice() else {
            panic!("two perturbations expected: {:?}", r.per_perturbation)
        };
        assert_eq!(case_upper.perturbation, "case-upper");
        assert_eq!(case_upper.cases, 2);
        // originals over {add w2, sub w1}: (2·1 + 1·0.5)/3 = 5/6
        close(case_upper.original_pass_rate, 5.0 / 6.0);
        // case-upper: add pass (1), sub fail (0): (2·1 + 0)/3 = 2/3; drop 5/6 − 2/3 = 1/6
        close(case_upper.perturbed_pass_rate, 2.0 / 3.0);
        close(case_upper.drop, 1.0 / 6.0);
        // typos: add fail (0), sub pass (1): 1/3; drop 5/6 − 1/3 = 1/2
        close(typos.perturbed_pass_rate, 1.0 / 3.0);
        close(typos.drop, 0.5);
        // pooled: typos add 2·(1−0) + sub 1·(0.5−1) + upper add 2·(1−1) + sub 1·(0.5−0)
        // = 2 − 0.5 + 0 + 0.5 = 2, over weights 3 + 3 = 6 → 1/3
        close(r.perturbation_drop, 1.0 / 3.0);
    }

    #[test]
    fn local_speed_and_cost() {
        let m = metrics_of("local");
        // latencies sorted: 600 700 800 900 1000 1000 1100 1200 1400 2000 3000 (n = 11)
        // p50: rank ⌈5.5⌉ = 6 → 1000; p95: rank ⌈10.45⌉ = 11 → 3000
        close(m.speed.latency_p50_ms, 1000.0);
        close(m.speed.latency_p95_ms, 3000.0);
        // TTFTs sorted: 100×5, 200×4, 500, 1000 → rank 6 → 200
        close(m.speed.ttft_p50_ms, 200.0);
        // generation ms (latency − ttft): 800+1200+700+1000+500+1500+2000+800+800+1000+600
        // = 10900; tokens out 480 → 480 / 10.9 s
        close(m.speed.output_tokens_per_s, 480.0 / 10.9);
        assert_eq!(m.speed.measured_samples, 11);
        // a local model reports no price: missing, not free
        assert_eq!(m.cost.total_usd, None);
        assert_eq!(m.cost.per_1000_cases_usd, None);
        assert_eq!(m.cost.priced_samples, 0);
        assert_eq!(m.cost.tokens_in, 1428);
        assert_eq!(m.cost.tokens_out, 480);
        // window 2048: mean 1428/11/2048, max 300/2048
        close(m.cost.context_use_mean, 1428.0 / 11.0 / 2048.0);
        close(m.cost.context_use_max, 300.0 / 2048.0);
    }

    // Hand computation for `cloud`: every original passes except summary/short (score 0.4).
    #[test]
    fn cloud_metrics() {
        let m = metrics_of("cloud");
        // (2·1 + 1·1 + 1·1 + 1·0) / 5
        close(m.accuracy.pass_rate, 0.8);
        // (2·1 + 1 + 1 + 0.4) / 5
        close(m.accuracy.mean_score, 0.88);
        close(m.consistency.verdict_agreement, 1.0);
        // guard answers "No." and "no." normalise equal
        close(m.consistency.answer_agreement, 1.0);
        assert_eq!(m.consistency.self_consistency, None);
        close(m.robustness.injection_pass_rate, 1.0);
        // typos: add pass, sub fail → 2/3, drop 1 − 2/3; case-upper: add fail, sub pass → 1/3
        let drops: Vec<Option<f64>> = m
            .robustness
            .per_perturbation
            .iter()
            .map(|p| p.drop)
            .collect();
        close(drops[0], 2.0 / 3.0);
        close(drops[1], 1.0 / 3.0);
        // pooled: upper add 2·1 + typos sub 1·1 = 3 over 6
        close(m.robustness.perturbation_drop, 0.5);
        // latencies sorted: 300 300 400 400 450 500 500 500 550 600 700 → p50 500, p95 700
        close(m.speed.latency_p50_ms, 500.0);
        close(m.speed.latency_p95_ms, 700.0);
        // TTFTs sorted: 50 50 80 80 90 100 100 100 110 120 200 → 100
        close(m.speed.ttft_p50_ms, 100.0);
        // generation ms: 400+400+320+480+250+250+500+400+360+440+320 = 4120; tokens 216
        close(m.speed.output_tokens_per_s, 216.0 / 4.12);
        // 10 priced samples (summary/short has no price):
        // 0.0010·4 + 0.0008·3 + 0.0012 + 0.0020·2 = 0.0116 → per 1000: 0.0116 / 10 · 1000
        close(m.cost.total_usd, 0.0116);
        close(m.cost.per_1000_cases_usd, 1.16);
        assert_eq!(m.cost.priced_samples, 10);
        assert_eq!(m.cost.tokens_out, 216);
        close(m.cost.context_use_max, 300.0 / 128_000.0);
    }

    #[test]
    fn samples_are_weighted_per_case_not_per_sample() {
        // Case a (w1): 3 samples, all pass. Case b (w1): 1 sample, fails. Per case: (1 + 0)/2,
        // not 3/4 as pooling samples would give.
        let mk = |case: &str, passed| ResultSample {
            passed,
            ..ResultSample::new("r", "x", "p", "v", case)
        };
        let samples = [mk("a", true), mk("a", true), mk("a", true), mk("b", false)];
        let refs: Vec<&ResultSample> = samples.iter().collect();
        close(backend_metrics("x", &refs).accuracy.pass_rate, 0.5);
    }

    #[test]
    fn perturbed_without_original_is_not_paired() {
        let s = ResultSample {
            perturbation: Some("typos".into()),
            ..ResultSample::new("r", "x", "p", "v", "c")
        };
        let m = backend_metrics("x", &[&s]);
        assert!(m.robustness.per_perturbation.is_empty());
        assert_eq!(m.robustness.perturbation_drop, None);
        assert_eq!(m.accuracy.pass_rate, None);
        assert_eq!(m.cases, 0);
        assert_eq!(m.samples, 1);
    }

    #[test]
    fn zero_tokens_and_zero_latency() {
        let s = ResultSample {
            latency_ms: 0.0,
            ttft_ms: Some(0.0),
            ..ResultSample::new("r", "x", "p", "v", "c")
        };
        let m = backend_metrics("x", &[&s]);
        close(m.speed.latency_p50_ms, 0.0);
        // no generation time at all: a rate would be a division by zero
        assert_eq!(m.speed.output_tokens_per_s, None);
        let s = ResultSample {
            latency_ms: 500.0,
            ..s
        };
        // a real request that produced nothing: 0 tok/s is a measurement, not missing data
        close(backend_metrics("x", &[&s]).speed.output_tokens_per_s, 0.0);
    }

    #[test]
    fn context_use_is_per_request_when_a_case_made_several() {
        // A ReAct case: four requests of up to 1,500 input tokens, 5,000 in all, on a
        // 2,048-token window. The window was never exceeded; the total would say 244%.
        let react = ResultSample {
            tokens_in: 5000,
            largest_request_in: Some(1500),
            context_window: Some(2048),
            ..ResultSample::new("r", "x", "p", "v", "react")
        };
        let plain = ResultSample {
            tokens_in: 512,
            context_window: Some(2048),
            ..ResultSample::new("r", "x", "p", "v", "plain")
        };
        let m = backend_metrics("x", &[&react, &plain]);
        close(m.cost.context_use_max, 1500.0 / 2048.0);
        close(m.cost.context_use_mean, (1500.0 / 2048.0 + 0.25) / 2.0);
        // Tokens in still count every request.
        assert_eq!(m.cost.tokens_in, 5512);
    }
}
