//! Drawing: every view and overlay from an immutable [`App`] and a [`Theme`].
//!
//! Nothing here changes state or names a colour; pane positions come from [`super::layout`],
//! the same function the state machine hit-tests mouse clicks with.

use ratatui::Frame;
use ratatui::layout::{Direction, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::canvas::{Canvas, Line as CanvasLine};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Clear, Paragraph, Sparkline, Wrap,
};

use super::app::{
    App, Buffer, CellStatus, CompareRow, Histogram, InputPurpose, Level, ModelsData, ModelsScope,
    Overlay, Pane, View, gutter_width, list_scroll,
};
use super::highlight::{self, Class};
use super::keymap::{Action, Context};
use super::layout::{self, Area};
use super::theme::{Slot, Theme};
use crate::diff::{NumberedLine, Tag};

fn rect(a: Area) -> Rect {
    Rect::new(a.x, a.y, a.w, a.h)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let size = frame.area();
    let panes = layout::panes(size.width, size.height);
    frame.render_widget(Block::default().style(theme.style(Slot::Background)), size);
    if size.width < 20 || size.height < 6 {
        frame.render_widget(
            Paragraph::new("promptdeck: terminal too small").style(theme.style(Slot::Text)),
            size,
        );
        return;
    }
    draw_header(frame, app, theme, panes.header);
    match app.view {
        View::Main => {
            draw_tree(frame, app, theme, panes.tree);
            draw_cases(frame, app, theme, panes.cases);
            draw_editor(frame, app, theme, panes.editor);
            draw_preview(frame, app, theme, panes.preview);
            draw_outputs(frame, app, theme, panes.outputs);
        }
        View::Compare => draw_compare(frame, app, theme, panes.body),
        View::History => draw_history(frame, app, theme, panes.body),
        View::Models => draw_models(frame, app, theme, panes.body),
    }
    draw_status(frame, app, theme, panes.status);
    if let Some(overlay) = &app.overlay {
        draw_overlay(frame, app, theme, overlay, size);
    }
}

fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    let (border, title_style) = if focused {
        (Slot::BorderFocused, Slot::TitleFocused)
    } else {
        (Slot::Border, Slot::Title)
    };
    let title: Line<'a> = title.into();
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(border))
        .title(title.style(theme.style(title_style)))
}

fn draw_header(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let mut spans = vec![Span::styled(" promptdeck ", theme.style(Slot::Header))];
    spans.push(Span::styled(
        format!(" {} ", app.project_name),
        theme.style(Slot::Header),
    ));
    let tabs: Vec<Area> = layout::tab_areas(area)
        .into_iter()
        .filter(|t| t.x >= area.x && t.x + t.w <= area.x + area.w)
        .collect();
    let tabs_x = tabs.first().map_or(area.w, |t| t.x.saturating_sub(area.x));
    if let Some(doc) = &app.doc {
        let file = match doc.active {
            Buffer::Prompt => format!("prompts/{}", doc.file_name),
            Buffer::Tests => format!("prompts/{}", doc.tests_file_name()),
        };
        let marker = if doc.dirty() { " * " } else { "" };
        // A long path gives way from its start, so the unsaved marker always shows.
        let before: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        let room = usize::from(tabs_x.saturating_sub(1)).saturating_sub(before + marker.len() + 1);
        // Without room for the path, the name under prompts/ says the most.
        let file = if file.chars().count() > room {
            file.strip_prefix("prompts/").unwrap_or(&file).to_owned()
        } else {
            file
        };
        spans.push(Span::styled(
            format!(" {}", truncate_start(&file, room)),
            theme.style(Slot::Header),
        ));
        if !marker.is_empty() {
            spans.push(Span::styled(marker, theme.style(Slot::Unsaved)));
        }
    }
    let backends = app.run_backends().join(", ");
    let right = format!(" backend: {backends} ");
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let room = usize::from(tabs_x).saturating_sub(used);
    if right.chars().count() <= room {
        let pad = room - right.chars().count();
        spans.push(Span::styled(" ".repeat(pad), theme.style(Slot::Header)));
        spans.push(Span::styled(right, theme.style(Slot::Header)));
    } else {
        spans.push(Span::styled(" ".repeat(room), theme.style(Slot::Header)));
    }
    frame.render_widget(
        Block::default().style(theme.style(Slot::Header)),
        rect(area),
    );
    // The title gets the room left of the tabs, so a long path never runs under them.
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(theme.style(Slot::Header)),
        rect(Area::new(area.x, area.y, tabs_x.saturating_sub(1), area.h)),
    );
    for (i, tab) in tabs.iter().enumerate() {
        let active = matches!(
            (i, app.view),
            (0, View::Main) | (1, View::Compare) | (2, View::History) | (3, View::Models)
        );
        let slot = if active { Slot::TabActive } else { Slot::Tab };
        frame.render_widget(
            Paragraph::new(format!(" {} ", layout::tab_labels(area.w)[i])).style(theme.style(slot)),
            rect(*tab),
        );
    }
}

fn draw_tree(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let focused = app.focus == Pane::Tree;
    let title = if app.filter.is_empty() {
        " Prompts ".to_owned()
    } else {
        format!(" Prompts /{} ", app.filter)
    };
    let b = block(title, focused, theme);
    let inner = area.inner();
    let visible = app.visible_prompts();
    let scroll = list_scroll(app.tree_selected, usize::from(inner.h));
    let width = usize::from(inner.w);
    let open = app.doc.as_ref().map(|d| d.file_name.as_str());
    let lines: Vec<Line> = visible
        .iter()
        .enumerate()
        .skip(scroll)
        .take(usize::from(inner.h))
        .map(|(i, p)| {
            let name = p.name();
            let (dir, base) = name.rsplit_once('/').map_or(("", name), |(d, b)| (d, b));
            let counts = match p.counts {
                Some((pass, total)) => {
                    format!("{pass}/{total}{}", if pass < total { " x" } else { "" })
                }
                None => String::new(),
            };
            let marker = if Some(p.file_name.as_str()) == open {
                ">"
            } else {
                " "
            };
            let left = if dir.is_empty() {
                format!("{marker}{base}")
            } else {
                format!("{marker}{dir}/{base}")
            };
            let left = truncate(&left, width.saturating_sub(counts.len() + 1));
            let pad = width.saturating_sub(left.chars().count() + counts.chars().count());
            let count_style = match p.counts {
                Some((pass, total)) if pass < total => theme.style(Slot::Fail),
                Some(_) => theme.style(Slot::Pass),
                None => theme.style(Slot::TextDim),
            };
            let mut spans = Vec::new();
            let dir_len = if dir.is_empty() { 1 } else { dir.len() + 2 };
            let (d, b) = split_chars(&left, dir_len.min(left.chars().count()));
            spans.push(Span::styled(d, theme.style(Slot::TextDim)));
            spans.push(Span::styled(b, theme.style(Slot::Text)));
            spans.push(Span::raw(" ".repeat(pad)));
            spans.push(Span::styled(counts, count_style));
            let line = Line::from(spans);
            if i == app.tree_selected {
                line.style(theme.style(Slot::Selection))
            } else {
                line
            }
        })
        .collect();
    let body = if lines.is_empty() {
        Text::styled(
            if app.prompts.is_empty() {
                "no prompts in prompts/"
            } else {
                "no match"
            },
            theme.style(Slot::TextDim),
        )
    } else {
        Text::from(lines)
    };
    frame.render_widget(Paragraph::new(body).block(b), rect(area));
}

