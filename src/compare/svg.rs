//! Inline SVG for the HTML report: the radar, the histograms and the per-prompt bars, drawn
//! from [`super::chart`] data. PURE: returns strings; every user-supplied text is escaped.
//!
//! Hooks for browser tests and styling (stable, documented):
//! - radar: one `<polygon class="radar-backend" data-backend="NAME">` per backend; its vertices
//!   are `<circle class="vertex" data-backend data-axis>` with a `<title>` (hover: raw value);
//! - histograms: one `<rect class="bar" data-bin="I" data-backend="NAME" data-count="N">` per
//!   bin per backend, zero-height ones included, so bars = bins × backends;
//! - per-prompt bars: one `<rect class="prompt-bar" data-prompt data-backend>` per prompt per
//!   backend that has a pass rate.
//!
//! Colours are presentation attributes, not CSS, so the charts keep them when an SVG is copied
//! out of the page.

use super::chart::{BarChart, Histogram, RadarChart};
use super::format::{self, coord};
use super::html::{escape, w};

/// Tableau 10: distinguishable, and readable for the common colour-vision deficiencies.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// The colour of the backend in column `index` (cycling after ten).
pub fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

const RADAR_W: f64 = 560.0;
const RADAR_H: f64 = 390.0;
const RADAR_R: f64 = 160.0;

/// The radar chart. Unit coordinates (y up) map to pixels as x = cx + R·ux, y = cy − R·uy.
pub fn radar_svg(radar: &RadarChart) -> String {
    // A pentagon reaches R up but only cos 36° ≈ 0.81 R down: centre it below the middle,
    // leaving room for the top label.
    let (cx, cy) = (RADAR_W / 2.0, RADAR_R * 1.12 + 28.0);
    let px = |(x, y): (f64, f64), r: f64| (cx + RADAR_R * r * x, cy - RADAR_R * r * y);
    let mut out = String::new();
    w!(
        out,
        r#"<svg class="radar" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="Radar chart: one polygon per backend, higher is better on every axis">"#,
        RADAR_W,
        RADAR_H,
        RADAR_W,
        RADAR_H
    );
    let tips: Vec<(f64, f64)> = radar.axes.iter().map(|a| a.tip).collect();
    for ring in [0.25, 0.5, 0.75, 1.0] {
        let points: Vec<String> = tips
            .iter()
            .map(|&t| {
                let (x, y) = px(t, ring);
                format!("{},{}", coord(x), coord(y))
            })
            .collect();
        w!(
            out,
            r##"<polygon class="grid" points="{}" fill="none" stroke="#ccc" stroke-width="1"/>"##,
            points.join(" ")
        );
    }
    for axis in &radar.axes {
        let (x, y) = px(axis.tip, 1.0);
        w!(
            out,
            r##"<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-width="1"/>"##,
            coord(cx),
            coord(cy),
            coord(x),
            coord(y)
        );
        let (lx, ly) = px(axis.tip, 1.12);
        let anchor = if axis.tip.0 > 0.1 {
            "start"
        } else if axis.tip.0 < -0.1 {
            "end"
        } else {
            "middle"
        };
        w!(
            out,
            r#"<text class="axis-label" x="{}" y="{}" text-anchor="{anchor}" dominant-baseline="middle">{}<title>{}</title></text>"#,
            coord(lx),
            coord(ly),
            escape(&axis.name),
            escape(&axis.normalisation)
        );
    }
    for (i, series) in radar.series.iter().enumerate() {
        let c = colour(i);
        let points: Vec<String> = series
            .vertices()
            .into_iter()
            .map(|v| {
                let (x, y) = px(v, 1.0);
                format!("{},{}", coord(x), coord(y))
            })
            .collect();
        let name = escape(&series.backend);
        w!(
            out,
            r#"<polygon class="radar-backend" data-backend="{name}" points="{}" fill="{c}" fill-opacity="0.15" stroke="{c}" stroke-width="2"><title>{name}</title></polygon>"#,
            points.join(" ")
        );
        for (point, axis) in series.points.iter().zip(&radar.axes) {
            let (x, y) = px((point.x, point.y), 1.0);
            let value = match point.value {
                Some(v) => format!("{} (normalised {})", point.raw, format::unit(Some(v))),
                None => format!("{} (no data)", point.raw),
            };
            w!(
                out,
                r#"<circle class="vertex" data-backend="{name}" data-axis="{}" cx="{}" cy="{}" r="4" fill="{c}"><title>{name} · {}: {}</title></circle>"#,
                escape(&axis.name),
                coord(x),
                coord(y),
                escape(&axis.name),
                escape(&value)
            );
        }
    }
    out.push_str("</svg>");
    out
}

