//! The comparison as a table: rows are metrics, columns are backends, and the best value per
//! metric is flagged. PURE. [`build_table`] gives structured cells (the CLI colours the `best`
//! ones, the HTML report bolds them); [`render_plain`] writes the NO_COLOR / non-terminal form,
//! where a best value carries a `*`.
//!
//! "Best": the highest or lowest value, by the metric's [`Better`]; ties are all best; nothing is
//! marked unless at least two backends have a value (one backend is not a comparison), and
//! metrics that have no better direction (token counts, context use, totals over workloads
//! that may differ) are never marked.

use serde::Serialize;

use super::CompareReport;
use super::format;
use super::metrics::BackendMetrics;

/// Which direction of a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
    /// Informational: never marked.
    Neither,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// Column headers after the metric column: the backends, in column order.
    pub backends: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// "data", "accuracy", "consistency", "robustness", "speed" or "cost".
    pub section: String,
    pub metric: String,
    pub better: Better,
    /// One per backend, in column order.
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// The formatted value ("–" when missing).
    pub text: String,
    /// The raw value the `best` flag was decided on.
    pub value: Option<f64>,
    pub best: bool,
}

/// Builds the table from a report.
pub fn build_table(report: &CompareReport) -> Table {
    let b = &report.backends;
    let mut rows = Vec::new();
    let mut add = |section: &str,
                   metric: String,
                   better: Better,
                   cell: &dyn Fn(&BackendMetrics) -> (Option<f64>, String)| {
        let cells = b
            .iter()
            .map(|m| {
                let (value, text) = cell(m);
                Cell {
                    text,
                    value: value.filter(|v| v.is_finite()),
                    best: false,
                }
            })
            .collect();
        rows.push(mark_best(Row {
            section: section.to_string(),
            metric,
            better,
            cells,
        }));
    };
    use Better::{Higher, Lower, Neither};
    let count = |n: usize| (Some(n as f64), n.to_string());
    let pct = |v: Option<f64>| (v, format::percent(v));

    add("data", "samples".into(), Neither, &|m| count(m.samples));
    add("data", "cases".into(), Neither, &|m| count(m.cases));

    add("accuracy", "pass rate".into(), Higher, &|m| {
        pct(m.accuracy.pass_rate)
    });
    add("accuracy", "mean score".into(), Higher, &|m| {
        pct(m.accuracy.mean_score)
    });
    for prompt in &report.prompts {
        add("accuracy", format!("pass rate · {prompt}"), Higher, &|m| {
            let rate = m
                .accuracy
                .per_prompt
                .iter()
                .find(|p| &p.prompt == prompt)
                .and_then(|p| p.pass_rate);
            pct(rate)
        });
    }

    add("consistency", "verdict agreement".into(), Higher, &|m| {
        pct(m.consistency.verdict_agreement)
    });
    add("consistency", "answer agreement".into(), Higher, &|m| {
        pct(m.consistency.answer_agreement)
    });
    add("consistency", "self-consistency".into(), Higher, &|m| {
        pct(m.consistency.self_consistency)
    });

    add("robustness", "injection pass rate".into(), Higher, &|m| {
        pct(m.robustness.injection_pass_rate)
    });
    add("robustness", "perturbation drop".into(), Lower, &|m| {
        let v = m.robustness.perturbation_drop;
        (v, format::points(v))
    });
    for name in &report.perturbations {
        add("robustness", format!("drop · {name}"), Lower, &|m| {
            let v = m
                .robustness
                .per_perturbation
                .iter()
                .find(|p| &p.perturbation == name)
                .and_then(|p| p.drop);
            (v, format::points(v))
        });
    }

    let ms = |v: Option<f64>| (v, format::millis(v));
    add("speed", "latency p50".into(), Lower, &|m| {
        ms(m.speed.latency_p50_ms)
    });
    add("speed", "latency p95".into(), Lower, &|m| {
        ms(m.speed.latency_p95_ms)
    });
    add("speed", "TTFT p50".into(), Lower, &|m| {
        ms(m.speed.ttft_p50_ms)
    });
    add("speed", "output tokens/s".into(), Higher, &|m| {
        let v = m.speed.output_tokens_per_s;
        (v, format::rate(v))
    });

    add("cost", "cost / 1k cases".into(), Lower, &|m| {
        let v = m.cost.per_1000_cases_usd;
        (v, format::usd(v))
    });
    add("cost", "cost total".into(), Neither, &|m| {
        let v = m.cost.total_usd;
        let mut text = format::usd(v);
        if v.is_some() && m.cost.priced_samples < m.samples {
            // Partial: say so rather than pass a lower bound off as the total.
            text = format!("{text} ({}/{} priced)", m.cost.priced_samples, m.samples);
        }
        (v, text)
    });
    add("cost", "tokens in".into(), Neither, &|m| {
        (Some(m.cost.tokens_in as f64), m.cost.tokens_in.to_string())
    });
    add("cost", "tokens out".into(), Neither, &|m| {
        (
            Some(m.cost.tokens_out as f64),
            m.cost.tokens_out.to_string(),
        )
    });
    add("cost", "context use mean".into(), Neither, &|m| {
        pct(m.cost.context_use_mean)
    });
    add("cost", "context use max".into(), Neither, &|m| {
        pct(m.cost.context_use_max)
    });

    Table {
        backends: b.iter().map(|m| m.backend.clone()).collect(),
        rows,
    }
}

