//! The workbench survives a random stream of input: 100,000 seeded key, mouse, paste and resize
//! events (and random actions, so every screen and overlay is reached), interleaved with the
//! answers a worker would send back for the effects the app asks for, delivered late, out of
//! order, stale or never. Nothing may panic, in the state machine or in drawing.
//!
//! Every event goes through `App::handle`; drawing into ratatui's `TestBackend` happens every
//! `PROMPTDECK_SOAK_DRAW_EVERY` events (default 7) and after every resize, because drawing a
//! frame in a debug build costs ~100x more than handling a key and the CI budget is small.
//!
//! Reproducible: the seed is printed on failure with the index of the failing event and the
//! events before it; rerun with `PROMPTDECK_SOAK_SEED=<seed>`. Longer runs:
//! `PROMPTDECK_SOAK_EVENTS=2000000 PROMPTDECK_SOAK_SEEDS=8 cargo test --release --test tui_soak`.

#[path = "common/rng.rs"]
mod rng;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use promptdeck::prompt::technique::Extractor;
use promptdeck::tui::app::{
    App, AssertionLine, Buffer, CaseInfo, CellDone, Effect, HistoryRow, ModelsData, Mouse,
    MouseKind, Msg, PreviewResult, Problem, Setup, TokenInfo, VersionRef, VoteSpec,
};
use promptdeck::tui::keymap::{Action, Key, KeyChord, Keymap};
use promptdeck::tui::theme::{self, Theme};
use rng::Rng;

/// Buffer size (prompt and tests lines together) past which the soak restarts the app.
const MAX_LINES: usize = 1_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PROMPTS: &[&str] = &[
    "---\nname: math\ninputs:\n  question: {type: string}\n---\nsystem:\nYou are a tutor.\n{% if hint %}Think.{% endif %}\nuser:\n{{ question }}\n",
    "user:\nhello",
    "",
    "---\nname: [unclosed\n---\n",
    "système:\n\u{1F600}\u{200D}\u{1F469}\tcombining e\u{301}\r\nuser:\r\n{{ x }}\r\n",
    "{% for i in range(10) %}{{ i }}\n{% endfor %}\nassistant:\n\n\n\nuser:\n",
    "a very long line without any break ................................................................................................................................................................................................................................................................",
];

const TESTS: &[&str] = &[
    "- description: apples\n  vars:\n    question: three plus four?\n  assert:\n    - type: contains\n      value: \"7\"\n",
    "not: [valid",
    "",
    "- vars: {}\n- vars: {q: \"\u{0}\"}\n",
];

const NAMES: &[&str] = &[
    "cot/math.prompty",
    "react/tools.prompty",
    "a.prompty",
    "deep/er/still/x.prompty",
    "\u{1F600}.prompty",
    "",
];

const TEXTS: &[&str] = &[
    "",
    "x",
    "Answer: 7",
    "line\nline\n",
    "\u{1F600}\u{301}\t\r\n",
    "{{ broken",
    "a\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\nz",
];

fn random_key(rng: &mut Rng) -> KeyChord {
    let named = [
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
    ];
    let chars = [
        'a',
        'j',
        'k',
        'q',
        'r',
        'n',
        'N',
        'm',
        'l',
        'c',
        'd',
        'i',
        '/',
        '?',
        ' ',
        '1',
        '{',
        '}',
        '%',
        '\u{e9}',
        '\u{1F600}',
        '\u{301}',
        '\t',
    ];
    let key = match rng.below(10) {
        0..=4 => Key::Char(rng.pick(&chars)),
        5 => Key::F(rng.below(13) as u8),
        _ => rng.pick(&named),
    };
    KeyChord::new(key, rng.chance(15), rng.chance(10), rng.chance(10))
}

fn random_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(4) {
        s.push_str(rng.pick(TEXTS));
    }
    s
}

