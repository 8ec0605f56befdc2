//! The `--html` report: one self-contained HTML document (inline CSS and SVG, no external
//! assets, no JavaScript, works offline). PURE: returns a string; the CLI writes it.
//!
//! Layout: the radar with a legend of raw values, histograms of latency and cost, pass rate per
//! prompt, then every number in tables (the same rows as the terminal table, plus
//! per-perturbation detail, histogram bins and run ids), then the definitions. Every piece of
//! user text (backend, prompt and perturbation names, run ids, the title) goes through
//! [`escape`].

use super::chart::prompt_pass_rates;
use super::format;
use super::svg::{bar_chart_svg, colour, histogram_svg, radar_svg};
use super::table::{Table, build_table};
use super::{CompareReport, Histogram};

/// What the caller adds to the report. No clock here: a timestamp, if wanted, comes from the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlOptions {
    pub title: String,
    /// Shown under the title as is, e.g. "2026-11-28 19:30 UTC".
    pub generated_at: Option<String>,
}

impl Default for HtmlOptions {
    fn default() -> Self {
        HtmlOptions {
            title: "promptdeck compare".to_string(),
            generated_at: None,
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `write!` to a String, which cannot fail; this keeps `let _ =` out of every line. Shared
/// with `svg.rs`.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = $out.write_fmt(format_args!($($arg)*));
    }};
}
pub(crate) use w;