fn split_chars(s: &str, n: usize) -> (String, String) {
    let at = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    (s[..at].to_owned(), s[at..].to_owned())
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}

/// `s` cut to `width` characters from the left, with `…` marking the cut.
fn truncate_start(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut t = String::from("…");
    t.extend(s.chars().skip(n - (width - 1)));
    t
}

fn case_mark(app: &App, case: Option<usize>, theme: &Theme) -> Span<'static> {
    let Some(run) = &app.run else {
        return Span::raw("  ");
    };
    let verdicts: Vec<Option<bool>> = run
        .cells
        .iter()
        .filter(|c| c.case == case)
        .map(|c| c.done.as_ref().and_then(|d| d.verdict))
        .collect();
    if verdicts.is_empty() {
        Span::raw("  ")
    } else if verdicts.iter().all(|v| *v == Some(true)) {
        Span::styled("✓ ", theme.style(Slot::Pass))
    } else if verdicts.contains(&Some(false)) {
        Span::styled("✗ ", theme.style(Slot::Fail))
    } else {
        Span::styled("· ", theme.style(Slot::TextDim))
    }
}

fn draw_cases(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let focused = app.focus == Pane::Cases;
    let b = block(format!(" Cases {} ", app.cases.len()), focused, theme);
    let inner = area.inner();
    let width = usize::from(inner.w);
    let selected_row = app.case_selected.map_or(0, |i| i + 1);
    let scroll = list_scroll(selected_row, usize::from(inner.h));
    let mut rows: Vec<Line> = Vec::new();
    let sample = Line::from(vec![
        case_mark(app, None, theme),
        Span::styled("(sample)", theme.style(Slot::TextDim)),
    ]);
    rows.push(sample);
    for case in &app.cases {
        let vars: Vec<String> = case
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace('\n', " ")))
            .collect();
        let label = case.label.trim_matches('"');
        let text = truncate(
            &format!("{label}  {}", vars.join(" ")),
            width.saturating_sub(2),
        );
        let (l, v) = split_chars(&text, label.chars().count().min(text.chars().count()));
        rows.push(Line::from(vec![
            case_mark(app, Some(case.index), theme),
            Span::styled(l, theme.style(Slot::Text)),
            Span::styled(v, theme.style(Slot::TextDim)),
        ]));
    }
    let lines: Vec<Line> = rows
        .into_iter()
        .enumerate()
        .skip(scroll)
        .take(usize::from(inner.h))
        .map(|(i, l)| {
            if i == selected_row {
                l.style(theme.style(Slot::Selection))
            } else {
                l
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(b), rect(area));
}

fn class_slot(class: Class) -> Slot {
    match class {
        Class::Text => Slot::Text,
        Class::FrontMatterFence => Slot::FrontMatterFence,
        Class::YamlKey => Slot::YamlKey,
        Class::FrontMatter => Slot::FrontMatter,
        Class::JinjaTag => Slot::JinjaTag,
        Class::JinjaExpr => Slot::JinjaExpr,
        Class::JinjaComment => Slot::JinjaComment,
        Class::RoleMarker => Slot::RoleMarker,
    }
}

fn draw_editor(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let focused = app.focus == Pane::Editor;
    let Some(doc) = &app.doc else {
        frame.render_widget(
            Paragraph::new("Select a prompt in the tree (Enter opens it).")
                .style(theme.style(Slot::TextDim))
                .block(block(" Editor ", focused, theme)),
            rect(area),
        );
        return;
    };
    let editor = doc.editor();
    let (file, other) = match doc.active {
        Buffer::Prompt => (doc.file_name.clone(), "tests"),
        Buffer::Tests => (doc.tests_file_name(), "prompt"),
    };
    let hint = app.keymap.hint(Context::Global, Action::ToggleTestsFile);
    let wrap = if app.wrap { "" } else { " nowrap" };
    let title = format!(
        " Editor {file} {}:{}{wrap} ({hint} {other}) ",
        editor.row + 1,
        editor.col + 1
    );
    let b = block(title, focused, theme);
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.w == 0 || inner.h == 0 {
        return;
    }
    let gutter = gutter_width(editor.line_count());
    let width = usize::from(inner.w).saturating_sub(gutter).max(1);
    let problem_line = app
        .preview
        .result
        .problem
        .as_ref()
        .filter(|p| p.buffer == doc.active)
        .and_then(|p| p.line);
    let lines = editor.lines();
    let classes = highlight::highlight(lines, doc.active == Buffer::Prompt);
    let search = app.search.to_lowercase();
    let mut out: Vec<Line> = Vec::new();
    let height = usize::from(inner.h);
    for (row, pieces) in classes.iter().enumerate().skip(editor.scroll) {
        if out.len() >= height {
            break;
        }
        let number_style = if problem_line == Some(row + 1) {
            theme.style(Slot::LineNumberError)
        } else {
            theme.style(Slot::LineNumber)
        };
        // One styled cell per char, then chunked at the wrap width.
        let mut cells: Vec<(char, Style)> = pieces
            .iter()
            .flat_map(|p| {
                let style = theme.style(class_slot(p.class));
                p.text.chars().map(move |c| (c, style))
            })
            .collect();
        if !search.is_empty() {
            let lower: Vec<char> = cells.iter().map(|(c, _)| c.to_ascii_lowercase()).collect();
            let q: Vec<char> = search.chars().collect();
            let mut i = 0;
            while i + q.len() <= lower.len() {
                if lower[i..i + q.len()] == q[..] {
                    for cell in &mut cells[i..i + q.len()] {
                        cell.1 = cell.1.patch(theme.style(Slot::SearchMatch));
                    }
                    i += q.len();
                } else {
                    i += 1;
                }
            }
        }
        if focused && row == editor.row {
            if editor.col >= cells.len() {
                cells.push((' ', Style::default()));
            }
            if let Some(cell) = cells.get_mut(editor.col) {
                cell.1 = cell.1.patch(theme.style(Slot::Cursor));
            }
        }
        let chunks: Vec<&[(char, Style)]> = if cells.is_empty() {
            vec![&[][..]]
        } else if app.wrap {
            cells.chunks(width).collect()
        } else {
            // Without wrap, keep the cursor's part of a long line in view.
            let start = if row == editor.row && editor.col >= width {
                editor.col + 1 - width
            } else {
                0
            };
            vec![&cells[start.min(cells.len())..(start + width).min(cells.len())]]
        };
        for (k, chunk) in chunks.iter().enumerate() {
            if out.len() >= height {
                break;
            }
            let mark = if problem_line == Some(row + 1) {
                "!"
            } else {
                " "
            };
            let number = if k == 0 {
                format!("{:>w$}{mark}", row + 1, w = gutter - 2)
            } else {
                " ".repeat(gutter - 1)
            };
            let mut spans = vec![Span::styled(number, number_style), Span::raw(" ")];
            let mut run = String::new();
            let mut run_style = None;
            for (c, style) in chunk.iter() {
                if run_style != Some(*style) && !run.is_empty() {
                    spans.push(Span::styled(
                        std::mem::take(&mut run),
                        run_style.unwrap_or_default(),
                    ));
                }
                run_style = Some(*style);
                run.push(*c);
            }
            if !run.is_empty() {
                spans.push(Span::styled(run, run_style.unwrap_or_default()));
            }
            out.push(Line::from(spans));
        }
    }
    frame.render_widget(Paragraph::new(out), rect(inner));
}

fn draw_preview(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let focused = app.focus == Pane::Preview;
    let case = match app.case_selected.and_then(|i| app.cases.get(i)) {
        Some(c) => format!(
            " case {}/{} {}",
            app.case_selected.map_or(0, |i| i + 1),
            app.cases.len(),
            c.label
        ),
        None => " sample".to_owned(),
    };
    let pending = if app.preview.pending { " …" } else { "" };
    let b = block(format!(" Preview{case}{pending} "), focused, theme);
    let result = &app.preview.result;
    let mut lines: Vec<Line> = Vec::new();
    if let Some(problem) = &result.problem {
        let at = problem
            .line
            .map(|l| format!("line {l}: "))
            .unwrap_or_default();
        let file = match problem.buffer {
            Buffer::Prompt => "",
            Buffer::Tests => "tests file ",
        };
        lines.push(Line::styled(
            format!("error: {file}{at}{}", problem.message),
            theme.style(Slot::Error),
        ));
        lines.push(Line::raw(""));
    }
    for warning in &result.warnings {
        lines.push(Line::styled(
            format!("warning: {warning}"),
            theme.style(Slot::Warning),
        ));
    }
    for (role, content) in &result.messages {
        lines.push(Line::styled(role.clone(), theme.style(Slot::RoleMarker)));
        for l in content.lines() {
            lines.push(Line::styled(format!("  {l}"), theme.style(Slot::Text)));
        }
    }
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.h == 0 {
        return;
    }
    let (body, foot) = if inner.h > 2 {
        (
            Area::new(inner.x, inner.y, inner.w, inner.h - 1),
            Some(Area::new(inner.x, inner.y + inner.h - 1, inner.w, 1)),
        )
    } else {
        (inner, None)
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(app.preview.scroll).unwrap_or(u16::MAX), 0)),
        rect(body),
    );
    if let (Some(foot), Some(tokens)) = (foot, result.tokens) {
        let approx = if tokens.approximate { "~" } else { "" };
        let text = match tokens.context {
            Some(ctx) if ctx > 0 => format!(
                "{approx}{} tokens, {:.0}% of {ctx}",
                tokens.count,
                tokens.count as f64 * 100.0 / ctx as f64
            ),
            _ => format!("{approx}{} tokens", tokens.count),
        };
        frame.render_widget(
            Paragraph::new(text).style(theme.style(Slot::TextDim)),
            rect(foot),
        );
    }
}