fn random_preview(rng: &mut Rng) -> PreviewResult {
    let cases = (0..rng.below(5))
        .map(|i| CaseInfo {
            index: i + 1,
            label: random_text(rng),
            vars: (0..rng.below(3))
                .map(|_| (random_text(rng), random_text(rng)))
                .collect(),
            line: rng.below(400),
        })
        .collect();
    PreviewResult {
        messages: (0..rng.below(4))
            .map(|_| {
                (
                    rng.pick(&["system", "user", "assistant", ""]).to_string(),
                    random_text(rng),
                )
            })
            .collect(),
        problem: rng.chance(30).then(|| Problem {
            buffer: if rng.chance(50) {
                Buffer::Prompt
            } else {
                Buffer::Tests
            },
            // Lines past the end of the buffer must not index out of range.
            line: rng.chance(80).then(|| rng.below(300)),
            message: random_text(rng),
        }),
        warnings: (0..rng.below(3)).map(|_| random_text(rng)).collect(),
        cases,
        tokens: rng.chance(70).then(|| TokenInfo {
            count: rng.below(20_000),
            approximate: rng.chance(50),
            context: rng.chance(50).then(|| rng.below(10_000)),
        }),
        backend: rng.pick(&["local", "gpt-mini", "unknown"]).to_string(),
        inputs: vec!["question".to_owned()],
        votes: rng.chance(20).then(|| VoteSpec {
            samples: rng.below(6) as u32,
            extract: Extractor::LastNumber,
        }),
    }
}

fn random_files(rng: &mut Rng) -> BTreeMap<String, String> {
    (0..rng.below(4))
        .map(|_| {
            (
                format!("prompts/{}", rng.pick(NAMES)),
                rng.pick(PROMPTS).to_string(),
            )
        })
        .collect()
}

fn cell_done(rng: &mut Rng) -> CellDone {
    CellDone {
        latency_ms: rng.next() % 100_000,
        ttft_ms: rng.chance(50).then(|| rng.next() % 1000),
        tokens_in: rng.next() % 10_000,
        tokens_out: rng.next() % 10_000,
        cost: rng.chance(50).then(|| (rng.next() % 1000) as f64 / 7.0),
        assertions: (0..rng.below(3))
            .map(|_| AssertionLine {
                pass: rng.chance(50),
                assertion: random_text(rng),
                reason: random_text(rng),
            })
            .collect(),
        verdict: [None, Some(true), Some(false)][rng.below(3)],
        deferred: rng.below(3),
        cached: rng.chance(20),
    }
}

/// A comparison over a random part of the compare fixture's samples: any number of backends
/// and prompts, possibly none at all.
fn random_models(rng: &mut Rng, backends: &[String]) -> ModelsData {
    use promptdeck::compare::{self, CompareOptions};
    let mut samples = Vec::new();
    for mut sample in compare::fixture::sample_results() {
        if !rng.chance(60) {
            continue;
        }
        if !backends.is_empty() && rng.chance(50) {
            sample.backend = backends[rng.below(backends.len())].clone();
        }
        samples.push(sample);
    }
    let report = compare::compare(
        &samples,
        &CompareOptions {
            backends: backends.to_vec(),
            ..CompareOptions::default()
        },
    );
    ModelsData {
        charts: compare::tui_charts(&report),
        samples: report.samples,
        run_ids: report.run_ids.clone(),
        missing: backends
            .iter()
            .filter(|_| rng.chance(30))
            .map(|b| ("cot/math".to_owned(), b.clone()))
            .collect(),
        skipped: (0..rng.below(2))
            .map(|_| ("broken".to_owned(), random_text(rng)))
            .collect(),
    }
}

