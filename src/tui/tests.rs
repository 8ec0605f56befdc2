//! The state machine without a terminal (every action, stale results, mouse, sizes), and
//! snapshots of every view drawn into ratatui's `TestBackend`.

use std::collections::BTreeMap;

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::*;
use super::keymap::{Action, Key, KeyChord, Keymap};
use super::theme;

const PROMPT: &str = "---\nname: math\nmodel:\n  backend: local\ninputs:\n  question: {type: string}\n---\nsystem:\nYou are a careful math tutor. {# be kind #}\n{% if hint %}Think step by step.{% endif %}\nuser:\n{{ question }}\n";
const TESTS: &str = "- description: apples\n  vars:\n    question: If I have 3 apples and buy 4 more, how many?\n  assert:\n    - type: contains\n      value: \"7\"\n- description: pears\n  vars:\n    question: Two pears and one more?\n";

fn setup(width: u16, height: u16) -> Setup {
    Setup {
        keymap: Keymap::default_keymap(),
        project_name: "demo".to_owned(),
        backends: vec!["gpt-mini".to_owned(), "local".to_owned()],
        default_backend: "local".to_owned(),
        themes: theme::SHIPPED
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect(),
        theme: "dark".to_owned(),
        no_color: false,
        prompts: vec![
            "cot/math.prompty".to_owned(),
            "cot/self-consistency.prompty".to_owned(),
            "react/tools.prompty".to_owned(),
        ],
        width,
        height,
    }
}

fn preview_result() -> PreviewResult {
    PreviewResult {
        messages: vec![
            (
                "system".to_owned(),
                "You are a careful math tutor.".to_owned(),
            ),
            (
                "user".to_owned(),
                "If I have 3 apples and buy 4 more, how many?".to_owned(),
            ),
        ],
        problem: None,
        warnings: Vec::new(),
        cases: vec![
            CaseInfo {
                index: 1,
                label: "\"apples\"".to_owned(),
                vars: vec![(
                    "question".to_owned(),
                    "If I have 3 apples and buy 4 more, how many?".to_owned(),
                )],
                line: 1,
            },
            CaseInfo {
                index: 2,
                label: "\"pears\"".to_owned(),
                vars: vec![("question".to_owned(), "Two pears and one more?".to_owned())],
                line: 7,
            },
        ],
        tokens: Some(TokenInfo {
            count: 86,
            approximate: false,
            context: Some(8192),
        }),
        backend: "local".to_owned(),
        inputs: vec!["question".to_owned()],
        votes: None,
    }
}

/// An app with cot/math open, its preview rendered and the first case selected.
fn app_at(width: u16, height: u16) -> App {
    let (mut app, _) = App::new(setup(width, height));
    app.handle(Msg::DocumentLoaded {
        file_name: "cot/math.prompty".to_owned(),
        prompt: PROMPT.to_owned(),
        tests: Some(TESTS.to_owned()),
    });
    // The first answer selects the first case, which is then rendered in its turn.
    for _ in 0..2 {
        let seq = app.preview.seq;
        app.handle(Msg::PreviewReady {
            seq,
            result: preview_result(),
        });
    }
    assert!(!app.preview.pending);
    app
}

fn app() -> App {
    app_at(120, 40)
}

fn key(app: &mut App, chord: KeyChord) -> Vec<Effect> {
    app.handle(Msg::Key(chord))
}

fn ch(c: char) -> KeyChord {
    KeyChord::plain(Key::Char(c))
}

fn k(k: Key) -> KeyChord {
    KeyChord::plain(k)
}

fn act(app: &mut App, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    app.perform(action, &mut fx);
    fx
}

/// Starts a run of the selected case on two backends and streams some text into both.
fn app_with_outputs() -> App {
    let mut app = app();
    app.chosen_backends = vec!["local".to_owned(), "gpt-mini".to_owned()];
    let fx = act(&mut app, Action::Run);
    assert!(matches!(fx.last(), Some(Effect::StartRun { .. })));
    let run = app.run.as_ref().map(|r| r.id).unwrap_or_default();
    app.handle(Msg::RunStarted {
        run,
        version: "3f2a1c9".to_owned(),
    });
    for piece in ["To solve this, ", "we add 3 and 4.\n", "Answer: 7"] {
        app.handle(Msg::RunChunk {
            run,
            cell: 0,
            text: piece.to_owned(),
        });
    }
    app.handle(Msg::RunChunk {
        run,
        cell: 1,
        text: "3 + 4 = 7. The answer is 8".to_owned(),
    });
    app.handle(Msg::CellFinished {
        run,
        cell: 0,
        outcome: Ok(CellDone {
            latency_ms: 1200,
            ttft_ms: Some(300),
            tokens_in: 86,
            tokens_out: 48,
            cost: None,
            assertions: vec![AssertionLine {
                pass: true,
                assertion: "contains".to_owned(),
                reason: "output contains \"7\"".to_owned(),
            }],
            verdict: Some(true),
            deferred: 0,
            cached: false,
        }),
    });
    app
}

// ---------------------------------------------------------------------------------------------
// Startup, preview, staleness.

#[test]
fn startup_loads_the_first_prompt_and_the_pass_counts() {
    let (app, fx) = App::new(setup(120, 40));
    assert_eq!(
        fx,
        vec![
            Effect::LoadDocument("cot/math.prompty".to_owned()),
            Effect::LoadPassCounts
        ]
    );
    assert_eq!(app.visible_prompts().len(), 3);
}

#[test]
fn loading_a_document_renders_its_preview_and_stale_previews_are_dropped() {
    let (mut app, _) = App::new(setup(120, 40));
    let fx = app.handle(Msg::DocumentLoaded {
        file_name: "cot/math.prompty".to_owned(),
        prompt: PROMPT.to_owned(),
        tests: Some(TESTS.to_owned()),
    });
    let seq = match fx.as_slice() {
        [
            Effect::RenderPreview {
                seq, case: None, ..
            },
        ] => *seq,
        other => panic!("{other:?}"),
    };
    app.handle(Msg::PreviewReady {
        seq: seq - 1,
        result: preview_result(),
    });
    assert!(app.cases.is_empty(), "a stale preview is dropped");
    let fx = app.handle(Msg::PreviewReady {
        seq,
        result: preview_result(),
    });
    assert!(matches!(
        &fx[..],
        [Effect::RenderPreview { case: Some(1), .. }]
    ));
    assert_eq!(app.cases.len(), 2);
    assert_eq!(app.case_selected, Some(0), "the first case is selected");
    assert!(app.preview.pending, "and rendered in its turn");
    assert_eq!(app.preview.case, Some(1));
}