fn draw_outputs(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let focused = app.focus == Pane::Outputs;
    let cells = app.visible_cells();
    let progress = app
        .run
        .as_ref()
        .map(|r| format!(" {}/{} done", r.done_count(), r.cells.len()))
        .unwrap_or_default();
    let b = block(
        format!(" Outputs{progress} · {} sample(s) ", app.samples),
        focused,
        theme,
    );
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.w == 0 || inner.h == 0 {
        return;
    }
    if cells.is_empty() {
        let run = app.keymap.hint(Context::Global, Action::Run);
        let backends = app.keymap.hint(Context::Global, Action::ChooseBackends);
        frame.render_widget(
            Paragraph::new(format!(
                "{run} runs the selected case on {}; {backends} chooses backends; +/- samples (in this pane)",
                app.run_backends().join(", ")
            ))
            .style(theme.style(Slot::TextDim))
            .wrap(Wrap { trim: true }),
            rect(inner),
        );
        return;
    }
    // Self-consistency: the vote over the finished samples, as a bar chart above the columns.
    let inner = match app.votes() {
        Some(vote) if inner.h >= 8 => {
            let rows = (vote.distribution.len().min(4) + 1) as u16;
            let chart = Area::new(inner.x, inner.y, inner.w, rows);
            let max = vote.distribution.first().map_or(1, |(_, c)| *c).max(1);
            let label_w = vote
                .distribution
                .iter()
                .map(|(a, _)| a.chars().count())
                .max()
                .unwrap_or(0)
                .clamp(6, 16);
            let bar_room = usize::from(inner.w).saturating_sub(label_w + 8).max(1);
            let mut lines = vec![Line::styled(
                format!(
                    "vote: {} ({:.0}% agree)",
                    vote.answer.as_deref().unwrap_or("no answer"),
                    vote.agreement * 100.0
                ),
                theme.style(Slot::TitleFocused),
            )];
            for (answer, count) in vote.distribution.iter().take(4) {
                let bar = "█".repeat((count * bar_room).div_ceil(max).min(bar_room));
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{:>label_w$} ", truncate(answer, label_w)),
                        theme.style(Slot::Text),
                    ),
                    Span::styled(bar, theme.style(Slot::Chart)),
                    Span::styled(format!(" {count}"), theme.style(Slot::TextDim)),
                ]));
            }
            frame.render_widget(Paragraph::new(lines), rect(chart));
            Area::new(inner.x, inner.y + rows, inner.w, inner.h - rows)
        }
        _ => inner,
    };
    let n = cells.len().min(usize::from(inner.w / 12).max(1));
    let col_w = inner.w / n as u16;
    let samples = app.run.as_ref().map_or(1, |r| r.samples);
    let scroll = app.run.as_ref().map_or(0, |r| r.scroll);
    for (i, cell) in cells.iter().take(n).enumerate() {
        let x = inner.x + col_w * i as u16;
        let w = if i + 1 == n {
            inner.w - col_w * i as u16
        } else {
            col_w.saturating_sub(1)
        };
        let col = Area::new(x, inner.y, w, inner.h);
        let (status, status_slot) = match &cell.status {
            CellStatus::Waiting => ("waiting".to_owned(), Slot::TextDim),
            CellStatus::Streaming => ("streaming…".to_owned(), Slot::Streaming),
            CellStatus::Done => match cell.done.as_ref().and_then(|d| d.verdict) {
                Some(true) => ("PASS".to_owned(), Slot::Pass),
                Some(false) => ("FAIL".to_owned(), Slot::Fail),
                None => ("done".to_owned(), Slot::Text),
            },
            CellStatus::Failed(_) => ("error".to_owned(), Slot::Error),
            CellStatus::Cancelled => ("cancelled".to_owned(), Slot::Warning),
        };
        let mut foot: Vec<Line> = Vec::new();
        if let CellStatus::Failed(e) = &cell.status {
            foot.push(Line::styled(e.clone(), theme.style(Slot::Error)));
        }
        if let Some(done) = &cell.done {
            // Numbers first, then one row per assertion: the footer must fit short panes.
            let cost = done
                .cost
                .filter(|c| *c > 0.0)
                .map(|c| format!(" · ${c:.4}"))
                .unwrap_or_default();
            let cached = if done.cached { " · cached" } else { "" };
            foot.push(Line::styled(
                format!(
                    "{:.1} s · {} in {} out{cost}{cached}",
                    done.latency_ms as f64 / 1000.0,
                    done.tokens_in,
                    done.tokens_out
                ),
                theme.style(Slot::TextDim),
            ));
            for a in &done.assertions {
                let (mark, slot) = if a.pass {
                    ("✓", Slot::Pass)
                } else {
                    ("✗", Slot::Fail)
                };
                let head = format!("{mark} {} ", a.assertion);
                let room = usize::from(col.w).saturating_sub(head.chars().count());
                foot.push(Line::from(vec![
                    Span::styled(head, theme.style(slot)),
                    Span::styled(truncate(&a.reason, room), theme.style(Slot::TextDim)),
                ]));
            }
            if done.deferred > 0 {
                foot.push(Line::styled(
                    truncate(
                        &format!("{} assertion(s) left to promptdeck test", done.deferred),
                        usize::from(col.w),
                    ),
                    theme.style(Slot::TextDim),
                ));
            }
        }
        let foot_h = (foot.len() as u16)
            .min(col.h.saturating_sub(2) / 2 + 1)
            .min(col.h.saturating_sub(1));
        let head = Line::from(vec![
            Span::styled(
                format!("[{}] ", cell.title(samples)),
                theme.style(Slot::TitleFocused),
            ),
            Span::styled(status, theme.style(status_slot)),
        ]);
        frame.render_widget(
            Paragraph::new(head),
            rect(Area::new(col.x, col.y, col.w, 1.min(col.h))),
        );
        let text_h = col.h.saturating_sub(1 + foot_h);
        // Until the user scrolls, follow the tail of a long answer as it streams.
        let offset = if scroll == 0 {
            wrapped_height(&cell.text, usize::from(col.w)).saturating_sub(usize::from(text_h))
        } else {
            scroll
        };
        frame.render_widget(
            Paragraph::new(cell.text.as_str())
                .style(theme.style(Slot::Text))
                .wrap(Wrap { trim: false })
                .scroll((u16::try_from(offset).unwrap_or(u16::MAX), 0)),
            rect(Area::new(col.x, col.y + 1.min(col.h), col.w, text_h)),
        );
        if foot_h > 0 {
            frame.render_widget(
                Paragraph::new(foot),
                rect(Area::new(col.x, col.y + col.h - foot_h, col.w, foot_h)),
            );
        }
    }
}