/// What a worker answers to an effect: zero or more messages, some of them stale or odd.
fn answer(rng: &mut Rng, effect: Effect, out: &mut Vec<Msg>) {
    match effect {
        Effect::LoadPassCounts => out.push(Msg::PassCounts(vec![(
            "cot/math".to_owned(),
            (rng.below(5) as u32, rng.below(5) as u32),
        )])),
        Effect::LoadDocument(name) => out.push(Msg::DocumentLoaded {
            file_name: name,
            prompt: rng.pick(PROMPTS).to_string(),
            tests: rng.chance(70).then(|| rng.pick(TESTS).to_string()),
        }),
        Effect::SchedulePreview { seq, .. } => out.push(Msg::PreviewDue(seq)),
        Effect::RenderPreview { seq, .. } => {
            // Sometimes an answer to an older request arrives too.
            let seq = if rng.chance(10) {
                seq.saturating_sub(1)
            } else {
                seq
            };
            out.push(Msg::PreviewReady {
                seq,
                result: random_preview(rng),
            });
        }
        Effect::StartRun { run, cells, .. } => {
            out.push(Msg::RunStarted {
                run,
                version: "3f2a1c9".to_owned(),
            });
            // One cell more than asked for: an index out of range must be ignored.
            for cell in 0..=cells.len() {
                for _ in 0..rng.below(3) {
                    out.push(Msg::RunChunk {
                        run,
                        cell,
                        text: random_text(rng),
                    });
                }
                let outcome = if rng.chance(20) {
                    Err(random_text(rng))
                } else {
                    Ok(cell_done(rng))
                };
                if rng.chance(90) {
                    out.push(Msg::CellFinished { run, cell, outcome });
                }
            }
            out.push(Msg::RunFinished { run });
        }
        Effect::CancelRun(run) => out.push(Msg::RunFinished { run }),
        Effect::LoadModels { seq, backends, .. } => {
            let seq = if rng.chance(10) {
                seq.saturating_sub(1)
            } else {
                seq
            };
            let result = if rng.chance(15) {
                Err(random_text(rng))
            } else {
                Ok(random_models(rng, &backends))
            };
            out.push(Msg::ModelsLoaded { seq, result });
        }
        Effect::Save {
            file_name,
            prompt,
            tests,
        } => out.push(if rng.chance(20) {
            Msg::Failed("store in use by process 42".to_owned())
        } else {
            Msg::Saved {
                file_name,
                prompt,
                tests,
                version: "abcdef0123".to_owned(),
                created: rng.chance(50),
            }
        }),
        Effect::LoadHistory(prompt) => out.push(Msg::HistoryLoaded {
            prompt,
            rows: (0..rng.below(6))
                .map(|i| HistoryRow {
                    id: format!("{i:064x}"),
                    short: format!("{i:07x}"),
                    date: "2026-11-28 12:00".to_owned(),
                    message: random_text(rng),
                    author: random_text(rng),
                    labels: (0..rng.below(3)).map(|_| random_text(rng)).collect(),
                    pass_rate: rng.chance(50).then(|| rng.below(101) as f64 / 100.0),
                })
                .collect(),
        }),
        Effect::LoadVersions {
            left,
            right,
            working,
            ..
        } => {
            let name = |v: &VersionRef| match v {
                VersionRef::Working => "working".to_owned(),
                VersionRef::Stored { short, .. } => short.clone(),
            };
            let left_files = if rng.chance(50) {
                working.clone()
            } else {
                random_files(rng)
            };
            out.push(Msg::VersionsLoaded {
                left: (name(&left), left_files),
                right: (name(&right), random_files(rng)),
            });
        }
        Effect::LoadVersionForRestore { short, .. } => out.push(Msg::VersionForRestore {
            short,
            files: random_files(rng),
        }),
        Effect::SetLabel { label, version, .. } => out.push(Msg::LabelSet {
            label,
            short: version.chars().take(7).collect(),
        }),
        Effect::ExternalEditor { file_name, .. } => out.push(Msg::ExternalEditDone {
            file_name,
            prompt: rng.pick(PROMPTS).to_string(),
            tests: rng.chance(50).then(|| rng.pick(TESTS).to_string()),
        }),
        Effect::SetTheme(name) => out.push(Msg::ThemeApplied(name)),
        Effect::Quit => {}
    }
}

fn setup(rng: &mut Rng) -> Setup {
    let mut prompts: Vec<String> = NAMES.iter().map(|s| (*s).to_owned()).collect();
    prompts.truncate(rng.below(NAMES.len() + 1));
    Setup {
        keymap: Keymap::default_keymap(),
        project_name: "soak".to_owned(),
        backends: vec!["local".to_owned(), "gpt-mini".to_owned()],
        default_backend: "local".to_owned(),
        themes: theme::SHIPPED
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect(),
        theme: "dark".to_owned(),
        no_color: rng.chance(20),
        prompts,
        width: 120,
        height: 40,
    }
}