#[test]
fn typing_debounces_the_preview_and_marks_the_file_unsaved() {
    let mut app = app();
    act(&mut app, Action::FocusEditor);
    let fx = key(&mut app, ch('x'));
    let seq = match fx.as_slice() {
        [Effect::SchedulePreview { seq, delay_ms }] => {
            assert_eq!(*delay_ms, PREVIEW_DEBOUNCE_MS);
            *seq
        }
        other => panic!("{other:?}"),
    };
    assert!(app.doc.as_ref().is_some_and(Document::dirty));
    key(&mut app, ch('y'));
    assert!(
        app.handle(Msg::PreviewDue(seq)).is_empty(),
        "a superseded timer does nothing"
    );
    let fx = app.handle(Msg::PreviewDue(seq + 1));
    assert!(
        matches!(&fx[..], [Effect::RenderPreview { prompt, case: Some(1), .. }] if prompt.starts_with("xy---"))
    );
}

#[test]
fn template_errors_are_kept_with_their_line() {
    let mut app = app();
    act(&mut app, Action::FocusEditor);
    key(&mut app, ch('x'));
    let seq = app.preview.seq;
    let mut result = preview_result();
    result.problem = Some(Problem {
        buffer: Buffer::Prompt,
        line: Some(12),
        message: "undefined variable `questoin`".to_owned(),
    });
    app.handle(Msg::PreviewReady { seq, result });
    assert_eq!(
        app.preview.result.problem.as_ref().and_then(|p| p.line),
        Some(12)
    );
    let fx = act(&mut app, Action::Run);
    assert!(fx.is_empty(), "a prompt with an error does not run");
    assert!(matches!(&app.status, Some((Level::Error, m)) if m.contains("questoin")));
}

// ---------------------------------------------------------------------------------------------
// Global actions.

#[test]
fn quit_when_clean_and_asks_when_dirty() {
    let mut app = app();
    assert_eq!(key(&mut app, KeyChord::ctrl('q')), vec![Effect::Quit]);
    assert!(app.quit);

    let mut app = app_at(120, 40);
    act(&mut app, Action::FocusEditor);
    key(&mut app, ch('x'));
    assert!(key(&mut app, KeyChord::ctrl('q')).is_empty());
    assert_eq!(app.overlay, Some(Overlay::ConfirmQuit));
    key(&mut app, ch('n'));
    assert_eq!(app.overlay, None);
    assert!(!app.quit);
    key(&mut app, KeyChord::ctrl('q'));
    let fx = key(&mut app, ch('s'));
    assert!(matches!(fx.as_slice(), [Effect::Save { .. }]), "s saves");
    key(&mut app, KeyChord::ctrl('q'));
    assert_eq!(key(&mut app, ch('y')), vec![Effect::Quit]);
    assert!(app.quit);
}

#[test]
fn help_toggles_and_scrolls() {
    let mut app = app();
    key(&mut app, k(Key::F(1)));
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 0 }));
    key(&mut app, k(Key::Down));
    assert_eq!(app.overlay, Some(Overlay::Help { scroll: 1 }));
    key(&mut app, k(Key::Esc));
    assert_eq!(app.overlay, None);
    act(&mut app, Action::Help);
    act(&mut app, Action::Help);
    assert_eq!(app.overlay, None);
}

#[test]
fn palette_filters_and_performs_every_action_by_name() {
    let mut app = app();
    key(&mut app, KeyChord::ctrl('p'));
    for c in "view_hist".chars() {
        key(&mut app, ch(c));
    }
    assert_eq!(app.palette_matches("view_hist"), vec![Action::ViewHistory]);
    let fx = key(&mut app, k(Key::Enter));
    assert_eq!(fx, vec![Effect::LoadHistory("cot/math".to_owned())]);
    assert_eq!(app.view, View::History);
    for action in Action::ALL {
        assert!(
            app.palette_matches(action.name()).contains(action),
            "{action:?} is reachable from the palette"
        );
    }
}