/// Rows a text takes when word-wrapped at `width`, greedily as ratatui's `Wrap` does (words
/// longer than a row are broken).
fn wrapped_height(text: &str, width: usize) -> usize {
    let width = width.max(1);
    text.split('\n')
        .map(|line| {
            let (mut rows, mut used) = (1, 0);
            for word in line.split(' ') {
                let w = word.chars().count();
                let need = if used == 0 { w } else { used + 1 + w };
                if need <= width {
                    used = need;
                } else if w <= width {
                    rows += 1;
                    used = w;
                } else {
                    rows += usize::from(used > 0) + (w - 1) / width;
                    used = (w - 1) % width + 1;
                }
            }
            rows
        })
        .sum()
}

fn numbered_spans(side: Option<&NumberedLine>, theme: &Theme, width: usize) -> Vec<Span<'static>> {
    let Some(line) = side else {
        return vec![Span::raw(" ".repeat(width))];
    };
    let (base, word) = match line.tag {
        Tag::Equal => (Slot::Text, Slot::Text),
        Tag::Delete => (Slot::DiffRemoved, Slot::DiffRemovedWord),
        Tag::Insert => (Slot::DiffAdded, Slot::DiffAddedWord),
    };
    // A sign as well as a colour, so changes read without colour too.
    let sign = match line.tag {
        Tag::Equal => ' ',
        Tag::Delete => '-',
        Tag::Insert => '+',
    };
    let mut spans = vec![
        Span::styled(format!("{:>4}", line.number), theme.style(Slot::LineNumber)),
        Span::styled(format!("{sign} "), theme.style(base)),
    ];
    let mut used = 6;
    for s in &line.spans {
        if used >= width {
            break;
        }
        let text = truncate(&s.text, width - used);
        used += text.chars().count();
        let slot = if s.emphasized { word } else { base };
        spans.push(Span::styled(text, theme.style(slot)));
    }
    if used < width {
        spans.push(Span::styled(" ".repeat(width - used), theme.style(base)));
    }
    spans
}

fn draw_compare(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let Some(c) = &app.compare else {
        frame.render_widget(
            Paragraph::new(
                "Nothing to compare: run on two backends or samples, or pick versions in history.",
            )
            .style(theme.style(Slot::TextDim))
            .block(block(" Compare ", true, theme)),
            rect(area),
        );
        return;
    };
    let next = app.keymap.hint(Context::Compare, Action::NextChange);
    let inline = app.keymap.hint(Context::Compare, Action::ToggleInline);
    let title = format!(
        " Compare {} ↔ {} · {} change(s) · {next} next · {inline} {} ",
        c.left_title,
        c.right_title,
        c.changes.len(),
        if c.inline { "side by side" } else { "inline" }
    );
    let b = block(title, true, theme);
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    let height = usize::from(inner.h);
    let width = usize::from(inner.w);
    let mut lines: Vec<Line> = Vec::new();
    if c.inline {
        for row in c.rows.iter().skip(c.scroll) {
            if lines.len() >= height {
                break;
            }
            match row {
                CompareRow::File(name) => {
                    lines.push(Line::styled(name.clone(), theme.style(Slot::DiffHeader)))
                }
                CompareRow::Line(r) => {
                    let same =
                        r.left.as_ref().map(|l| &l.spans) == r.right.as_ref().map(|l| &l.spans);
                    if same {
                        lines.push(Line::from(numbered_spans(r.left.as_ref(), theme, width)));
                    } else {
                        if r.left.is_some() {
                            lines.push(Line::from(numbered_spans(r.left.as_ref(), theme, width)));
                        }
                        if r.right.is_some() && lines.len() < height {
                            lines.push(Line::from(numbered_spans(r.right.as_ref(), theme, width)));
                        }
                    }
                }
            }
        }
    } else {
        let half = width.saturating_sub(1) / 2;
        lines.push(Line::from(vec![
            Span::styled(
                truncate(&format!("{:<half$}", c.left_title), half),
                theme.style(Slot::DiffHeader),
            ),
            Span::styled("│", theme.style(Slot::Border)),
            Span::styled(
                truncate(&c.right_title, half),
                theme.style(Slot::DiffHeader),
            ),
        ]));
        for row in c.rows.iter().skip(c.scroll).take(height.saturating_sub(1)) {
            match row {
                CompareRow::File(name) => {
                    lines.push(Line::styled(name.clone(), theme.style(Slot::DiffHeader)))
                }
                CompareRow::Line(r) => {
                    let mut spans = numbered_spans(r.left.as_ref(), theme, half);
                    spans.push(Span::styled("│", theme.style(Slot::Border)));
                    spans.extend(numbered_spans(
                        r.right.as_ref(),
                        theme,
                        width.saturating_sub(half + 1),
                    ));
                    lines.push(Line::from(spans));
                }
            }
        }
    }
    frame.render_widget(Paragraph::new(lines), rect(inner));
}