/// Runs `events` random events from `seed`; `trail` keeps the latest events for the report.
fn soak(
    seed: u64,
    events: u64,
    draw_every: u64,
    trail: &mut VecDeque<String>,
) -> (u64, BTreeSet<String>) {
    let mut rng = Rng::new(seed);
    let themes: Vec<(String, Theme)> = theme::SHIPPED
        .iter()
        .map(|(n, _)| {
            (
                (*n).to_owned(),
                theme::load(n, None).expect("shipped theme"),
            )
        })
        .collect();
    let (mut app, effects) = App::new(setup(&mut rng));
    let mut pending: Vec<Msg> = Vec::new();
    for effect in effects {
        answer(&mut rng, effect, &mut pending);
    }
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    let mut frames = 0;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for index in 0..events {
        // What was reached, so the test fails if the generator stops reaching a screen.
        seen.insert(format!("{:?}", app.view));
        if let Some(overlay) = &app.overlay {
            let name = format!("{overlay:?}");
            seen.insert(
                name.split([' ', '{', '('])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        if app.run.is_some() {
            seen.insert("run".to_owned());
        }
        // Either a worker answer (taken from anywhere in the queue: answers overtake each
        // other) or user input.
        let msg = if !pending.is_empty() && rng.chance(35) {
            let at = rng.below(pending.len());
            let msg = pending.swap_remove(at);
            // A lost answer: the app must not wait for it forever (it never blocks anyway).
            if rng.chance(3) {
                continue;
            }
            msg
        } else {
            match rng.below(100) {
                0..=54 => Msg::Key(random_key(&mut rng)),
                55..=69 => Msg::Mouse(Mouse {
                    kind: rng.pick(&[MouseKind::Down, MouseKind::ScrollUp, MouseKind::ScrollDown]),
                    col: rng.below(usize::from(app.width) + 10) as u16,
                    row: rng.below(usize::from(app.height) + 10) as u16,
                }),
                70..=72 => {
                    let (w, h) = if rng.chance(20) {
                        (rng.below(25) as u16, rng.below(8) as u16)
                    } else {
                        (rng.below(260) as u16, rng.below(90) as u16)
                    };
                    Msg::Resize(w, h)
                }
                73..=74 => Msg::Paste(random_text(&mut rng)),
                75..=76 => Msg::PromptsListed(
                    NAMES[..rng.below(NAMES.len() + 1)]
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                ),
                77 => Msg::Failed(random_text(&mut rng)),
                78 => Msg::PreviewDue(rng.next() % 50),
                _ => {
                    // Actions directly, so that every screen, overlay and command is reached
                    // even where no random key is bound to it.
                    let action = rng.pick(Action::ALL);
                    trail_push(trail, index, format!("action {action:?}"));
                    let mut fx = Vec::new();
                    app.perform(action, &mut fx);
                    for effect in fx {
                        answer(&mut rng, effect, &mut pending);
                    }
                    app.quit = false;
                    maybe_draw(&mut terminal, &app, &themes, index, draw_every, &mut frames);
                    continue;
                }
            }
        };
        trail_push(trail, index, format!("{msg:?}"));
        let resized = matches!(msg, Msg::Resize(..));
        if index % 10_000 == 0 && std::env::var_os("PROMPTDECK_SOAK_PROGRESS").is_some() {
            eprintln!("event {index}, {} pending answers", pending.len());
        }
        for effect in app.handle(msg) {
            answer(&mut rng, effect, &mut pending);
        }
        // A quit is the loop's business; the soak keeps typing into the same app.
        app.quit = false;
        // Worker answers pile up when nothing drains them; keep memory bounded.
        if pending.len() > 200 {
            pending.drain(..100);
        }
        // Added cases and pastes grow the buffers without end, and drawing is linear in their
        // length (highlighting, the unsaved-changes check), so a long soak would spend its time
        // on ever larger buffers instead of on new states. Past a size, start over as a user
        // reopening the workbench would.
        if index % 500 == 0
            && app
                .doc
                .as_ref()
                .is_some_and(|d| d.prompt.line_count() + d.tests.line_count() > MAX_LINES)
        {
            trail_push(trail, index, "restart".to_owned());
            let (fresh, effects) = App::new(setup(&mut rng));
            app = fresh;
            pending.clear();
            for effect in effects {
                answer(&mut rng, effect, &mut pending);
            }
        }
        if resized {
            terminal = Terminal::new(TestBackend::new(app.width, app.height)).expect("terminal");
            draw(&mut terminal, &app, &themes);
            frames += 1;
        } else {
            maybe_draw(&mut terminal, &app, &themes, index, draw_every, &mut frames);
        }
    }
    (frames, seen)
}

fn trail_push(trail: &mut VecDeque<String>, index: u64, event: String) {
    if trail.len() == 20 {
        trail.pop_front();
    }
    let event: String = event.chars().take(300).collect();
    trail.push_back(format!("#{index}: {event}"));
}

fn maybe_draw(
    terminal: &mut Terminal<TestBackend>,
    app: &App,
    themes: &[(String, Theme)],
    index: u64,
    draw_every: u64,
    frames: &mut u64,
) {
    if index % draw_every.max(1) == 0 {
        draw(terminal, app, themes);
        *frames += 1;
    }
}

fn draw(terminal: &mut Terminal<TestBackend>, app: &App, themes: &[(String, Theme)]) {
    let theme = themes
        .iter()
        .find(|(n, _)| *n == app.theme)
        .map_or(&themes[0].1, |(_, t)| t);
    terminal
        .draw(|f| promptdeck::tui::view::draw(f, app, theme))
        .expect("draw");
}

#[test]
fn tui_survives_a_random_event_stream() {
    let events = env_u64("PROMPTDECK_SOAK_EVENTS", 100_000);
    let draw_every = env_u64("PROMPTDECK_SOAK_DRAW_EVERY", 7);
    let seeds: Vec<u64> = match std::env::var("PROMPTDECK_SOAK_SEED") {
        Ok(seed) => vec![seed.parse().expect("PROMPTDECK_SOAK_SEED is a number")],
        Err(_) => (0..env_u64("PROMPTDECK_SOAK_SEEDS", 1))
            .map(|i| 0x5eed_2026 + i)
            .collect(),
    };
    for seed in seeds {
        let started = std::time::Instant::now();
        let mut trail = VecDeque::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            soak(seed, events, draw_every, &mut trail)
        }));
        match outcome {
            Ok((frames, seen)) => {
                eprintln!(
                    "seed {seed}: {events} events, {frames} frames drawn in {:.1?}; reached {seen:?}",
                    started.elapsed()
                );
                // A soak that never leaves the main screen proves little.
                if events >= 10_000 {
                    for state in [
                        "Main",
                        "Compare",
                        "History",
                        "Models",
                        "Help",
                        "Palette",
                        "Backends",
                        "Input",
                        "ConfirmQuit",
                        "run",
                    ] {
                        assert!(seen.contains(state), "seed {seed} never reached {state}");
                    }
                }
            }
            Err(_) => panic!(
                "the TUI panicked (message above) with seed {seed}; reproduce with \
                 PROMPTDECK_SOAK_SEED={seed} cargo test --test tui_soak\nlast events:\n{}",
                trail.iter().cloned().collect::<Vec<_>>().join("\n")
            ),
        }
    }
}

/// Regression (found by the soak): keeping the cursor visible after a jump to the end of a long
/// buffer recomputed the rows above it once per line scrolled, quadratic in the buffer's length
/// (the soak's tests buffer, grown by thousands of added cases, took minutes per event).
#[test]
fn scrolling_to_the_end_of_a_long_buffer_is_linear() {
    let text = "- vars: {question: a line of a long tests file}\n".repeat(200_000);
    let mut editor = promptdeck::tui::editor::Editor::new(&text);
    let started = std::time::Instant::now();
    editor.set_cursor(usize::MAX, 0);
    editor.scroll_to_cursor(30, 80, true);
    editor.scroll_to_cursor(30, 80, false);
    assert!(editor.scroll > 199_000, "scrolled to {}", editor.scroll);
    // Linear: a few milliseconds even unoptimized; quadratic: hours.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