#[test]
fn save_sends_both_files_and_saved_clears_the_marker() {
    let mut app = app();
    act(&mut app, Action::FocusEditor);
    key(&mut app, ch('x'));
    let fx = key(&mut app, KeyChord::ctrl('s'));
    let (prompt, tests) = match fx.as_slice() {
        [
            Effect::Save {
                file_name,
                prompt,
                tests,
            },
        ] => {
            assert_eq!(file_name, "cot/math.prompty");
            (prompt.clone(), tests.clone())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(tests.as_deref(), Some(TESTS));
    let fx = app.handle(Msg::Saved {
        file_name: "cot/math.prompty".to_owned(),
        prompt,
        tests,
        version: "3f2a1c9".to_owned(),
        created: true,
    });
    assert_eq!(fx, vec![Effect::LoadPassCounts]);
    assert!(!app.doc.as_ref().is_some_and(Document::dirty));
    assert!(matches!(&app.status, Some((Level::Info, m)) if m.contains("3f2a1c9")));
}

#[test]
fn run_streams_into_cells_and_drops_stale_runs() {
    let mut app = app_with_outputs();
    let run = app.run.as_ref().map(|r| r.id).unwrap_or_default();
    assert_eq!(app.visible_cells().len(), 2);
    assert_eq!(
        app.visible_cells()[0].text,
        "To solve this, we add 3 and 4.\nAnswer: 7"
    );
    app.handle(Msg::RunChunk {
        run: run + 7,
        cell: 0,
        text: "stale".to_owned(),
    });
    assert!(!app.visible_cells()[0].text.contains("stale"));
    app.handle(Msg::CellFinished {
        run,
        cell: 1,
        outcome: Err("401 unauthorized".to_owned()),
    });
    app.handle(Msg::RunFinished { run });
    assert!(!app.is_running());
    assert_eq!(app.prompts[0].counts, Some((1, 1)));
    assert!(
        matches!(&app.status, Some((Level::Info, m)) if m.contains("1/1 passed") && m.contains("1 failed"))
    );
}

#[test]
fn run_uses_backends_and_samples_and_run_all_covers_every_case() {
    let mut app = app();
    let fx = key(&mut app, KeyChord::ctrl('r'));
    match fx.as_slice() {
        [Effect::StartRun { cells, tests, .. }] => {
            assert_eq!(tests.as_deref(), Some(TESTS));
            assert_eq!(
                cells,
                &vec![CellSpec {
                    case: Some(1),
                    backend: "local".to_owned(),
                    sample: 0
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    act(&mut app, Action::FocusOutputs);
    key(&mut app, ch('+'));
    assert_eq!(app.samples, 2);
    let fx = key(&mut app, KeyChord::new(Key::Char('r'), false, true, false));
    match fx.as_slice() {
        [Effect::CancelRun(1), Effect::StartRun { cells, .. }] => {
            assert_eq!(cells.len(), 4, "2 cases x 1 backend x 2 samples");
            assert_eq!(cells[3].case, Some(2));
            assert_eq!(cells[3].sample, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn esc_cancels_a_run_then_leaves_views_then_clears_the_filter() {
    let mut app = app_with_outputs();
    let run = app.run.as_ref().map(|r| r.id).unwrap_or_default();
    assert_eq!(key(&mut app, k(Key::Esc)), vec![Effect::CancelRun(run)]);
    assert_eq!(app.visible_cells()[1].status, CellStatus::Cancelled);
    assert_eq!(
        app.visible_cells()[0].status,
        CellStatus::Done,
        "finished cells stay"
    );
    act(&mut app, Action::ViewCompare);
    key(&mut app, k(Key::Esc));
    assert_eq!(app.view, View::Main);
    act(&mut app, Action::FocusTree);
    key(&mut app, ch('r'));
    assert_eq!(app.filter, "r");
    key(&mut app, k(Key::Esc));
    assert_eq!(app.filter, "");
}

#[test]
fn focus_cycles_through_every_pane() {
    let mut app = app();
    let mut seen = vec![app.focus];
    for _ in 0..5 {
        key(&mut app, k(Key::Tab));
        seen.push(app.focus);
    }
    assert_eq!(
        seen,
        vec![
            Pane::Tree,
            Pane::Editor,
            Pane::Preview,
            Pane::Cases,
            Pane::Outputs,
            Pane::Tree
        ]
    );
    key(&mut app, k(Key::BackTab));
    assert_eq!(app.focus, Pane::Outputs);
    for (action, pane) in [
        (Action::FocusTree, Pane::Tree),
        (Action::FocusEditor, Pane::Editor),
        (Action::FocusPreview, Pane::Preview),
        (Action::FocusCases, Pane::Cases),
        (Action::FocusOutputs, Pane::Outputs),
    ] {
        act(&mut app, Action::ViewHistory);
        act(&mut app, action);
        assert_eq!((app.view, app.focus), (View::Main, pane));
    }
    act(&mut app, Action::ViewHistory);
    act(&mut app, Action::ViewMain);
    assert_eq!(app.view, View::Main);
}

#[test]
fn compare_shows_two_outputs_or_the_working_files_against_the_latest_version() {
    let mut app = app();
    let fx = key(&mut app, KeyChord::ctrl('d'));
    match fx.as_slice() {
        [
            Effect::LoadVersions {
                left: VersionRef::Stored { id, .. },
                right: VersionRef::Working,
                working,
                ..
            },
        ] => {
            assert!(id.is_empty(), "empty id: the latest version");
            assert_eq!(working.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let mut app = app_with_outputs();
    act(&mut app, Action::FocusOutputs);
    key(&mut app, ch('c'));
    assert_eq!(app.view, View::Compare);
    let compare = app.compare.clone().expect("compare state");
    assert_eq!(compare.left_title, "local");
    assert_eq!(compare.right_title, "gpt-mini");
    assert!(!compare.changes.is_empty());
    key(&mut app, ch('i'));
    assert!(app.compare.as_ref().is_some_and(|c| c.inline));
    key(&mut app, ch('n'));
    key(&mut app, ch('p'));
    key(&mut app, k(Key::Down));
    key(&mut app, k(Key::Up));
    key(&mut app, ch('q'));
    assert_eq!(app.view, View::Main);
}

#[test]
fn next_and_previous_change_jump_between_blocks() {
    let mut app = app();
    let left = "a\nb\nc\nd\ne\nf\ng\n";
    let right = "a\nB\nc\nd\ne\nF\ng\n";
    app.compare = Some(CompareState::of_texts("x", left, "y", right));
    app.view = View::Compare;
    let changes = app
        .compare
        .as_ref()
        .map(|c| c.changes.clone())
        .unwrap_or_default();
    assert_eq!(changes.len(), 2);
    key(&mut app, ch('n'));
    assert_eq!(app.compare.as_ref().map(|c| c.scroll), Some(changes[0]));
    key(&mut app, ch('n'));
    assert_eq!(app.compare.as_ref().map(|c| c.scroll), Some(changes[1]));
    key(&mut app, ch('n'));
    assert!(matches!(&app.status, Some((_, m)) if m.contains("no more")));
    key(&mut app, ch('p'));
    assert_eq!(app.compare.as_ref().map(|c| c.scroll), Some(changes[0]));
}

fn history_rows() -> Vec<HistoryRow> {
    (0..4)
        .map(|i| HistoryRow {
            id: format!("{i}{}", "a".repeat(63)),
            short: format!("{i}aaaaaa"),
            date: format!("2026-11-2{i} 10:00"),
            message: format!("edit {i}"),
            author: "ada".to_owned(),
            labels: if i == 1 {
                vec!["prod".to_owned()]
            } else {
                Vec::new()
            },
            pass_rate: [Some(1.0), Some(0.8), None, Some(0.4)][i],
        })
        .collect()
}

#[test]
fn history_marks_compares_restores_and_labels() {
    let mut app = app();
    let fx = key(&mut app, KeyChord::ctrl('h'));
    assert_eq!(fx, vec![Effect::LoadHistory("cot/math".to_owned())]);
    assert!(app.history.loading);
    app.handle(Msg::HistoryLoaded {
        prompt: "other".to_owned(),
        rows: Vec::new(),
    });
    assert!(app.history.loading, "history of another prompt is dropped");
    app.handle(Msg::HistoryLoaded {
        prompt: "cot/math".to_owned(),
        rows: history_rows(),
    });
    // Compare the selected version with the working files.
    let fx = key(&mut app, k(Key::Enter));
    assert!(matches!(
        &fx[..],
        [Effect::LoadVersions {
            right: VersionRef::Working,
            ..
        }]
    ));
    // Mark the newest, select an older one: the older goes left.
    key(&mut app, ch(' '));
    assert_eq!(app.history.marked, Some(0));
    key(&mut app, k(Key::Down));
    key(&mut app, k(Key::Down));
    let fx = key(&mut app, ch('d'));
    match &fx[..] {
        [
            Effect::LoadVersions {
                left: VersionRef::Stored { short: l, .. },
                right: VersionRef::Stored { short: r, .. },
                ..
            },
        ] => {
            assert_eq!((l.as_str(), r.as_str()), ("2aaaaaa", "0aaaaaa"));
        }
        other => panic!("{other:?}"),
    }
    let mut left = BTreeMap::new();
    left.insert("prompts/cot/math.prompty".to_owned(), "a\nb\n".to_owned());
    let mut right = BTreeMap::new();
    right.insert("prompts/cot/math.prompty".to_owned(), "a\nc\n".to_owned());
    app.handle(Msg::VersionsLoaded {
        left: ("2aaaaaa".to_owned(), left),
        right: ("0aaaaaa".to_owned(), right.clone()),
    });
    assert_eq!(app.view, View::Compare);
    assert_eq!(app.compare.as_ref().map(|c| c.changes.len()), Some(1));
    // Restore into the editor.
    act(&mut app, Action::ViewHistory);
    let fx = key(&mut app, ch('r'));
    assert!(matches!(&fx[..], [Effect::LoadVersionForRestore { short, .. }] if short == "2aaaaaa"));
    app.handle(Msg::VersionForRestore {
        short: "2aaaaaa".to_owned(),
        files: right,
    });
    assert_eq!(app.view, View::Main);
    assert_eq!(
        app.doc.as_ref().map(|d| d.prompt.text()),
        Some("a\nc\n".to_owned())
    );
    assert!(app.doc.as_ref().is_some_and(Document::dirty));
    // Label.
    act(&mut app, Action::ViewHistory);
    app.handle(Msg::HistoryLoaded {
        prompt: "cot/math".to_owned(),
        rows: history_rows(),
    });
    key(&mut app, ch('l'));
    for c in "prod".chars() {
        key(&mut app, ch(c));
    }
    let fx = key(&mut app, k(Key::Enter));
    assert!(
        matches!(&fx[..], [Effect::SetLabel { label, prompt, .. }] if label == "prod" && prompt == "cot/math")
    );
    let fx = app.handle(Msg::LabelSet {
        label: "prod".to_owned(),
        short: "2aaaaaa".to_owned(),
    });
    assert_eq!(fx, vec![Effect::LoadHistory("cot/math".to_owned())]);
    key(&mut app, ch(' '));
    key(&mut app, ch(' '));
    assert_eq!(app.history.marked, None, "space twice unmarks");
}

#[test]
fn external_editor_needs_a_saved_file_and_reloads_after() {
    let mut app = app();
    assert_eq!(
        key(&mut app, KeyChord::ctrl('e')),
        vec![Effect::ExternalEditor {
            file_name: "cot/math.prompty".to_owned(),
            buffer: Buffer::Prompt
        }]
    );
    let fx = app.handle(Msg::ExternalEditDone {
        file_name: "cot/math.prompty".to_owned(),
        prompt: "edited\n".to_owned(),
        tests: None,
    });
    assert!(matches!(&fx[..], [Effect::RenderPreview { .. }]));
    let doc = app.doc.clone().expect("doc");
    assert_eq!(doc.prompt.text(), "edited\n");
    assert!(!doc.dirty());
    act(&mut app, Action::FocusEditor);
    key(&mut app, ch('x'));
    assert!(key(&mut app, KeyChord::ctrl('e')).is_empty());
    assert!(matches!(&app.status, Some((Level::Error, _))));
}

#[test]
fn tests_file_toggle_backends_and_themes() {
    let mut app = app();
    key(&mut app, KeyChord::ctrl('t'));
    assert_eq!(app.doc.as_ref().map(|d| d.active), Some(Buffer::Tests));
    assert_eq!(app.focus, Pane::Editor);
    key(&mut app, KeyChord::ctrl('t'));
    assert_eq!(app.doc.as_ref().map(|d| d.active), Some(Buffer::Prompt));

    key(&mut app, KeyChord::ctrl('b'));
    assert_eq!(app.overlay, Some(Overlay::Backends { selected: 0 }));
    key(&mut app, ch(' '));
    key(&mut app, k(Key::Down));
    key(&mut app, ch(' '));
    let fx = key(&mut app, k(Key::Enter));
    assert!(matches!(&fx[..], [Effect::RenderPreview { backend: Some(b), .. }] if b == "gpt-mini"));
    assert_eq!(
        app.run_backends(),
        vec!["gpt-mini".to_owned(), "local".to_owned()]
    );

    let fx = key(&mut app, k(Key::F(8)));
    assert_eq!(fx, vec![Effect::SetTheme("light".to_owned())]);
    app.handle(Msg::ThemeApplied("light".to_owned()));
    assert_eq!(app.theme, "light");
    app.theme = "tokyonight".to_owned();
    assert_eq!(
        act(&mut app, Action::NextTheme),
        vec![Effect::SetTheme("dark".to_owned())]
    );
}

#[test]
fn editor_undo_redo_search_wrap_and_paste() {
    let mut app = app();
    act(&mut app, Action::FocusEditor);
    for c in "abc".chars() {
        key(&mut app, ch(c));
    }
    key(&mut app, KeyChord::ctrl('z'));
    assert_eq!(
        app.doc.as_ref().map(|d| d.prompt.text()),
        Some(PROMPT.to_owned())
    );
    key(&mut app, KeyChord::ctrl('y'));
    assert!(
        app.doc
            .as_ref()
            .is_some_and(|d| d.prompt.text().starts_with("abc---"))
    );
    key(&mut app, KeyChord::ctrl('z'));

    key(&mut app, KeyChord::ctrl('f'));
    for c in "tutor".chars() {
        key(&mut app, ch(c));
    }
    let cursor = app.doc.as_ref().map(|d| (d.prompt.row, d.prompt.col));
    assert_eq!(
        cursor,
        Some((8, 23)),
        "incremental search moves as you type"
    );
    key(&mut app, k(Key::Enter));
    assert_eq!(app.overlay, None);
    key(&mut app, k(Key::F(3)));
    assert_eq!(
        app.doc.as_ref().map(|d| d.prompt.row),
        Some(8),
        "one match: wraps to itself"
    );
    key(&mut app, KeyChord::ctrl('f'));
    for c in "zzz".chars() {
        key(&mut app, ch(c));
    }
    key(&mut app, k(Key::Enter));
    assert!(matches!(&app.status, Some((Level::Error, m)) if m.contains("not found")));

    assert!(app.wrap);
    key(&mut app, KeyChord::new(Key::Char('w'), false, true, false));
    assert!(!app.wrap);

    let fx = app.handle(Msg::Paste("one\ntwo".to_owned()));
    assert!(matches!(&fx[..], [Effect::SchedulePreview { .. }]));
    assert!(
        app.doc
            .as_ref()
            .is_some_and(|d| d.prompt.text().contains("one\ntwo"))
    );
    key(&mut app, KeyChord::ctrl('z'));
    assert_eq!(
        app.doc.as_ref().map(|d| d.prompt.text()),
        Some(PROMPT.to_owned()),
        "a paste undoes in one step"
    );

    for k2 in [
        Key::Right,
        Key::Left,
        Key::Down,
        Key::Up,
        Key::End,
        Key::Home,
        Key::PageDown,
        Key::PageUp,
        Key::Delete,
        Key::Backspace,
        Key::Enter,
    ] {
        key(&mut app, k(k2));
    }
}

#[test]
fn tree_navigation_filter_and_open() {
    let mut app = app();
    key(&mut app, k(Key::Down));
    assert_eq!(app.tree_selected, 1);
    key(&mut app, k(Key::PageDown));
    assert_eq!(app.tree_selected, 2);
    key(&mut app, k(Key::PageUp));
    assert_eq!(app.tree_selected, 0);
    for c in "react".chars() {
        key(&mut app, ch(c));
    }
    assert_eq!(app.visible_prompts().len(), 1);
    key(&mut app, k(Key::Backspace));
    assert_eq!(app.filter, "reac");
    let fx = key(&mut app, k(Key::Enter));
    assert_eq!(
        fx,
        vec![Effect::LoadDocument("react/tools.prompty".to_owned())]
    );
    app.handle(Msg::Paste("zz".to_owned()));
    assert_eq!(app.filter, "reaczz");
    assert!(app.visible_prompts().is_empty());
    assert!(key(&mut app, k(Key::Enter)).is_empty(), "nothing to open");
}

#[test]
fn opening_another_prompt_with_unsaved_changes_asks_by_pressing_again() {
    let mut app = app();
    act(&mut app, Action::FocusEditor);
    key(&mut app, ch('x'));
    act(&mut app, Action::FocusTree);
    key(&mut app, k(Key::Down));
    assert!(key(&mut app, k(Key::Enter)).is_empty());
    assert!(matches!(&app.status, Some((Level::Error, m)) if m.contains("unsaved")));
    assert_eq!(
        key(&mut app, k(Key::Enter)),
        vec![Effect::LoadDocument(
            "cot/self-consistency.prompty".to_owned()
        )]
    );
    // Enter on the open prompt focuses the editor.
    let mut app = app_at(120, 40);
    assert!(key(&mut app, k(Key::Enter)).is_empty());
    assert_eq!(app.focus, Pane::Editor);
}

#[test]
fn cases_select_add_duplicate_and_edit() {
    let mut app = app();
    act(&mut app, Action::FocusCases);
    let fx = key(&mut app, ch('j'));
    assert_eq!(app.case_selected, Some(1));
    assert!(matches!(
        &fx[..],
        [Effect::RenderPreview { case: Some(2), .. }]
    ));
    key(&mut app, ch('k'));
    key(&mut app, ch('k'));
    assert_eq!(app.case_selected, None, "row 0 is the sample");
    key(&mut app, ch('j'));

    key(&mut app, ch('d'));
    let tests = app.doc.as_ref().map(|d| d.tests.text()).unwrap_or_default();
    assert_eq!(tests.matches("description: apples").count(), 2);
    assert!(tests.contains("- description: apples (copy)\n  vars:\n    question: If I have 3"));
    assert_eq!(app.focus, Pane::Editor);
    assert_eq!(app.doc.as_ref().map(|d| d.active), Some(Buffer::Tests));

    act(&mut app, Action::FocusCases);
    key(&mut app, ch('a'));
    let tests = app.doc.as_ref().map(|d| d.tests.text()).unwrap_or_default();
    assert!(
        tests.ends_with("- description: case 3\n  vars:\n    question: \"\"\n"),
        "{tests}"
    );
    let doc = app.doc.clone().expect("doc");
    assert_eq!(doc.tests.lines()[doc.tests.row], "    question: \"\"");

    act(&mut app, Action::FocusCases);
    app.case_selected = Some(1);
    key(&mut app, ch('e'));
    let doc = app.doc.clone().expect("doc");
    assert_eq!(
        doc.tests.row, 8,
        "the cursor is on the pears case's first variable"
    );
    act(&mut app, Action::FocusCases);
    app.case_selected = None;
    key(&mut app, k(Key::Enter));
    assert_eq!(app.doc.as_ref().map(|d| d.active), Some(Buffer::Prompt));
}

#[test]
fn samples_are_bounded_and_preview_and_outputs_scroll() {
    let mut app = app();
    for _ in 0..20 {
        act(&mut app, Action::MoreSamples);
    }
    assert_eq!(app.samples, MAX_SAMPLES);
    for _ in 0..20 {
        act(&mut app, Action::FewerSamples);
    }
    assert_eq!(app.samples, 1);
    act(&mut app, Action::FocusPreview);
    key(&mut app, ch('j'));
    assert_eq!(app.preview.scroll, 1);
    let mut app = app_with_outputs();
    act(&mut app, Action::FocusOutputs);
    key(&mut app, k(Key::Down));
    assert_eq!(app.run.as_ref().map(|r| r.scroll), Some(1));
    act(&mut app, Action::CompareOutputs);
    assert_eq!(app.view, View::Compare);
    let mut lone = self::app();
    act(&mut lone, Action::CompareOutputs);
    assert_eq!(lone.view, View::Main, "one output: nothing to compare");
}

#[test]
fn mouse_focuses_selects_scrolls_and_switches_tabs() {
    let mut app = app();
    let panes = app.panes();
    let click = |col, row| {
        Msg::Mouse(Mouse {
            kind: MouseKind::Down,
            col,
            row,
        })
    };
    app.handle(click(panes.editor.x + 10, panes.editor.y + 3));
    assert_eq!(app.focus, Pane::Editor);
    assert_eq!(app.doc.as_ref().map(|d| d.prompt.row), Some(2));
    app.handle(click(panes.cases.x + 3, panes.cases.y + 2));
    assert_eq!((app.focus, app.case_selected), (Pane::Cases, Some(0)));
    let fx = app.handle(click(panes.tree.x + 3, panes.tree.y + 2));
    assert_eq!(app.tree_selected, 1);
    assert!(fx.is_empty());
    let fx = app.handle(click(panes.tree.x + 3, panes.tree.y + 2));
    assert_eq!(
        fx,
        vec![Effect::LoadDocument(
            "cot/self-consistency.prompty".to_owned()
        )],
        "a second click opens"
    );
    app.handle(Msg::Mouse(Mouse {
        kind: MouseKind::ScrollDown,
        col: panes.preview.x + 2,
        row: panes.preview.y + 2,
    }));
    assert_eq!(app.preview.scroll, 1);
    let tabs = super::layout::tab_areas(panes.header);
    let fx = app.handle(click(tabs[2].x + 1, 0));
    assert_eq!(app.view, View::History);
    assert_eq!(fx, vec![Effect::LoadHistory("cot/math".to_owned())]);
    app.handle(click(tabs[0].x + 1, 0));
    assert_eq!(app.view, View::Main);
    key(&mut app, k(Key::F(1)));
    app.handle(click(1, 1));
    assert_eq!(app.overlay, None, "a click closes an overlay");
}

#[test]
fn failures_reach_the_status_line() {
    let mut app = app();
    app.handle(Msg::Failed("store in use by process 42".to_owned()));
    assert_eq!(
        app.status,
        Some((Level::Error, "store in use by process 42".to_owned()))
    );
    app.handle(Msg::PassCounts(vec![("cot/math".to_owned(), (4, 5))]));
    assert_eq!(app.prompts[0].counts, Some((4, 5)));
}

#[test]
fn no_size_and_no_input_panics() {
    let theme = theme::load("dark", None).expect("theme");
    let mut app = app_with_outputs();
    for (w, h) in [
        (0, 0),
        (1, 1),
        (10, 3),
        (20, 6),
        (59, 19),
        (60, 20),
        (80, 24),
        (200, 60),
    ] {
        app.handle(Msg::Resize(w, h));
        for view in [View::Main, View::Compare, View::History] {
            app.view = view;
            let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
            terminal
                .draw(|f| super::view::draw(f, &app, &theme))
                .expect("draw");
        }
    }
    // Every key in every context, on an app with and without a document.
    let keys = [
        Key::Char('x'),
        Key::Char(' '),
        Key::Enter,
        Key::Esc,
        Key::Tab,
        Key::BackTab,
        Key::Backspace,
        Key::Delete,
        Key::Up,
        Key::Down,
        Key::Left,
        Key::Right,
        Key::Home,
        Key::End,
        Key::PageUp,
        Key::PageDown,
        Key::F(1),
        Key::F(12),
    ];
    let (mut empty, _) = App::new(Setup {
        prompts: Vec::new(),
        ..setup(80, 24)
    });
    for app in [&mut app, &mut empty] {
        app.handle(Msg::Resize(80, 24));
        for action in Action::ALL {
            if *action == Action::Quit {
                continue;
            }
            act(app, *action);
            for k2 in keys {
                for (ctrl, alt) in [(false, false), (true, false), (false, true)] {
                    app.handle(Msg::Key(KeyChord::new(k2, ctrl, alt, false)));
                    app.overlay = None;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots of every view.

fn snapshot(app: &App, w: u16, h: u16) -> String {
    let theme = theme::load("dark", None).expect("theme");
    let mut app = app.clone();
    app.handle(Msg::Resize(w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    terminal
        .draw(|f| super::view::draw(f, &app, &theme))
        .expect("draw");
    terminal.backend().to_string()
}

macro_rules! snapshots {
    ($name:ident, $app:expr) => {
        #[test]
        fn $name() {
            let app = $app;
            insta::assert_snapshot!(
                concat!(stringify!($name), "_120x40"),
                snapshot(&app, 120, 40)
            );
            insta::assert_snapshot!(concat!(stringify!($name), "_80x24"), snapshot(&app, 80, 24));
        }
    };
}

snapshots!(view_main, app());
snapshots!(view_main_outputs, {
    let mut a = app_with_outputs();
    a.focus = Pane::Outputs;
    a
});
snapshots!(view_main_template_error, {
    let mut a = app();
    let mut result = preview_result();
    result.problem = Some(Problem {
        buffer: Buffer::Prompt,
        line: Some(12),
        message: "undefined variable `questoin`".to_owned(),
    });
    a.preview.result = result;
    a.focus = Pane::Editor;
    if let Some(doc) = &mut a.doc {
        doc.prompt.insert_char('#');
    }
    a
});
snapshots!(view_compare_side_by_side, {
    let mut a = app_with_outputs();
    act(&mut a, Action::CompareOutputs);
    a
});
snapshots!(view_compare_inline, {
    let mut a = app_with_outputs();
    act(&mut a, Action::CompareOutputs);
    act(&mut a, Action::ToggleInline);
    a
});
snapshots!(view_history, {
    let mut a = app();
    act(&mut a, Action::ViewHistory);
    a.handle(Msg::HistoryLoaded {
        prompt: "cot/math".to_owned(),
        rows: history_rows(),
    });
    a.history.marked = Some(2);
    a
});
snapshots!(overlay_help, {
    let mut a = app();
    act(&mut a, Action::Help);
    a
});
snapshots!(overlay_palette, {
    let mut a = app();
    act(&mut a, Action::CommandPalette);
    for c in "view".chars() {
        key(&mut a, ch(c));
    }
    a
});
snapshots!(overlay_confirm_quit, {
    let mut a = app();
    act(&mut a, Action::FocusEditor);
    key(&mut a, ch('x'));
    act(&mut a, Action::Quit);
    a
});
snapshots!(overlay_backends, {
    let mut a = app();
    act(&mut a, Action::ChooseBackends);
    a
});
snapshots!(overlay_label_input, {
    let mut a = app();
    act(&mut a, Action::ViewHistory);
    a.handle(Msg::HistoryLoaded {
        prompt: "cot/math".to_owned(),
        rows: history_rows(),
    });
    act(&mut a, Action::SetLabel);
    key(&mut a, ch('p'));
    a
});
snapshots!(view_tests_file, {
    let mut a = app();
    act(&mut a, Action::ToggleTestsFile);
    a
});

#[test]
fn view_main_60x20_stacks_the_panes() {
    insta::assert_snapshot!("view_main_60x20", snapshot(&app_with_outputs(), 60, 20));
}

#[test]
fn no_color_draws_without_colours() {
    let theme = theme::load("dark", None).expect("theme").without_colour();
    let app = app_with_outputs();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal
        .draw(|f| super::view::draw(f, &app, &theme))
        .expect("draw");
    for cell in terminal.backend().buffer().content() {
        assert_eq!(cell.fg, ratatui::style::Color::Reset);
        assert_eq!(cell.bg, ratatui::style::Color::Reset);
    }
}

#[test]
fn keys_in_promptdeck_toml_rebind_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().expect("temp");
    let parse = |text: &str| {
        crate::project::Config::parse(text, std::path::Path::new("promptdeck.toml"))
            .expect("config")
    };
    let project = crate::project::Project {
        root: dir.path().to_path_buf(),
        config: parse("[keys.global]\n\"ctrl-x\" = \"run\"\n\"ctrl-r\" = \"none\"\n"),
    };
    let keymap = super::terminal::load_keymap(&project).expect("keymap");
    let context = super::keymap::Context::Editor;
    assert_eq!(
        keymap.lookup(context, &KeyChord::ctrl('x')),
        Some(Action::Run)
    );
    assert_eq!(keymap.lookup(context, &KeyChord::ctrl('r')), None);
    let bad = crate::project::Project {
        root: dir.path().to_path_buf(),
        config: parse("[keys.global]\n\"ctrl-x\" = \"rnu\"\n"),
    };
    let err = super::terminal::load_keymap(&bad).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("unknown action `rnu`"), "{err}");
}

#[test]
fn readme_key_table_is_the_default_keymap() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (start, end) = ("<!-- keys:start -->\n", "<!-- keys:end -->");
    let table = Keymap::default_keymap().markdown_table();
    let (Some(a), Some(b)) = (readme.find(start), readme.find(end)) else {
        panic!("README.md lacks the {start:?} ... {end:?} markers");
    };
    let current = &readme[a + start.len()..b];
    if current != table {
        if std::env::var_os("PROMPTDECK_BLESS").is_some() {
            let updated = format!("{}{table}{}", &readme[..a + start.len()], &readme[b..]);
            std::fs::write(&path, updated).expect("write README.md");
        } else {
            panic!(
                "README.md's key table differs from src/tui/keymap.toml; run `PROMPTDECK_BLESS=1 cargo test --lib readme_key_table` and review the diff"
            );
        }
    }
}

/// A self-consistency prompt after a run of three samples (two say 7, one says 8).
fn app_with_votes() -> App {
    let mut app = app();
    let seq = app.preview.seq + 1;
    app.preview.seq = seq;
    let mut result = preview_result();
    result.votes = Some(VoteSpec {
        samples: 3,
        extract: crate::prompt::technique::Extractor::LastNumber,
    });
    app.handle(Msg::PreviewReady { seq, result });
    act(&mut app, Action::Run);
    let run = app.run.as_ref().map(|r| r.id).unwrap_or_default();
    for (cell, text) in ["3 + 4 = 7. Answer: 7", "Answer: 7", "I think 8"]
        .iter()
        .enumerate()
    {
        app.handle(Msg::RunChunk {
            run,
            cell,
            text: (*text).to_owned(),
        });
        app.handle(Msg::CellFinished {
            run,
            cell,
            outcome: Ok(CellDone {
                latency_ms: 900,
                ttft_ms: Some(100),
                tokens_in: 86,
                tokens_out: 12,
                cost: None,
                assertions: Vec::new(),
                verdict: None,
                deferred: 1,
                cached: false,
            }),
        });
    }
    app.handle(Msg::RunFinished { run });
    app
}

#[test]
fn self_consistency_samples_as_configured_and_votes() {
    let app = app_with_votes();
    assert_eq!(app.samples, 3, "the technique's sample count");
    assert_eq!(app.visible_cells().len(), 3);
    let vote = app.votes().expect("a vote");
    assert_eq!(vote.answer.as_deref(), Some("7"));
    assert_eq!(
        vote.distribution,
        vec![("7".to_owned(), 2), ("8".to_owned(), 1)]
    );
    assert_eq!(self::app().votes(), None, "other prompts have no vote");
}

snapshots!(view_main_votes, {
    let mut a = app_with_votes();
    a.focus = Pane::Outputs;
    a
});

#[test]
fn one_output_compares_with_the_previous_run() {
    let mut app = app();
    for answer in ["Answer: 7", "Answer: 8"] {
        act(&mut app, Action::Run);
        let run = app.run.as_ref().map(|r| r.id).unwrap_or_default();
        app.handle(Msg::RunChunk {
            run,
            cell: 0,
            text: answer.to_owned(),
        });
        app.handle(Msg::RunFinished { run });
    }
    act(&mut app, Action::CompareOutputs);
    assert_eq!(app.view, View::Compare);
    let compare = app.compare.clone().expect("compare");
    assert_eq!(compare.left_title, "previous run local");
    assert_eq!(compare.right_title, "this run local");
    assert_eq!(compare.changes.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The Models view.

/// The compare fixture (local, cloud) plus a third backend: cloud's answers, slower, cheaper,
/// failing the injection suite; three prompts (guard, math, summary).
fn models_data() -> ModelsData {
    use crate::compare::{self, CompareOptions};
    let mut samples = compare::fixture::sample_results();
    let third: Vec<_> = samples
        .iter()
        .filter(|s| s.backend == "cloud")
        .map(|s| crate::compare::ResultSample {
            backend: "gpt-mini".to_owned(),
            run_id: "0192a0b1c2d60000".to_owned(),
            latency_ms: s.latency_ms * 1.8,
            cost_usd: s.cost_usd.map(|c| c * 0.3),
            passed: s.passed && !s.injection_suite,
            ..s.clone()
        })
        .collect();
    samples.extend(third);
    let report = compare::compare(
        &samples,
        &CompareOptions {
            backends: vec!["local".into(), "cloud".into(), "gpt-mini".into()],
            ..CompareOptions::default()
        },
    );
    ModelsData {
        charts: compare::tui_charts(&report),
        samples: report.samples,
        run_ids: report.run_ids.clone(),
        missing: Vec::new(),
        skipped: Vec::new(),
    }
}

fn models_seq(fx: &[Effect]) -> u64 {
    match fx.last() {
        Some(Effect::LoadModels { seq, .. }) => *seq,
        other => panic!("expected LoadModels, got {other:?}"),
    }
}

#[test]
fn models_view_loads_the_open_prompt_and_runs_the_missing_backends() {
    let mut app = app();
    let fx = key(&mut app, k(Key::F(6)));
    assert_eq!(app.view, View::Models);
    assert_eq!(
        fx,
        vec![Effect::LoadModels {
            seq: 1,
            prompts: vec!["cot/math.prompty".to_owned()],
            backends: vec!["gpt-mini".to_owned(), "local".to_owned()],
            samples: 1,
        }],
        "every configured backend when none is chosen"
    );
    assert!(app.models.loading);
    // An answer to an older request is dropped.
    app.handle(Msg::ModelsLoaded {
        seq: 0,
        result: Ok(models_data()),
    });
    assert!(app.models.data.is_none());
    let mut data = models_data();
    data.missing = vec![("cot/math".to_owned(), "gpt-mini".to_owned())];
    app.handle(Msg::ModelsLoaded {
        seq: 1,
        result: Ok(data),
    });
    assert!(!app.models.loading);
    assert_eq!(app.models.missing_for("cot/math"), ["gpt-mini"]);

    // r: every case on the backend without a stored run, then a reload when it is done.
    let fx = key(&mut app, ch('r'));
    let Some(Effect::StartRun { run, cells, .. }) = fx.last() else {
        panic!("{fx:?}");
    };
    let run = *run;
    assert_eq!(
        cells
            .iter()
            .map(|c| (c.case, c.backend.as_str()))
            .collect::<Vec<_>>(),
        [(Some(1), "gpt-mini"), (Some(2), "gpt-mini")]
    );
    assert_eq!(app.models.run, Some(run));
    assert_eq!(app.view, View::Models, "the view stays while it runs");
    assert!(
        key(&mut app, ch('r')).is_empty(),
        "r again does not restart it"
    );
    let fx = app.handle(Msg::RunFinished { run });
    assert_eq!(models_seq(&fx), 2);
    assert_eq!(app.models.run, None);

    // j/k scroll the pass-rate rows within bounds.
    app.handle(Msg::ModelsLoaded {
        seq: 2,
        result: Ok(models_data()),
    });
    for _ in 0..5 {
        key(&mut app, ch('j'));
    }
    assert_eq!(app.models.scroll, 2, "three prompts");
    key(&mut app, ch('k'));
    assert_eq!(app.models.scroll, 1);
    // Nothing missing: r says so and starts nothing.
    let fx = key(&mut app, ch('r'));
    assert!(fx.is_empty(), "{fx:?}");
    // c: the cost histogram and back.
    key(&mut app, ch('c'));
    assert_eq!(app.models.histogram, Histogram::Cost);
    key(&mut app, ch('c'));
    assert_eq!(app.models.histogram, Histogram::Latency);
    // s: the whole library; q: back.
    let fx = key(&mut app, ch('s'));
    assert_eq!(app.models.scope, ModelsScope::Library);
    assert!(matches!(fx.last(), Some(Effect::LoadModels { prompts, .. }) if prompts.is_empty()));
    key(&mut app, ch('q'));
    assert_eq!(app.view, View::Main);
}

#[test]
fn models_view_refuses_to_run_unsaved_text_and_reports_errors() {
    let mut app = app();
    app.chosen_backends = vec!["local".to_owned()];
    let fx = act(&mut app, Action::ViewModels);
    assert!(
        matches!(fx.last(), Some(Effect::LoadModels { backends, .. }) if backends == &["local".to_owned()]),
        "the backends chosen with ^B"
    );
    let seq = app.models.seq;
    let mut data = models_data();
    data.missing = vec![("cot/math".to_owned(), "local".to_owned())];
    app.handle(Msg::ModelsLoaded {
        seq,
        result: Ok(data),
    });
    if let Some(doc) = &mut app.doc {
        doc.prompt.insert_char('#');
    }
    let fx = act(&mut app, Action::RunMissing);
    assert!(fx.is_empty());
    assert!(matches!(&app.status, Some((Level::Error, m)) if m.contains("unsaved")));
    // Other backends chosen since: r reloads first rather than trust the old list.
    if let Some(doc) = &mut app.doc {
        doc.prompt.backspace();
    }
    app.chosen_backends = vec!["gpt-mini".to_owned()];
    let fx = act(&mut app, Action::RunMissing);
    assert!(
        matches!(fx.as_slice(), [Effect::LoadModels { backends, .. }] if backends == &["gpt-mini".to_owned()]),
        "{fx:?}"
    );
    let fx = act(&mut app, Action::ViewModels);
    app.handle(Msg::ModelsLoaded {
        seq: models_seq(&fx),
        result: Err("store in use by process 42".to_owned()),
    });
    assert!(app.models.data.is_none() && !app.models.loading);
    assert!(matches!(&app.status, Some((Level::Error, m)) if m.contains("process 42")));
}

fn app_with_models(scope: ModelsScope, data: ModelsData) -> App {
    let mut app = app();
    app.backends = vec!["local".into(), "cloud".into(), "gpt-mini".into()];
    app.models.scope = scope;
    let fx = act(&mut app, Action::ViewModels);
    app.handle(Msg::ModelsLoaded {
        seq: models_seq(&fx),
        result: Ok(data),
    });
    app
}

snapshots!(
    view_models,
    app_with_models(ModelsScope::Library, models_data())
);
snapshots!(view_models_prompt_missing, {
    let mut data = models_data();
    data.missing = vec![("cot/math".to_owned(), "gpt-mini".to_owned())];
    app_with_models(ModelsScope::Prompt, data)
});
snapshots!(view_models_cost, {
    let mut a = app_with_models(ModelsScope::Library, models_data());
    act(&mut a, Action::ToggleHistogram);
    a
});
snapshots!(view_models_empty, {
    let mut data = models_data();
    let empty = crate::compare::compare(&[], &crate::compare::CompareOptions::default());
    data.charts = crate::compare::tui_charts(&empty);
    data.samples = 0;
    data.run_ids.clear();
    data.missing = vec![
        ("cot/math".to_owned(), "gpt-mini".to_owned()),
        ("cot/math".to_owned(), "local".to_owned()),
    ];
    app_with_models(ModelsScope::Prompt, data)
});

#[test]
fn view_models_narrow() {
    let app = app_with_models(ModelsScope::Library, models_data());
    insta::assert_snapshot!("view_models_60x20", snapshot(&app, 60, 20));
}

#[test]
fn models_view_draws_at_every_size_without_panicking() {
    let apps = [
        app_with_models(ModelsScope::Library, models_data()),
        app_with_models(ModelsScope::Prompt, {
            let mut d = models_data();
            d.samples = 0;
            d
        }),
    ];
    for app in &apps {
        // Width and height from 1: the test backend cannot print an empty buffer.
        for w in (1..=130u16).step_by(3) {
            for h in [1u16, 3, 6, 7, 9, 12, 17, 24, 40] {
                snapshot(app, w, h);
            }
        }
    }
}

#[test]
fn models_view_draws_each_backend_in_its_theme_colour() {
    let theme = theme::load("dark", None).expect("theme");
    let app = app_with_models(ModelsScope::Library, models_data());
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    terminal
        .draw(|f| super::view::draw(f, &app, &theme))
        .expect("draw");
    let cells = terminal.backend().buffer().content();
    for slot in [
        theme::Slot::Series1,
        theme::Slot::Series2,
        theme::Slot::Series3,
    ] {
        let colour = theme.style(slot).fg.expect("a series colour");
        // Braille dots of the radar's polygon, and the bars of the pass-rate chart.
        let braille = cells.iter().any(|c| {
            c.fg == colour
                && c.symbol()
                    .chars()
                    .all(|ch| ('\u{2801}'..='\u{28ff}').contains(&ch))
        });
        let bar = cells.iter().any(|c| c.fg == colour && c.symbol() == "█");
        assert!(braille && bar, "{slot:?}: polygon {braille}, bars {bar}");
    }
}

#[test]
fn view_models_reloading_keeps_the_charts_and_says_so() {
    let mut app = app_with_models(ModelsScope::Prompt, models_data());
    act(&mut app, Action::ViewModels);
    assert!(app.models.loading && app.models.data.is_some());
    insta::assert_snapshot!("view_models_reloading_80x24", snapshot(&app, 80, 24));
}