fn draw_history(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let h = &app.history;
    let mark = app.keymap.hint(Context::History, Action::Mark);
    let cmp = app.keymap.hint(Context::History, Action::CompareVersions);
    let restore = app.keymap.hint(Context::History, Action::Restore);
    let label = app.keymap.hint(Context::History, Action::SetLabel);
    let title = format!(
        " History {} · {} version(s) · {mark} mark · {cmp} compare · {restore} restore · {label} label ",
        h.prompt,
        h.rows.len()
    );
    let b = block(title, true, theme);
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.h == 0 {
        return;
    }
    if h.loading && h.rows.is_empty() {
        frame.render_widget(
            Paragraph::new("loading history…").style(theme.style(Slot::TextDim)),
            rect(inner),
        );
        return;
    }
    // A pass-rate chart over versions, oldest on the left, when there is room.
    let chart_h: u16 = if inner.h >= 14 { 4 } else { 0 };
    let table = Area::new(inner.x, inner.y, inner.w, inner.h - chart_h);
    let height = usize::from(table.h.saturating_sub(1));
    let scroll = list_scroll(h.selected, height);
    let mut lines = vec![Line::styled(
        format!(
            "  {:<9} {:<16} {:>6}  {:<16} message",
            "version", "date", "pass", "labels"
        ),
        theme.style(Slot::TextDim),
    )];
    for (i, row) in h.rows.iter().enumerate().skip(scroll).take(height) {
        let marked = if h.marked == Some(i) { "◆ " } else { "  " };
        let rate = row
            .pass_rate
            .map(|r| format!("{:.0}%", r * 100.0))
            .unwrap_or_else(|| "-".to_owned());
        let labels = truncate(&row.labels.join(","), 16);
        let line = Line::from(vec![
            Span::styled(marked, theme.style(Slot::Label)),
            Span::styled(format!("{:<9} ", row.short), theme.style(Slot::Text)),
            Span::styled(format!("{:<16} ", row.date), theme.style(Slot::TextDim)),
            Span::styled(
                format!("{rate:>6}  "),
                theme.style(match row.pass_rate {
                    Some(r) if r >= 1.0 => Slot::Pass,
                    Some(_) => Slot::Fail,
                    None => Slot::TextDim,
                }),
            ),
            Span::styled(format!("{labels:<16} "), theme.style(Slot::Label)),
            Span::styled(row.message.clone(), theme.style(Slot::Text)),
        ]);
        lines.push(if i == h.selected {
            line.style(theme.style(Slot::Selection))
        } else {
            line
        });
    }
    frame.render_widget(Paragraph::new(lines), rect(table));
    if chart_h > 0 {
        let data: Vec<u64> = h
            .rows
            .iter()
            .rev()
            .map(|r| r.pass_rate.map_or(0, |p| (p * 100.0).round() as u64))
            .collect();
        let w = usize::from(inner.w);
        let shown = &data[data.len().saturating_sub(w)..];
        let chart_area = Area::new(inner.x, inner.y + inner.h - chart_h, inner.w, chart_h);
        frame.render_widget(
            Sparkline::default()
                .block(
                    Block::default()
                        .borders(Borders::TOP)
                        .border_style(theme.style(Slot::Border))
                        .title(Line::styled(
                            " pass rate by version, oldest → newest ",
                            theme.style(Slot::Title),
                        )),
                )
                .data(shown)
                .max(100)
                .style(theme.style(Slot::Chart)),
            rect(chart_area),
        );
    }
}

fn draw_status(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let hints = [
        (Action::Help, "help"),
        (Action::Save, "save"),
        (Action::Run, "run"),
        (Action::ViewCompare, "diff"),
        (Action::ViewHistory, "history"),
        (Action::CommandPalette, "commands"),
        (Action::Quit, "quit"),
    ];
    let (message, slot) = match &app.status {
        Some((Level::Error, m)) => (m.clone(), Slot::StatusError),
        Some((Level::Info, m)) => (m.clone(), Slot::Status),
        None => (String::new(), Slot::Status),
    };
    let width = usize::from(area.w);
    let progress = match &app.run {
        Some(r) if !r.finished => format!(" run {}/{} ", r.done_count(), r.cells.len()),
        _ => String::new(),
    };
    let right = truncate(&format!("{message}{progress} "), width);
    // The message and progress first; key hints fill what room is left, in order.
    let mut room = width.saturating_sub(right.chars().count() + 1);
    let mut spans = Vec::new();
    for (action, word) in hints {
        let key = app.keymap.hint(app.context(), action);
        let len = key.chars().count() + word.len() + 2;
        if key.is_empty() || len > room {
            continue;
        }
        room -= len;
        spans.push(Span::styled(format!(" {key}"), theme.style(Slot::KeyHint)));
        spans.push(Span::styled(format!(" {word}"), theme.style(Slot::Status)));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let pad = width.saturating_sub(used + right.chars().count());
    spans.push(Span::styled(" ".repeat(pad), theme.style(Slot::Status)));
    spans.push(Span::styled(right, theme.style(slot)));
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(theme.style(Slot::Status)),
        rect(area),
    );
}

fn centered(size: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(size.width.saturating_sub(2)).max(1);
    let h = h.min(size.height.saturating_sub(2)).max(1);
    Rect::new(
        size.x + (size.width.saturating_sub(w)) / 2,
        size.y + (size.height.saturating_sub(h)) / 2,
        w,
        h,
    )
}