const PLOT_W: f64 = 640.0;
const PLOT_H: f64 = 280.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 44.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 64.0;

fn plot_open(out: &mut String, class: &str, label: &str) {
    w!(
        out,
        r#"<svg class="{class}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {PLOT_W} {PLOT_H}" width="{PLOT_W}" height="{PLOT_H}" role="img" aria-label="{}">"#,
        escape(label)
    );
}

fn no_data(out: &mut String) {
    w!(
        out,
        r#"<text class="no-data" x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
        coord(PLOT_W / 2.0),
        coord(PLOT_H / 2.0)
    );
}

/// The plot area's frame: a baseline and a left axis with `ticks` (value, label) on it.
fn frame(out: &mut String, ticks: &[(f64, String)]) {
    let plot_h = PLOT_H - TOP - BOTTOM;
    for (fraction, label) in ticks {
        let y = TOP + plot_h * (1.0 - fraction);
        w!(
            out,
            r##"<line class="gridline" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#e5e5e5"/><text class="tick" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>"##,
            coord(LEFT),
            coord(y),
            coord(PLOT_W - RIGHT),
            coord(y),
            coord(LEFT - 6.0),
            coord(y),
            escape(label)
        );
    }
    w!(
        out,
        r##"<line class="baseline" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#666"/>"##,
        coord(LEFT),
        coord(TOP + plot_h),
        coord(PLOT_W - RIGHT),
        coord(TOP + plot_h)
    );
}

/// A histogram: bins share their x range across backends; bars of a bin stand side by side.
pub fn histogram_svg(h: &Histogram) -> String {
    let mut out = String::new();
    plot_open(
        &mut out,
        "histogram",
        &format!("Histogram of {} ({}) per backend", h.metric, h.unit),
    );
    let bins = h.bins();
    if bins == 0 || h.series.is_empty() {
        no_data(&mut out);
        return out;
    }
    let plot_w = PLOT_W - LEFT - RIGHT;
    let plot_h = PLOT_H - TOP - BOTTOM;
    let max = h.max_count().max(1);
    frame(&mut out, &[(0.0, "0".to_string()), (1.0, max.to_string())]);
    let bin_w = plot_w / bins as f64;
    let bar_w = bin_w * 0.8 / h.series.len() as f64;
    for bin in 0..bins {
        let label = h.bin_label(bin);
        for (j, series) in h.series.iter().enumerate() {
            let count = series.counts.get(bin).copied().unwrap_or(0);
            let height = plot_h * count as f64 / max as f64;
            let x = LEFT + bin_w * bin as f64 + bin_w * 0.1 + bar_w * j as f64;
            let name = escape(&series.backend);
            w!(
                out,
                r#"<rect class="bar" data-bin="{bin}" data-backend="{name}" data-count="{count}" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{name} · {}: {count} samples</title></rect>"#,
                coord(x),
                coord(TOP + plot_h - height),
                coord(bar_w),
                coord(height),
                colour(j),
                escape(&label)
            );
        }
    }
    // Edge labels, every other one when they would crowd.
    let step = if bins > 6 { 2 } else { 1 };
    for (i, edge) in h.edges.iter().enumerate() {
        if i % step != 0 && i != bins {
            continue;
        }
        let text = match h.unit.as_str() {
            "USD" => format::usd(Some(*edge)),
            _ => format::millis(Some(*edge)),
        };
        w!(
            out,
            r#"<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            coord(LEFT + bin_w * i as f64),
            coord(TOP + plot_h + 16.0),
            escape(&text)
        );
    }
    w!(
        out,
        r#"<text class="axis-title" x="{}" y="{}" text-anchor="middle">{} ({}), samples per bin</text></svg>"#,
        coord(LEFT + plot_w / 2.0),
        coord(PLOT_H - 12.0),
        escape(&h.metric),
        escape(&h.unit)
    );
    out
}

