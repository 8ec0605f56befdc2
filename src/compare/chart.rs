//! Chart *data*, shared by the HTML report ([`super::svg`]) and the TUI's Compare view (a
//! ratatui braille `Canvas` and `BarChart`): radar normalisation and vertices, histogram bins,
//! per-prompt bars. PURE; no drawing here.
//!
//! Radar axes, all 0..1 with 1 the best (the normalisation is the same for every renderer):
//! - accuracy: the weighted pass rate, as is;
//! - consistency: the verdict agreement, as is;
//! - robustness: the mean of what is known of {injection pass rate, 1 − perturbation drop}
//!   (the drop clamped to 0..1, so a perturbation that helps counts as no drop);
//! - speed: latency p50, inverted by min/max over the backends: (max − v) / (max − min), so the
//!   fastest backend is 1 and the slowest 0; when all are equal (or there is one) every one is 1;
//! - cost: cost per 1,000 cases, inverted the same way.
//!
//! A missing value is drawn at the centre (0) and its label says "no data": the polygon must
//! close, and drawing it anywhere else would invent a number. Min/max is relative: 0 on speed
//! means "the slowest compared", not "slow".

use serde::Serialize;

use super::CompareReport;
use super::format;
use super::metrics::BackendMetrics;

/// A radar chart in unit coordinates: centre (0, 0), radius 1, y pointing *up* (as in a
/// ratatui `Canvas`; the SVG renderer flips it). Axis i points at angle 90° − i·360°/n, so the
/// first axis is straight up and the rest follow clockwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadarChart {
    pub axes: Vec<RadarAxis>,
    /// One per backend, in column order.
    pub series: Vec<RadarSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadarAxis {
    pub name: String,
    /// How the raw value became 0..1, for legends and help text.
    pub normalisation: String,
    /// The end of the axis (value 1) in unit coordinates.
    pub tip: (f64, f64),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadarSeries {
    pub backend: String,
    /// One per axis, in axis order.
    pub points: Vec<RadarPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadarPoint {
    /// Normalised 0..1; `None` when the backend has no data for the axis.
    pub value: Option<f64>,
    /// The raw value as text, for legends and hover.
    pub raw: String,
    /// The vertex in unit coordinates (the centre when `value` is `None`).
    pub x: f64,
    pub y: f64,
}

impl RadarSeries {
    /// The polygon's vertices in unit coordinates, in axis order (for `Canvas` lines: join
    /// consecutive vertices and the last back to the first).
    pub fn vertices(&self) -> Vec<(f64, f64)> {
        self.points.iter().map(|p| (p.x, p.y)).collect()
    }
}

/// Axis names, in drawing order.
pub const RADAR_AXES: [&str; 5] = ["accuracy", "consistency", "robustness", "speed", "cost"];

/// The unit vector of axis `i` of `n`.
pub fn axis_direction(i: usize, n: usize) -> (f64, f64) {
    let n = n.max(1) as f64;
    let angle = std::f64::consts::FRAC_PI_2 - std::f64::consts::TAU * i as f64 / n;
    (angle.cos(), angle.sin())
}

/// (max − v) / (max − min) over the known values; all 1 when they are all equal.
fn invert_min_max(values: &[Option<f64>]) -> Vec<Option<f64>> {
    let known = values.iter().flatten().copied().filter(|v| v.is_finite());
    let (min, max) = known.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    values
        .iter()
        .map(|v| {
            let v = v.filter(|v| v.is_finite())?;
            // Relative tolerance: latencies of 1000.0000001 and 1000 ms are the same speed.
            if max - min <= 1e-12 * max.abs().max(1.0) {
                Some(1.0)
            } else {
                Some(((max - v) / (max - min)).clamp(0.0, 1.0))
            }
        })
        .collect()
}

/// The robustness axis value; see the module docs.
pub fn robustness_score(m: &BackendMetrics) -> Option<f64> {
    let parts: Vec<f64> = [
        m.robustness.injection_pass_rate,
        m.robustness
            .perturbation_drop
            .map(|d| 1.0 - d.clamp(0.0, 1.0)),
    ]
    .into_iter()
    .flatten()
    .filter(|v| v.is_finite())
    .collect();
    (!parts.is_empty()).then(|| parts.iter().sum::<f64>() / parts.len() as f64)
}

/// Builds the radar from the per-backend metrics.
pub fn radar_chart(backends: &[BackendMetrics]) -> RadarChart {
    let speed = invert_min_max(
        &backends
            .iter()
            .map(|b| b.speed.latency_p50_ms)
            .collect::<Vec<_>>(),
    );
    let cost = invert_min_max(
        &backends
            .iter()
            .map(|b| b.cost.per_1000_cases_usd)
            .collect::<Vec<_>>(),
    );
    let n = RADAR_AXES.len();
    let normalisations = [
        "weighted pass rate",
        "verdict agreement across samples",
        "mean of injection pass rate and 1 − perturbation drop",
        "latency p50, min/max inverted across backends (fastest = 1)",
        "cost per 1,000 cases, min/max inverted across backends (cheapest = 1)",
    ];
    let axes = RADAR_AXES
        .iter()
        .zip(normalisations)
        .enumerate()
        .map(|(i, (name, normalisation))| RadarAxis {
            name: name.to_string(),
            normalisation: normalisation.to_string(),
            tip: axis_direction(i, n),
        })
        .collect();
    let series = backends
        .iter()
        .enumerate()
        .map(|(b, m)| {
            // Raw texts: a bare "–" when nothing is known, so a legend never reads "– / 1k".
            let known = |v: Option<f64>, text: String| match v {
                Some(_) => text,
                None => format::MISSING.to_string(),
            };
            let r = &m.robustness;
            let robustness_raw = known(
                r.injection_pass_rate.or(r.perturbation_drop),
                format!(
                    "injection {}, drop {}",
                    format::percent(r.injection_pass_rate),
                    format::points(r.perturbation_drop)
                ),
            );
            let latency = m.speed.latency_p50_ms;
            let per_1000 = m.cost.per_1000_cases_usd;
            let values = [
                (m.accuracy.pass_rate, format::percent(m.accuracy.pass_rate)),
                (
                    m.consistency.verdict_agreement,
                    format::percent(m.consistency.verdict_agreement),
                ),
                (robustness_score(m), robustness_raw),
                // `speed` and `cost` were built from `backends`, so index `b` is in range.
                (
                    speed[b],
                    known(latency, format!("p50 {}", format::millis(latency))),
                ),
                (
                    cost[b],
                    known(per_1000, format!("{} / 1k cases", format::usd(per_1000))),
                ),
            ];
            let points = values
                .into_iter()
                .enumerate()
                .map(|(i, (value, raw))| {
                    let value = value.filter(|v| v.is_finite()).map(|v| v.clamp(0.0, 1.0));
                    let (dx, dy) = axis_direction(i, n);
                    let r = value.unwrap_or(0.0);
                    RadarPoint {
                        value,
                        raw,
                        x: dx * r,
                        y: dy * r,
                    }
                })
                .collect();
            RadarSeries {
                backend: m.backend.clone(),
                points,
            }
        })
        .collect();
    RadarChart { axes, series }
}

/// A histogram with bins shared by every backend, so bars line up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub metric: String,
    pub unit: String,
    /// Bin edges, `bins() + 1` of them; bin i is [edges[i], edges[i+1]), the last bin closed.
    /// Empty when there is no value at all.
    pub edges: Vec<f64>,
    /// One per backend, in column order, each with `bins()` counts.
    pub series: Vec<HistogramSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramSeries {
    pub backend: String,
    pub counts: Vec<usize>,
    /// Values counted (the sum of `counts`).
    pub values: usize,
}

impl Histogram {
    pub fn bins(&self) -> usize {
        self.edges.len().saturating_sub(1)
    }

    /// The tallest bar over every backend (0 when empty).
    pub fn max_count(&self) -> usize {
        self.series
            .iter()
            .flat_map(|s| s.counts.iter().copied())
            .max()
            .unwrap_or(0)
    }

    /// A bin's range as text, e.g. "600–840 ms".
    pub fn bin_label(&self, bin: usize) -> String {
        match (self.edges.get(bin), self.edges.get(bin + 1)) {
            (Some(&lo), Some(&hi)) => {
                format!("{}–{}", self.value_text(lo), self.value_text(hi))
            }
            _ => format::MISSING.to_string(),
        }
    }

    fn value_text(&self, v: f64) -> String {
        match self.unit.as_str() {
            "USD" => format::usd(Some(v)),
            "ms" => format::millis(Some(v)),
            _ => format!("{v}"),
        }
    }

    /// The histogram as grouped bars, one group per bin (for the TUI's `BarChart`).
    pub fn to_bar_chart(&self) -> BarChart {
        BarChart {
            title: format!("{} ({})", self.metric, self.unit),
            unit: "samples".to_string(),
            groups: (0..self.bins())
                .map(|bin| BarGroup {
                    label: self.bin_label(bin),
                    bars: self
                        .series
                        .iter()
                        .map(|s| Bar {
                            backend: s.backend.clone(),
                            value: s.counts.get(bin).map(|&c| c as f64),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Equal-width bins from the smallest to the largest value over every backend. Deterministic:
/// the same values give the same bins in any order. One bin when every value is equal; no bins
/// when there are no (finite) values.
pub fn histogram(
    metric: &str,
    unit: &str,
    per_backend: &[(String, Vec<f64>)],
    bins: usize,
) -> Histogram {
    let all = per_backend
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite());
    let (min, max) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let bins = if min > max {
        0 // no finite value at all
    } else if max - min <= 0.0 {
        1
    } else {
        bins.max(1)
    };
    // Halves and convex combinations keep every step finite even for a range wider than
    // f64::MAX (max − min would overflow to infinity).
    let half_span = max / 2.0 - min / 2.0;
    let edges: Vec<f64> = match bins {
        0 => Vec::new(),
        1 => vec![min, max],
        _ => (0..=bins)
            .map(|i| {
                let t = i as f64 / bins as f64;
                if i == bins {
                    max // exactly, so the largest value lands in the last bin
                } else {
                    min * (1.0 - t) + max * t
                }
            })
            .collect(),
    };
    let series = per_backend
        .iter()
        .map(|(backend, values)| {
            let mut counts = vec![0usize; bins];
            let mut n = 0;
            for &v in values.iter().filter(|v| v.is_finite()) {
                let index = if half_span > 0.0 {
                    ((v / 2.0 - min / 2.0) / half_span * bins as f64).floor() as usize
                } else {
                    0
                };
                // `index` ≤ bins (v ≤ max); the max itself belongs to the last, closed bin.
                if let Some(c) = counts.get_mut(index.min(bins.saturating_sub(1))) {
                    *c += 1;
                    n += 1;
                }
            }
            HistogramSeries {
                backend: backend.clone(),
                counts,
                values: n,
            }
        })
        .collect();
    Histogram {
        metric: metric.to_string(),
        unit: unit.to_string(),
        edges,
        series,
    }
}

/// Grouped bars: one group per label, one bar per backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarChart {
    pub title: String,
    /// What the bar values measure ("pass rate" values are 0..1).
    pub unit: String,
    pub groups: Vec<BarGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarGroup {
    pub label: String,
    /// One per backend, in column order.
    pub bars: Vec<Bar>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub backend: String,
    /// `None`: the backend has no result for this group.
    pub value: Option<f64>,
}

/// Pass rate per prompt per backend.
pub fn prompt_pass_rates(backends: &[BackendMetrics], prompts: &[String]) -> BarChart {
    BarChart {
        title: "pass rate per prompt".to_string(),
        unit: "pass rate".to_string(),
        groups: prompts
            .iter()
            .map(|prompt| BarGroup {
                label: prompt.clone(),
                bars: backends
                    .iter()
                    .map(|b| Bar {
                        backend: b.backend.clone(),
                        value: b
                            .accuracy
                            .per_prompt
                            .iter()
                            .find(|p| &p.prompt == prompt)
                            .and_then(|p| p.pass_rate),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Everything the TUI's Compare view draws.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuiCharts {
    pub radar: RadarChart,
    pub pass_rate: BarChart,
    pub latency: BarChart,
    pub cost: BarChart,
}

pub fn tui_charts(report: &CompareReport) -> TuiCharts {
    TuiCharts {
        radar: report.radar.clone(),
        pass_rate: prompt_pass_rates(&report.backends, &report.prompts),
        latency: report.latency_histogram.to_bar_chart(),
        cost: report.cost_histogram.to_bar_chart(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CompareOptions, compare, fixture::sample_results};
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "expected {b}, got {a}");
    }

    #[test]
    fn axes_start_up_and_go_clockwise() {
        let (x, y) = axis_direction(0, 4);
        close(x, 0.0);
        close(y, 1.0);
        let (x, y) = axis_direction(1, 4);
        close(x, 1.0); // clockwise: the second axis points right
        close(y, 0.0);
    }

    #[test]
    fn min_max_inversion() {
        let v = invert_min_max(&[Some(1000.0), Some(500.0), None, Some(750.0)]);
        assert_eq!(v, [Some(0.0), Some(1.0), None, Some(0.5)]);
        assert_eq!(invert_min_max(&[Some(3.0)]), [Some(1.0)]);
        assert_eq!(
            invert_min_max(&[Some(3.0), Some(3.0)]),
            [Some(1.0), Some(1.0)]
        );
        assert_eq!(invert_min_max(&[Some(f64::NAN), None]), [None, None]);
    }

    #[test]
    fn fixture_radar() {
        let report = compare(&sample_results(), &CompareOptions::default());
        let radar = &report.radar;
        assert_eq!(radar.axes.len(), 5);
        let values = |b: usize| -> Vec<Option<f64>> {
            radar.series[b].points.iter().map(|p| p.value).collect()
        };
        // local: accuracy 0.8; consistency 2/3; robustness mean(0.5, 1 − 1/3) = 7/12;
        // speed p50 1000 vs 500 → slowest → 0; cost unknown → None.
        let local = values(0);
        close(local[0].unwrap_or(-1.0), 0.8);
        close(local[1].unwrap_or(-1.0), 2.0 / 3.0);
        close(local[2].unwrap_or(-1.0), 7.0 / 12.0);
        assert_eq!(local[3], Some(0.0));
        assert_eq!(local[4], None);
        // cloud: robustness mean(1, 1 − 0.5) = 0.75; fastest → 1; only priced backend → 1.
        let cloud = values(1);
        close(cloud[2].unwrap_or(-1.0), 0.75);
        assert_eq!(cloud[3], Some(1.0));
        assert_eq!(cloud[4], Some(1.0));
        // a missing value sits at the centre; accuracy (axis 0) points straight up
        let p = &radar.series[0].points;
        close(p[4].x, 0.0);
        close(p[4].y, 0.0);
        close(p[0].x, 0.0);
        close(p[0].y, 0.8);
        assert_eq!(p[4].raw, "–");
        assert_eq!(radar.series[1].points[4].raw, "$1.16 / 1k cases");
        assert_eq!(radar.series[0].vertices().len(), 5);
    }

    #[test]
    fn histogram_bins() {
        let data = vec![
            ("a".to_string(), vec![0.0, 10.0, 5.0, f64::NAN]),
            ("b".to_string(), vec![9.99, 2.5]),
        ];
        let h = histogram("latency", "ms", &data, 4);
        assert_eq!(h.edges, [0.0, 2.5, 5.0, 7.5, 10.0]);
        // a: 0 → bin 0, 5 → bin 2, 10 (the max) → last bin; NaN ignored
        assert_eq!(h.series[0].counts, [1, 0, 1, 1]);
        assert_eq!(h.series[0].values, 3);
        // b: 2.5 → bin 1 (edges belong to the bin above), 9.99 → bin 3
        assert_eq!(h.series[1].counts, [0, 1, 0, 1]);
        assert_eq!(h.max_count(), 1);
        assert_eq!(h.bin_label(1), "3 ms–5 ms"); // 2.5 rounds half away from zero
        let bars = h.to_bar_chart();
        assert_eq!(bars.groups.len(), 4);
        assert_eq!(bars.groups[3].bars[1].value, Some(1.0));
    }

    #[test]
    fn degenerate_histograms() {
        let equal = histogram("x", "ms", &[("a".into(), vec![4.0, 4.0])], 10);
        assert_eq!(equal.bins(), 1);
        assert_eq!(equal.series[0].counts, [2]);
        let empty = histogram("x", "ms", &[("a".into(), vec![f64::NAN])], 10);
        assert_eq!(empty.bins(), 0);
        assert!(empty.series[0].counts.is_empty());
        assert_eq!(empty.max_count(), 0);
        assert_eq!(empty.bin_label(0), "–");
        let none = histogram("x", "ms", &[], 10);
        assert!(none.series.is_empty());
        // a huge range must not overflow the bin index
        let wide = histogram(
            "x",
            "ms",
            &[("a".into(), vec![-f64::MAX, 0.0, f64::MAX])],
            3,
        );
        assert_eq!(wide.series[0].counts, [1, 1, 1]);
        assert!(wide.edges.iter().all(|e| e.is_finite()));
    }

    #[test]
    fn tui_data() {
        let report = compare(&sample_results(), &CompareOptions::default());
        let tui = tui_charts(&report);
        assert_eq!(tui.radar.series.len(), 2);
        assert_eq!(tui.pass_rate.groups.len(), 3); // guard, math, summary
        let math = &tui.pass_rate.groups[1];
        assert_eq!(math.label, "math");
        close(math.bars[0].value.unwrap_or(-1.0), 2.5 / 3.0);
        close(math.bars[1].value.unwrap_or(-1.0), 1.0);
        assert_eq!(tui.latency.groups.len(), 10);
    }
}