fn draw_overlay(frame: &mut Frame, app: &App, theme: &Theme, overlay: &Overlay, size: Rect) {
    let panel = |title: String| {
        Block::default()
            .borders(Borders::ALL)
            .border_style(theme.style(Slot::BorderFocused))
            .title(Line::styled(title, theme.style(Slot::TitleFocused)))
            .style(theme.style(Slot::Overlay))
    };
    match overlay {
        Overlay::Help { scroll } => {
            let area = centered(size, 90, size.height.saturating_sub(4));
            let mut lines = Vec::new();
            let mut last = None;
            for (context, keys, action) in app.keymap.rows() {
                if last != Some(context) {
                    lines.push(Line::styled(
                        format!("{} keys", context.name()),
                        theme.style(Slot::DiffHeader),
                    ));
                    last = Some(context);
                }
                let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("  {:<18}", keys.join(" ")),
                        theme.style(Slot::KeyHint),
                    ),
                    Span::styled(action.help(), theme.style(Slot::Text)),
                ]));
            }
            lines.push(Line::styled(
                "editor: type to edit · tree: type to filter · mouse: click to focus or select, wheel to scroll",
                theme.style(Slot::TextDim),
            ));
            frame.render_widget(Clear, area);
            frame.render_widget(
                Paragraph::new(lines)
                    .block(panel(" Help · Esc closes ".to_owned()))
                    .scroll((u16::try_from(*scroll).unwrap_or(u16::MAX), 0)),
                area,
            );
        }
        Overlay::Palette { query, selected } => {
            let area = centered(size, 70, 16);
            let matches = app.palette_matches(query);
            let inner_h = usize::from(area.height.saturating_sub(3));
            let scroll = list_scroll(*selected, inner_h);
            let mut lines = vec![Line::styled(format!("> {query}"), theme.style(Slot::Text))];
            for (i, action) in matches.iter().enumerate().skip(scroll).take(inner_h) {
                let key = app.keymap.hint(app.context(), *action);
                let line = Line::from(vec![
                    Span::styled(format!("{:<18}", action.name()), theme.style(Slot::Text)),
                    Span::styled(format!("{key:<8}"), theme.style(Slot::KeyHint)),
                    Span::styled(action.help(), theme.style(Slot::TextDim)),
                ]);
                lines.push(if i == *selected {
                    line.style(theme.style(Slot::Selection))
                } else {
                    line
                });
            }
            frame.render_widget(Clear, area);
            frame.render_widget(
                Paragraph::new(lines).block(panel(" Commands ".to_owned())),
                area,
            );
        }
        Overlay::ConfirmQuit => {
            let area = centered(size, 52, 5);
            frame.render_widget(Clear, area);
            frame.render_widget(
                Paragraph::new(vec![
                    Line::styled("There are unsaved changes.", theme.style(Slot::Warning)),
                    Line::styled(
                        "y quit without saving · s save · other keys stay",
                        theme.style(Slot::Text),
                    ),
                ])
                .block(panel(" Quit? ".to_owned())),
                area,
            );
        }
        Overlay::Backends { selected } => {
            let area = centered(size, 50, app.backends.len() as u16 + 4);
            let chosen = app.run_backends();
            let mut lines: Vec<Line> = app
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let mark = if chosen.contains(b) { "[x]" } else { "[ ]" };
                    let line = Line::styled(format!("{mark} {b}"), theme.style(Slot::Text));
                    if i == *selected {
                        line.style(theme.style(Slot::Selection))
                    } else {
                        line
                    }
                })
                .collect();
            lines.push(Line::styled(
                "Space toggles · Enter done",
                theme.style(Slot::TextDim),
            ));
            frame.render_widget(Clear, area);
            frame.render_widget(
                Paragraph::new(lines).block(panel(" Backends ".to_owned())),
                area,
            );
        }
        Overlay::Input { purpose, text } => {
            let title = match purpose {
                InputPurpose::Search => " Search ".to_owned(),
                InputPurpose::Label { .. } => " Label name (e.g. prod) ".to_owned(),
            };
            let area = centered(size, 50, 3);
            frame.render_widget(Clear, area);
            frame.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled(text.clone(), theme.style(Slot::Text)),
                    Span::styled(" ", theme.style(Slot::Cursor)),
                ]))
                .block(panel(title)),
                area,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Models view: `compare`'s radar and bar charts from stored runs.

/// The theme slot of the i-th backend's series (colours repeat after four).
fn series_slot(i: usize) -> Slot {
    [Slot::Series1, Slot::Series2, Slot::Series3, Slot::Series4][i % 4]
}

fn draw_models(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let m = &app.models;
    let scope = match m.scope {
        ModelsScope::Prompt => m.prompt.clone(),
        ModelsScope::Library => "library".to_owned(),
    };
    let hint = |a: Action| app.keymap.hint(Context::Models, a);
    let other = match m.scope {
        ModelsScope::Prompt => "library",
        ModelsScope::Library => "this prompt",
    };
    let running = match (&app.run, m.run) {
        (Some(r), Some(id)) if r.id == id && !r.finished => {
            format!(" · running {}/{}…", r.done_count(), r.cells.len())
        }
        // The charts shown stay until the new ones arrive; say that they are being replaced.
        _ if m.loading && m.data.is_some() => " · loading…".to_owned(),
        _ => String::new(),
    };
    let title = format!(
        " Models {scope} · {} · {} sample(s){running} · {} run missing · {} {other} ",
        m.backends.join(" vs "),
        m.samples,
        hint(Action::RunMissing),
        hint(Action::ToggleScope),
    );
    let b = block(
        truncate(&title, usize::from(area.w.saturating_sub(2))),
        true,
        theme,
    );
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.h < 2 || inner.w < 12 {
        return;
    }
    let dim = theme.style(Slot::TextDim);
    let Some(data) = &m.data else {
        let text = if m.loading {
            "loading stored runs…"
        } else {
            "no comparison loaded"
        };
        frame.render_widget(Paragraph::new(text).style(dim), rect(inner));
        return;
    };
    if data.samples == 0 {
        draw_models_empty(frame, app, theme, inner);
        return;
    }
    // Radar and legend above, bars below; the last line says where the numbers come from.
    let footer = Area::new(inner.x, inner.y + inner.h - 1, inner.w, 1);
    let charts_h = inner.h - 1;
    let top_h = (charts_h * 11 / 20).max(charts_h.min(4));
    let bottom_h = charts_h - top_h;
    // Braille dots are about square, so a round radar is ~2.3 cells wide per row; but never
    // so narrow that the axis labels run into each other.
    let radar_w = (inner.w / 2)
        .min(top_h.saturating_mul(23) / 10)
        .max((inner.w / 2).min(30));
    let radar = Area::new(inner.x, inner.y, radar_w, top_h);
    let legend = Area::new(inner.x + radar_w, inner.y, inner.w - radar_w, top_h);
    draw_radar(frame, theme, data, radar);
    draw_legend(frame, app, theme, data, legend);
    if bottom_h >= 3 {
        let half = inner.w / 2;
        let bars = Area::new(inner.x, inner.y + top_h, half, bottom_h);
        let hist = Area::new(inner.x + half, inner.y + top_h, inner.w - half, bottom_h);
        draw_pass_rates(frame, app, theme, data, bars);
        draw_histogram(frame, app, theme, data, hist);
    }
    let missing = data.missing.len();
    let mut text = format!(
        "{} result(s) · {} prompt(s) · runs {}",
        data.samples,
        data.charts.pass_rate.groups.len(),
        data.run_ids.join(", ")
    );
    if missing > 0 {
        text = format!("{missing} without a stored run · {text}");
    }
    if !data.skipped.is_empty() {
        text.push_str(&format!(
            " · {} prompt(s) skipped (no cases or errors)",
            data.skipped.len()
        ));
    }
    frame.render_widget(
        Paragraph::new(truncate(&text, usize::from(footer.w))).style(dim),
        rect(footer),
    );
}