const CSS: &str = "\
:root{color-scheme:light;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;background:#fff}
body{max-width:980px;margin:0 auto;padding:16px 24px 48px;line-height:1.45}
h1{font-size:1.6em;margin:.4em 0 .1em}h2{font-size:1.25em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .3em}.meta,.note{color:#555;font-size:.9em}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:6px 18px}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.35em;vertical-align:-.1em}
svg{max-width:100%;height:auto;font-size:12px}svg text{fill:#333}svg .axis-label{font-size:13px;font-weight:600}
svg .no-data,svg .missing{fill:#888}svg .vertex:hover,svg .bar:hover,svg .prompt-bar:hover{stroke:#000;stroke-width:1.5}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.section th{background:#f4f4f4;font-weight:600}td.best{background:#e6f4ea}
code{font-size:.95em}dl dt{font-weight:600;margin-top:.5em}dl dd{margin-left:1.2em}
";

/// Renders the whole report.
pub fn render_html(report: &CompareReport, options: &HtmlOptions) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let title = escape(&options.title);
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{title}</h1>\n"
    );
    let count = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut meta = [
        count(report.backends.len(), "backend"),
        count(report.prompts.len(), "prompt"),
        count(report.samples, "sample"),
        count(report.run_ids.len(), "run"),
    ]
    .join(" · ");
    if let Some(at) = &options.generated_at {
        meta.push_str(" · ");
        meta.push_str(at);
    }
    w!(out, "<p class=\"meta\">{}</p>\n</header>\n", escape(&meta));

    if report.backends.is_empty() {
        out.push_str("<p>No results to compare.</p>\n");
    } else {
        out.push_str("<ul class=\"legend\">");
        for (i, b) in report.backends.iter().enumerate() {
            w!(
                out,
                "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>",
                colour(i),
                escape(&b.backend)
            );
        }
        out.push_str("</ul>\n");
    }

    overview(&mut out, report);
    w!(
        out,
        "<section id=\"latency\">\n<h2>Latency</h2>\n{}\n</section>\n",
        histogram_svg(&report.latency_histogram)
    );
    w!(
        out,
        "<section id=\"cost\">\n<h2>Cost per sample</h2>\n{}\n</section>\n",
        histogram_svg(&report.cost_histogram)
    );
    w!(
        out,
        "<section id=\"prompts\">\n<h2>Pass rate per prompt</h2>\n{}\n</section>\n",
        bar_chart_svg(&prompt_pass_rates(&report.backends, &report.prompts))
    );
    numbers(&mut out, report);
    definitions(&mut out);
    out.push_str("</body>\n</html>\n");
    out
}

/// The radar and its legend of raw values.
fn overview(out: &mut String, report: &CompareReport) {
    let radar = &report.radar;
    w!(
        out,
        "<section id=\"overview\">\n<h2>Overview</h2>\n{}\n",
        radar_svg(radar)
    );
    out.push_str("<table class=\"radar-legend\">\n<thead><tr><th>backend</th>");
    for axis in &radar.axes {
        w!(out, "<th>{}</th>", escape(&axis.name));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, series) in radar.series.iter().enumerate() {
        w!(
            out,
            "<tr><th><span class=\"swatch\" style=\"background:{}\"></span>{}</th>",
            colour(i),
            escape(&series.backend)
        );
        for p in &series.points {
            w!(
                out,
                "<td class=\"num\">{}<br><small>{}</small></td>",
                escape(&p.raw),
                format::unit(p.value)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n<p class=\"note\">Axes run from 0 at the centre to 1 at the rim; higher is better on every axis. The small number under each raw value is the plotted one. ");
    for (i, axis) in radar.axes.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        w!(
            out,
            "<b>{}</b>: {}",
            escape(&axis.name),
            escape(&axis.normalisation)
        );
    }
    out.push_str(
        ". Min/max scaling is relative to the backends compared; a missing value is drawn at the \
         centre and shown as “–”.</p>\n</section>\n",
    );
}

fn metrics_table(out: &mut String, table: &Table) {
    out.push_str("<table class=\"metrics\">\n<thead><tr><th>metric</th>");
    for b in &table.backends {
        w!(out, "<th class=\"num\">{}</th>", escape(b));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let mut section = "";
    for row in &table.rows {
        if row.section != section {
            section = &row.section;
            w!(
                out,
                "<tr class=\"section\"><th colspan=\"{}\">{}</th></tr>\n",
                table.backends.len() + 1,
                escape(section)
            );
        }
        w!(out, "<tr><th>{}</th>", escape(&row.metric));
        for cell in &row.cells {
            if cell.best {
                w!(
                    out,
                    "<td class=\"num best\"><strong>{}</strong></td>",
                    escape(&cell.text)
                );
            } else {
                w!(out, "<td class=\"num\">{}</td>", escape(&cell.text));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n<p class=\"note\">Bold on green: the best value of a metric (ties share it; none with fewer than two values).</p>\n");
}

fn histogram_table(out: &mut String, h: &Histogram) {
    w!(
        out,
        "<h3>{} bins ({})</h3>\n",
        escape(&h.metric),
        escape(&h.unit)
    );
    if h.bins() == 0 {
        out.push_str("<p class=\"note\">No values.</p>\n");
        return;
    }
    out.push_str("<table class=\"bins\">\n<thead><tr><th>bin</th><th>range</th>");
    for s in &h.series {
        w!(out, "<th class=\"num\">{}</th>", escape(&s.backend));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for bin in 0..h.bins() {
        w!(
            out,
            "<tr><td class=\"num\">{bin}</td><td>{}</td>",
            escape(&h.bin_label(bin))
        );
        for s in &h.series {
            w!(
                out,
                "<td class=\"num\">{}</td>",
                s.counts.get(bin).copied().unwrap_or(0)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// Every number, in tables.
fn numbers(out: &mut String, report: &CompareReport) {
    out.push_str("<section id=\"numbers\">\n<h2>All numbers</h2>\n");
    metrics_table(out, &build_table(report));

    out.push_str("<h3>Pass rate per prompt</h3>\n<table class=\"per-prompt\">\n<thead><tr><th>backend</th><th>prompt</th><th>versions</th><th class=\"num\">cases</th><th class=\"num\">pass rate</th><th class=\"num\">mean score</th></tr></thead>\n<tbody>\n");
    for b in &report.backends {
        for p in &b.accuracy.per_prompt {
            w!(
                out,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                escape(&b.backend),
                escape(&p.prompt),
                escape(&p.versions.join(", ")),
                p.cases,
                format::percent(p.pass_rate),
                format::percent(p.mean_score)
            );
        }
    }
    out.push_str("</tbody>\n</table>\n");

    if !report.perturbations.is_empty() {
        out.push_str("<h3>Perturbations</h3>\n<table class=\"perturbations\">\n<thead><tr><th>backend</th><th>perturbation</th><th class=\"num\">cases</th><th class=\"num\">original</th><th class=\"num\">perturbed</th><th class=\"num\">drop</th></tr></thead>\n<tbody>\n");
        for b in &report.backends {
            for p in &b.robustness.per_perturbation {
                w!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                    escape(&b.backend),
                    escape(&p.perturbation),
                    p.cases,
                    format::percent(p.original_pass_rate),
                    format::percent(p.perturbed_pass_rate),
                    format::points(p.drop)
                );
            }
        }
        out.push_str("</tbody>\n</table>\n");
    }

    histogram_table(out, &report.latency_histogram);
    histogram_table(out, &report.cost_histogram);

    out.push_str("<h3>Runs</h3>\n<table class=\"runs\">\n<thead><tr><th>backend</th><th class=\"num\">samples</th><th>run ids</th></tr></thead>\n<tbody>\n");
    for b in &report.backends {
        let ids: Vec<String> = b
            .run_ids
            .iter()
            .map(|id| format!("<code>{}</code>", escape(id)))
            .collect();
        w!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            escape(&b.backend),
            b.samples,
            ids.join(" ")
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn definitions(out: &mut String) {
    out.push_str(
        "<footer>\n<h2>Definitions</h2>\n<dl>\n\
<dt>pass rate</dt><dd>Weighted over cases: Σ weight × (passed samples ÷ samples) ÷ Σ weight, original (unperturbed) samples only. Weights come from the tests file (default 1).</dd>\n\
<dt>verdict / answer agreement</dt><dd>Per case with two or more samples: the share of samples with the most common verdict (pass/fail) or the most common answer (trimmed, lower-cased, whitespace collapsed); the mean over such cases.</dd>\n\
<dt>self-consistency</dt><dd>The mean vote agreement reported by prompts that use self-consistency.</dd>\n\
<dt>injection pass rate</dt><dd>The pass rate on the prompt-injection suite.</dd>\n\
<dt>perturbation drop</dt><dd>Original pass rate − perturbed pass rate over the cases run both ways, in percentage points; the overall figure pools every perturbation.</dd>\n\
<dt>latency, TTFT</dt><dd>Nearest-rank percentiles over every sample: the value at rank ⌈p/100 × n⌉ of the sorted values.</dd>\n\
<dt>output tokens/s</dt><dd>Σ output tokens ÷ Σ generation time, where generation time is latency − time to first token when that is measured, else the whole latency.</dd>\n\
<dt>cost</dt><dd>Per 1k cases: the mean cost of one priced sample × 1000. The total sums priced samples and says when some were not priced. Backends that report no price show “–”, not $0.</dd>\n\
<dt>context use</dt><dd>Input tokens of a sample's largest request ÷ the model's context window (a ReAct or self-consistency case makes several requests), mean and max over samples.</dd>\n\
</dl>\n</footer>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::super::{CompareOptions, ResultSample, compare, fixture::sample_results};
    use super::*;

    fn fixture_html() -> String {
        let report = compare(&sample_results(), &CompareOptions::default());
        render_html(
            &report,
            &HtmlOptions {
                title: "promptdeck compare — fixture".into(),
                generated_at: Some("fixture".into()),
            },
        )
    }

    #[test]
    fn escape_everything_that_matters() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn structure() {
        let html = fixture_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches(r#"class="radar-backend""#).count(), 2);
        // 10 latency bins + 10 cost bins, × 2 backends
        assert_eq!(html.matches(r#"class="bar""#).count(), 40);
        // 3 prompts × 2 backends, every one with a pass rate
        assert_eq!(html.matches(r#"class="prompt-bar""#).count(), 6);
        // self-contained: nothing fetched, nothing scripted
        for banned in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(banned), "{banned}");
        }
        assert!(html.contains("0192a0b1c2d50000"), "run ids are listed");
    }

    #[test]
    fn full_html_snapshot() {
        insta::assert_snapshot!(fixture_html());
    }

    #[test]
    fn user_text_is_escaped() {
        let evil = "<img src=x onerror=alert(1)>";
        let samples = vec![
            ResultSample {
                latency_ms: 10.0,
                cost_usd: Some(0.1),
                perturbation: None,
                ..ResultSample::new(evil, evil, evil, evil, evil)
            },
            ResultSample {
                latency_ms: 20.0,
                perturbation: Some(evil.into()),
                ..ResultSample::new("\"'&", "b\"", "p", "v", evil)
            },
        ];
        let report = compare(&samples, &CompareOptions::default());
        let html = render_html(
            &report,
            &HtmlOptions {
                title: evil.into(),
                generated_at: Some(evil.into()),
            },
        );
        assert!(!html.contains("<img"));
        assert!(!html.contains("data-backend=\"b\"\""));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn empty_report_renders() {
        let html = render_html(
            &compare(&[], &CompareOptions::default()),
            &HtmlOptions::default(),
        );
        assert!(html.contains("No results to compare."));
        assert!(html.ends_with("</html>\n"));
        assert_eq!(html.matches(r#"class="radar-backend""#).count(), 0);
    }
}