fn mark_best(mut row: Row) -> Row {
    let known: Vec<f64> = row.cells.iter().filter_map(|c| c.value).collect();
    if known.len() < 2 {
        return row;
    }
    let best = match row.better {
        Better::Higher => known.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Better::Lower => known.iter().copied().fold(f64::INFINITY, f64::min),
        Better::Neither => return row,
    };
    for cell in &mut row.cells {
        // Equal up to float noise counts as a tie: 0.8 computed two ways is still 0.8.
        cell.best = cell
            .value
            .is_some_and(|v| (v - best).abs() <= 1e-9 * best.abs().max(1.0));
    }
    row
}

/// Plain text: a header line, one line per section name, metric lines indented, right-aligned
/// values, `*` after a best value, and a legend line. Widths count characters, not bytes.
pub fn render_plain(table: &Table) -> String {
    render(table, None)
}

/// Like [`render_plain`], but each best value is wrapped in `start`..`end` (terminal escape
/// codes) instead of marked with `*`; the legend says so. Widths count the visible text only,
/// so columns line up as in the plain table.
pub fn render_highlighted(table: &Table, start: &str, end: &str) -> String {
    render(table, Some((start, end)))
}

fn render(table: &Table, highlight: Option<(&str, &str)>) -> String {
    let marked = highlight.is_none();
    let text = |c: &Cell| format!("{}{}", c.text, if c.best && marked { " *" } else { "  " });
    let styled = |c: &Cell, padded: String| match highlight {
        Some((start, end)) if c.best => {
            // Padding is on the left; the escape codes go around the visible value only.
            let visible = padded.trim_start().len();
            let (pad, value) = padded.split_at(padded.len() - visible);
            format!("{pad}{start}{}{end}  ", value.trim_end())
        }
        _ => padded,
    };
    let metric_width = table
        .rows
        .iter()
        .map(|r| r.metric.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max("metric".len());
    let widths: Vec<usize> = table
        .backends
        .iter()
        .enumerate()
        .map(|(i, name)| {
            table
                .rows
                .iter()
                .filter_map(|r| r.cells.get(i))
                .map(|c| text(c).chars().count())
                .chain([name.chars().count() + 2])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let pad_left = |s: &str, w: usize| {
        let n = s.chars().count();
        format!("{}{s}", " ".repeat(w.saturating_sub(n)))
    };
    let pad_right = |s: &str, w: usize| {
        let n = s.chars().count();
        format!("{s}{}", " ".repeat(w.saturating_sub(n)))
    };

    let mut out = String::new();
    let mut line = pad_right("metric", metric_width);
    for (name, w) in table.backends.iter().zip(&widths) {
        line.push_str("  ");
        line.push_str(&pad_left(&format!("{name}  "), *w));
    }
    out.push_str(line.trim_end());
    out.push('\n');
    let mut section = "";
    for row in &table.rows {
        if row.section != section {
            section = &row.section;
            out.push_str(section);
            out.push('\n');
        }
        let mut line = pad_right(&format!("  {}", row.metric), metric_width);
        for (cell, w) in row.cells.iter().zip(&widths) {
            line.push_str("  ");
            line.push_str(&styled(cell, pad_left(&text(cell), *w)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(if marked {
        "* best per metric; – no data\n"
    } else {
        "highlighted: best per metric; – no data\n"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::{CompareOptions, ResultSample, compare, fixture::sample_results};
    use super::*;

    fn fixture_table() -> Table {
        build_table(&compare(&sample_results(), &CompareOptions::default()))
    }

    fn row<'a>(t: &'a Table, metric: &str) -> &'a Row {
        t.rows
            .iter()
            .find(|r| r.metric == metric)
            .unwrap_or_else(|| panic!("no row {metric}"))
    }

    fn bests(r: &Row) -> Vec<bool> {
        r.cells.iter().map(|c| c.best).collect()
    }

    #[test]
    fn best_marks() {
        let t = fixture_table();
        assert_eq!(t.backends, ["local", "cloud"]);
        // 0.8 vs 0.8: a tie, both best
        assert_eq!(bests(row(&t, "pass rate")), [true, true]);
        assert_eq!(bests(row(&t, "latency p50")), [false, true]);
        // drop: local +33.3 pp vs cloud +50.0 pp → lower is better
        assert_eq!(bests(row(&t, "perturbation drop")), [true, false]);
        // only cloud has a price: no comparison, no mark
        assert_eq!(bests(row(&t, "cost / 1k cases")), [false, false]);
        assert_eq!(row(&t, "cost / 1k cases").cells[0].text, "–");
        // informational rows are never marked
        assert_eq!(bests(row(&t, "tokens out")), [false, false]);
        assert_eq!(
            row(&t, "cost total").cells[1].text,
            "$0.0116 (10/11 priced)"
        );
        assert_eq!(bests(row(&t, "output tokens/s")), [false, true]);
    }

    #[test]
    fn plain_snapshot() {
        insta::assert_snapshot!(render_plain(&fixture_table()));
    }

    #[test]
    fn highlighted_lines_up_with_plain() {
        let t = fixture_table();
        let plain = render_plain(&t);
        let coloured = render_highlighted(&t, "<b>", "</b>");
        assert!(coloured.contains("<b>80.0%</b>"), "{coloured}");
        // Without the markers every row is as wide as the plain one, minus the `*` marks.
        let stripped = coloured.replace("<b>", "").replace("</b>", "");
        for (c, p) in stripped.lines().zip(plain.lines()).take(t.rows.len()) {
            assert_eq!(c.trim_end(), p.replace(" *", "  ").trim_end());
        }
        assert!(!stripped.contains(" *"));
    }

    #[test]
    fn one_backend_marks_nothing() {
        let samples = vec![ResultSample {
            latency_ms: 10.0,
            ..ResultSample::new("r", "only", "p", "v", "c")
        }];
        let t = build_table(&compare(&samples, &CompareOptions::default()));
        assert!(t.rows.iter().flat_map(|r| &r.cells).all(|c| !c.best));
        let plain = render_plain(&t);
        assert!(!plain.contains(" *"));
    }

    #[test]
    fn empty_table_renders() {
        let t = build_table(&compare(&[], &CompareOptions::default()));
        assert!(t.backends.is_empty());
        let plain = render_plain(&t);
        assert!(plain.starts_with("metric\n"));
    }
}