fn draw_models_empty(frame: &mut Frame, app: &App, theme: &Theme, area: Area) {
    let m = &app.models;
    let run = app.keymap.hint(Context::Models, Action::RunMissing);
    let scope = app.keymap.hint(Context::Models, Action::ToggleScope);
    let backends = m.backends.join(", ");
    let mut lines = vec![Line::styled(
        match m.scope {
            ModelsScope::Prompt => format!(
                "No stored runs of the current version of {} on {backends}.",
                m.prompt
            ),
            ModelsScope::Library => {
                format!("No stored runs of the current versions of the library on {backends}.")
            }
        },
        theme.style(Slot::Text),
    )];
    lines.push(Line::raw(""));
    let cases = app.cases.len();
    lines.push(Line::from(vec![
        Span::raw("Press "),
        Span::styled(run, theme.style(Slot::KeyHint)),
        Span::raw(format!(
            " to run {}'s {cases} case(s) on them, {} sample(s) each (stored like `promptdeck test`'s);",
            m.prompt, m.samples
        )),
    ]));
    lines.push(Line::raw(format!(
        "or: promptdeck compare {}--backend {} (--reuse reads what is stored).",
        match m.scope {
            ModelsScope::Prompt => format!("{} ", m.prompt),
            ModelsScope::Library => String::new(),
        },
        m.backends.join(",")
    )));
    lines.push(Line::from(vec![
        Span::styled(scope, theme.style(Slot::KeyHint)),
        Span::raw(" compares on the whole library or the open prompt; ^B chooses the backends."),
    ]));
    if !m.data.as_ref().is_none_or(|d| d.skipped.is_empty()) {
        lines.push(Line::raw(""));
        for (prompt, why) in m.data.iter().flat_map(|d| d.skipped.iter()) {
            lines.push(Line::styled(
                format!("skipped {prompt}: {why}"),
                theme.style(Slot::TextDim),
            ));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .style(theme.style(Slot::Text))
            .wrap(Wrap { trim: false }),
        rect(area),
    );
}

/// The colour a canvas shape takes from a slot (canvas shapes carry a colour, not a style).
fn slot_colour(theme: &Theme, slot: Slot) -> Color {
    theme.style(slot).fg.unwrap_or(Color::Reset)
}

fn draw_radar(frame: &mut Frame, theme: &Theme, data: &ModelsData, area: Area) {
    let b = block(" radar · 1 = best ", false, theme);
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.w < 4 || inner.h < 3 {
        return;
    }
    let radar = &data.charts.radar;
    let (xr, yr) = (1.45, 1.2);
    let grid = slot_colour(theme, Slot::Border);
    let label_style = theme.style(Slot::TextDim);
    // One cell in canvas units, to centre labels on their axis tips.
    let cell_x = 2.0 * xr / f64::from(inner.w.saturating_sub(1).max(1));
    let canvas = Canvas::default()
        .marker(Marker::Braille)
        .x_bounds([-xr, xr])
        .y_bounds([-yr, yr])
        .paint(|ctx| {
            let tips: Vec<(f64, f64)> = radar.axes.iter().map(|a| a.tip).collect();
            for ring in [0.5, 1.0] {
                for (i, &(x1, y1)) in tips.iter().enumerate() {
                    let (x2, y2) = tips[(i + 1) % tips.len()];
                    ctx.draw(&CanvasLine::new(
                        x1 * ring,
                        y1 * ring,
                        x2 * ring,
                        y2 * ring,
                        grid,
                    ));
                }
            }
            for &(x, y) in &tips {
                ctx.draw(&CanvasLine::new(0.0, 0.0, x, y, grid));
            }
            ctx.layer();
            for (i, series) in radar.series.iter().enumerate() {
                // A backend with no data at all would be a dot at the centre: leave it out.
                if series.points.iter().all(|p| p.value.is_none()) {
                    continue;
                }
                let colour = slot_colour(theme, series_slot(i));
                let v = series.vertices();
                for (k, &(x1, y1)) in v.iter().enumerate() {
                    let (x2, y2) = v[(k + 1) % v.len()];
                    ctx.draw(&CanvasLine::new(x1, y1, x2, y2, colour));
                }
            }
            for axis in &radar.axes {
                let (x, y) = axis.tip;
                let name = if inner.w < 36 {
                    short_axis_name(&axis.name)
                } else {
                    axis.name.as_str()
                };
                let n = name.chars().count() as f64;
                let lx = (x * 1.08 - n * cell_x / 2.0 + x * n * cell_x / 2.0)
                    .clamp(-xr, (xr - n * cell_x).max(-xr));
                let ly = (y * 1.1).clamp(-yr, yr);
                ctx.print(lx, ly, Span::styled(name.to_owned(), label_style));
            }
        });
    frame.render_widget(canvas, rect(inner));
}

/// Axis names for a small radar, where the full ones would overlap.
fn short_axis_name(name: &str) -> &str {
    match name {
        "accuracy" => "acc",
        "consistency" => "cons",
        "robustness" => "rob",
        other => other,
    }
}

fn draw_legend(frame: &mut Frame, app: &App, theme: &Theme, data: &ModelsData, area: Area) {
    let b = block(" legend · raw values ", false, theme);
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.w < 8 || inner.h == 0 {
        return;
    }
    let radar = &data.charts.radar;
    let n = radar.series.len().max(1);
    let name_w = 12usize.min(usize::from(inner.w) / 3);
    let col_w = (usize::from(inner.w).saturating_sub(name_w) / n).max(4);
    let cell = |text: &str, w: usize| format!("{:<w$}", truncate(text, w.saturating_sub(1)));
    let mut lines = Vec::new();
    let mut header = vec![Span::raw(" ".repeat(name_w))];
    for (i, s) in radar.series.iter().enumerate() {
        header.push(Span::styled(
            cell(&format!("■ {}", s.backend), col_w),
            theme.style(series_slot(i)).add_modifier(Modifier::BOLD),
        ));
    }
    lines.push(Line::from(header));
    for (a, axis) in radar.axes.iter().enumerate() {
        let mut spans = vec![Span::styled(
            cell(&axis.name, name_w),
            theme.style(Slot::TextDim),
        )];
        for s in &radar.series {
            let raw = s.points.get(a).map_or("", |p| p.raw.as_str());
            let raw = if raw.chars().count() < col_w {
                raw.to_owned()
            } else {
                compact_raw(raw)
            };
            spans.push(Span::styled(cell(&raw, col_w), theme.style(Slot::Text)));
        }
        lines.push(Line::from(spans));
    }
    // Which columns are empty, and why: nothing stored for this version yet.
    let missing: Vec<String> = match app.models.scope {
        ModelsScope::Prompt => app.models.missing_for(&app.models.prompt),
        ModelsScope::Library => Vec::new(),
    };
    if !missing.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::styled(
                format!("no stored run: {} · ", missing.join(", ")),
                theme.style(Slot::Warning),
            ),
            Span::styled(
                app.keymap.hint(Context::Models, Action::RunMissing),
                theme.style(Slot::KeyHint),
            ),
            Span::styled(" runs it", theme.style(Slot::Warning)),
        ]));
    } else if app.models.scope == ModelsScope::Library && !data.missing.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            format!(
                "{} prompt × backend pair(s) without a stored run",
                data.missing.len()
            ),
            theme.style(Slot::Warning),
        ));
    }
    // How each raw value became 0..1, where there is room: min/max axes are relative.
    lines.push(Line::raw(""));
    for axis in &radar.axes {
        lines.push(Line::styled(
            format!("{}: {}", axis.name, axis.normalisation),
            theme.style(Slot::TextDim),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }),
        rect(inner),
    );
}