/// Shortens a label to `max` characters with an ellipsis (the full text goes in a `<title>`).
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Grouped bars for 0..1 values (pass rate per prompt).
pub fn bar_chart_svg(chart: &BarChart) -> String {
    let mut out = String::new();
    plot_open(&mut out, "bars", &chart.title);
    let backends = chart.groups.first().map_or(0, |g| g.bars.len());
    if chart.groups.is_empty() || backends == 0 {
        no_data(&mut out);
        return out;
    }
    let plot_w = PLOT_W - LEFT - RIGHT;
    let plot_h = PLOT_H - TOP - BOTTOM;
    let ticks: Vec<(f64, String)> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .into_iter()
        .map(|f| (f, format!("{:.0}%", f * 100.0)))
        .collect();
    frame(&mut out, &ticks);
    let group_w = plot_w / chart.groups.len() as f64;
    let bar_w = group_w * 0.8 / backends as f64;
    for (g, group) in chart.groups.iter().enumerate() {
        let prompt = escape(&group.label);
        for (j, bar) in group.bars.iter().enumerate() {
            let x = LEFT + group_w * g as f64 + group_w * 0.1 + bar_w * j as f64;
            let name = escape(&bar.backend);
            match bar.value.filter(|v| v.is_finite()) {
                Some(v) => {
                    let height = plot_h * v.clamp(0.0, 1.0);
                    w!(
                        out,
                        r#"<rect class="prompt-bar" data-prompt="{prompt}" data-backend="{name}" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{name} · {prompt}: {}</title></rect>"#,
                        coord(x),
                        coord(TOP + plot_h - height),
                        coord(bar_w),
                        coord(height),
                        colour(j),
                        escape(&format::percent(Some(v)))
                    );
                }
                None => w!(
                    out,
                    r#"<text class="missing" x="{}" y="{}" text-anchor="middle">{}<title>{name} · {prompt}: no data</title></text>"#,
                    coord(x + bar_w / 2.0),
                    coord(TOP + plot_h - 4.0),
                    format::MISSING
                ),
            }
        }
        w!(
            out,
            r#"<text class="tick" x="{}" y="{}" text-anchor="middle">{}<title>{prompt}</title></text>"#,
            coord(LEFT + group_w * (g as f64 + 0.5)),
            coord(TOP + plot_h + 16.0),
            escape(&shorten(&group.label, 18))
        );
    }
    w!(
        out,
        r#"<text class="axis-title" x="{}" y="{}" text-anchor="middle">{}</text></svg>"#,
        coord(LEFT + plot_w / 2.0),
        coord(PLOT_H - 12.0),
        escape(&chart.title)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::chart::{histogram, prompt_pass_rates};
    use super::super::{CompareOptions, compare, fixture::sample_results};
    use super::*;

    #[test]
    fn radar_has_one_polygon_per_backend() {
        let report = compare(&sample_results(), &CompareOptions::default());
        let svg = radar_svg(&report.radar);
        assert_eq!(svg.matches(r#"class="radar-backend""#).count(), 2);
        assert_eq!(svg.matches(r#"class="vertex""#).count(), 10);
        assert!(svg.contains(r#"data-backend="local""#));
        assert!(svg.contains("<title>local · cost: – (no data)</title>"));
    }

    #[test]
    fn histogram_bars_are_bins_times_backends() {
        let h = histogram(
            "latency",
            "ms",
            &[
                ("a".into(), vec![1.0, 2.0, 3.0]),
                ("b".into(), vec![4.0]),
                ("c".into(), vec![]),
            ],
            5,
        );
        let svg = histogram_svg(&h);
        assert_eq!(svg.matches(r#"class="bar""#).count(), 15);
        assert_eq!(svg.matches(r#"data-bin="4""#).count(), 3);
        let empty = histogram("latency", "ms", &[("a".into(), vec![])], 5);
        let svg = histogram_svg(&empty);
        assert!(svg.contains("no data") && !svg.contains(r#"class="bar""#));
    }

    #[test]
    fn bars_skip_missing_values_and_escape() {
        let report = compare(&sample_results(), &CompareOptions::default());
        let mut chart = prompt_pass_rates(&report.backends, &report.prompts);
        chart.groups[0].label = "<script>alert(1)</script>".into();
        chart.groups[0].bars[0].value = None;
        let svg = bar_chart_svg(&chart);
        assert_eq!(svg.matches(r#"class="prompt-bar""#).count(), 5);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("żółw", 4), "żółw");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