/// A radar legend value in fewer columns ("inj 50.0% drop +33.3 pp", "$1.16/1k").
fn compact_raw(raw: &str) -> String {
    raw.replace("injection ", "inj ")
        .replace(", drop ", " drop ")
        .replace(" / 1k cases", "/1k")
}

fn draw_pass_rates(frame: &mut Frame, app: &App, theme: &Theme, data: &ModelsData, area: Area) {
    let chart = &data.charts.pass_rate;
    let b = block(format!(" {} ", chart.title), false, theme);
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.w < 10 || inner.h == 0 {
        return;
    }
    let backends = chart.groups.first().map_or(0, |g| g.bars.len()).max(1);
    // Labels get at most half the width so the bars keep the rest (and ratatui's horizontal
    // layout never runs out of columns).
    let widest = |it: &mut dyn Iterator<Item = usize>| it.max().unwrap_or(0);
    let prompt_w = widest(&mut chart.groups.iter().map(|g| g.label.chars().count()))
        .min(usize::from(inner.w) / 4);
    let backend_w = widest(
        &mut chart
            .groups
            .iter()
            .flat_map(|g| g.bars.iter().map(|b| b.backend.chars().count())),
    )
    .min(usize::from(inner.w) / 4);
    let rows = usize::from(inner.h);
    let first = app.models.scroll.min(chart.groups.len().saturating_sub(1));
    let mut bars: Vec<Bar> = Vec::new();
    for group in chart.groups.iter().skip(first) {
        if bars.len() + backends > rows {
            break;
        }
        for (i, bar) in group.bars.iter().enumerate() {
            let prompt = if i == 0 { group.label.as_str() } else { "" };
            let label = format!(
                "{:<prompt_w$} {:<backend_w$}",
                truncate(prompt, prompt_w),
                truncate(&bar.backend, backend_w)
            );
            let style = theme.style(series_slot(i));
            let (value, text) = match bar.value {
                Some(v) => {
                    let pct = (v.clamp(0.0, 1.0) * 100.0).round() as u64;
                    (pct, format!("{pct}%"))
                }
                // ASCII only: ratatui splits the value text at a byte index.
                None => (0, "n/a".to_owned()),
            };
            bars.push(
                Bar::default()
                    .value(value)
                    .text_value(text)
                    .label(Line::styled(label, theme.style(Slot::TextDim)))
                    .style(style)
                    .value_style(theme.style(Slot::Text).add_modifier(Modifier::REVERSED)),
            );
        }
    }
    let shown = bars.len() / backends;
    if shown < chart.groups.len() {
        // Not every prompt fits: say which are shown (j/k scroll).
        let title = format!(
            " pass rate · prompts {}–{}/{} ",
            first + 1,
            first + shown,
            chart.groups.len()
        );
        frame.render_widget(block(title, false, theme), rect(area));
    }
    let chart_widget = BarChart::default()
        .direction(Direction::Horizontal)
        .bar_width(1)
        .bar_gap(0)
        .group_gap(0)
        .max(100)
        .data(BarGroup::default().bars(&bars));
    frame.render_widget(chart_widget, rect(inner));
}

fn draw_histogram(frame: &mut Frame, app: &App, theme: &Theme, data: &ModelsData, area: Area) {
    let key = app.keymap.hint(Context::Models, Action::ToggleHistogram);
    let (chart, title, none) = match app.models.histogram {
        Histogram::Latency => (
            &data.charts.latency,
            format!(" latency · samples per bin · {key} cost "),
            "no latencies measured",
        ),
        Histogram::Cost => (
            &data.charts.cost,
            format!(" cost · samples per bin · {key} latency "),
            "no priced backend (a local model has no cost)",
        ),
    };
    let b = block(title, false, theme);
    let inner = area.inner();
    frame.render_widget(b, rect(area));
    if inner.w < 6 || inner.h < 2 {
        return;
    }
    let bins = chart.groups.len();
    if bins == 0 {
        frame.render_widget(
            Paragraph::new(none)
                .style(theme.style(Slot::TextDim))
                .wrap(Wrap { trim: false }),
            rect(inner),
        );
        return;
    }
    let backends = chart.groups.first().map_or(1, |g| g.bars.len().max(1));
    // As wide as fits: every bin's bars side by side, a column between bins.
    let per_bin = usize::from(inner.w) / bins;
    let bar_w = (per_bin.saturating_sub(1) / backends).clamp(1, 3) as u16;
    let max = chart
        .groups
        .iter()
        .flat_map(|g| g.bars.iter().filter_map(|b| b.value))
        .fold(0.0_f64, f64::max)
        .max(1.0) as u64;
    let mut widget = BarChart::default()
        .bar_width(bar_w)
        .bar_gap(0)
        .group_gap(1)
        .max(max);
    for group in &chart.groups {
        let bars: Vec<Bar> = group
            .bars
            .iter()
            .enumerate()
            .map(|(i, b)| {
                Bar::default()
                    .value(b.value.unwrap_or(0.0).max(0.0) as u64)
                    .text_value(String::new())
                    .style(theme.style(series_slot(i)))
            })
            .collect();
        widget = widget.data(BarGroup::default().bars(&bars));
    }
    let plot = Area::new(inner.x, inner.y, inner.w, inner.h - 1);
    frame.render_widget(widget, rect(plot));
    // The range under the bars, from the first bin's lower edge to the last's upper edge.
    let low = chart
        .groups
        .first()
        .map(|g| g.label.split('–').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let high = chart
        .groups
        .last()
        .map(|g| g.label.rsplit('–').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let used = usize::from(inner.w).min(bins * (usize::from(bar_w) * backends + 1));
    let pad = used.saturating_sub(low.chars().count() + high.chars().count());
    frame.render_widget(
        Paragraph::new(truncate(
            &format!("{low}{}{high}", " ".repeat(pad)),
            usize::from(inner.w),
        ))
        .style(theme.style(Slot::TextDim)),
        rect(Area::new(inner.x, inner.y + inner.h - 1, inner.w, 1)),
    );
}
