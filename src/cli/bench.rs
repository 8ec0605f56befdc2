//! `promptdeck bench store`: fills a scratch store with many versions and outputs and times the
//! queries users wait on (`history`, `show`), plus the store's size against its raw payload.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{CliError, Exit};
use crate::store::{
    CaseResult, Message, RunMeta, RunStatus, SledStore, Store, TokenUsage, UnitFiles,
};

pub struct StoreBenchArgs {
    pub versions: usize,
    pub outputs: usize,
    pub prompts: usize,
}

pub fn store(args: &StoreBenchArgs) -> Result<Exit, CliError> {
    if args.prompts == 0 || args.versions < args.prompts {
        return Err(CliError::Usage(
            "--versions must be at least --prompts, and --prompts at least 1".to_owned(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("promptdeck-bench-{}", std::process::id()));
    let result = run_store_bench(&dir, args);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_store_bench(dir: &Path, args: &StoreBenchArgs) -> Result<Exit, CliError> {
    let store = SledStore::open(dir)?;
    let fill = Instant::now();
    let per_prompt = args.versions / args.prompts;
    let mut versions = Vec::with_capacity(args.versions);
    for p in 0..args.prompts {
        for v in 0..per_prompt {
            let unit = sample_unit(p, v);
            versions.push(
                store
                    .commit(&unit, &format!("edit {v}"), "bench")?
                    .id()
                    .to_owned(),
            );
        }
    }
    let commit_time = fill.elapsed();

    let fill_runs = Instant::now();
    let per_run = 100.min(args.outputs.max(1));
    let runs = args.outputs.div_ceil(per_run);
    for r in 0..runs {
        let version = &versions[r % versions.len()];
        let prompt = format!("bench/prompt-{:03}", (r % versions.len()) / per_prompt);
        let run = store.begin_run(RunMeta {
            version: version.clone(),
            prompt,
            backend: "local".to_owned(),
            model: "SmolLM2-135M-Instruct".to_owned(),
            parameters: serde_json::json!({"temperature": 0.0}),
        })?;
        let count = per_run.min(args.outputs - r * per_run);
        let results: Vec<CaseResult> = (0..count).map(|c| sample_result(c as u32)).collect();
        store.record_results(run, &results)?;
        store.finish_run(run, RunStatus::Complete)?;
    }
    let run_time = fill_runs.elapsed();

    // Measure what a command pays: a cold open of the filled store, then the queries.
    drop(store);
    let open_start = Instant::now();
    let store = SledStore::open(dir)?;
    let open_time = open_start.elapsed();

    let probes = 20.min(args.prompts);
    let mut history = Vec::new();
    let mut show = Vec::new();
    for i in 0..probes {
        let prompt = format!("bench/prompt-{:03}", i * args.prompts / probes);
        let start = Instant::now();
        let entries = store.history(&prompt)?;
        history.push(start.elapsed());
        let id = entries
            .first()
            .map(|e| e.version.id.clone())
            .unwrap_or_default();
        let start = Instant::now();
        let version = store.get_version(&id)?;
        let short = store.short_id(&id);
        let text: usize =
            version.map_or(0, |v| v.files.values().map(String::len).sum()) + short.len();
        show.push(start.elapsed());
        std::hint::black_box(text);
    }
    let mut export = Vec::new();
    store.export(&mut export)?;
    drop(store);
    let disk = dir_size(dir);
    let ratio = disk as f64 / export.len().max(1) as f64;
    let first_history = history.first().copied().unwrap_or_default();

    println!(
        "store benchmark: {} versions over {} prompts, {} outputs in {runs} runs",
        versions.len(),
        args.prompts,
        args.outputs
    );
    println!(
        "fill: commits {:.1} s ({:.2} ms each, flushed), runs {:.1} s",
        commit_time.as_secs_f64(),
        ms(commit_time) / versions.len() as f64,
        run_time.as_secs_f64()
    );
    println!(
        "history of one prompt ({per_prompt} versions): median {:.2} ms, max {:.2} ms over {probes} prompts",
        median_ms(&history),
        max_ms(&history)
    );
    println!(
        "show of one version: median {:.3} ms, max {:.3} ms",
        median_ms(&show),
        max_ms(&show)
    );
    println!(
        "cold open of the filled store {:.1} ms; open + first history {:.1} ms (what one `promptdeck history` pays)",
        ms(open_time),
        ms(open_time + first_history)
    );
    println!(
        "size on disk {:.1} MB; raw payload (JSONL export) {:.1} MB; ratio {ratio:.2}x",
        disk as f64 / 1e6,
        export.len() as f64 / 1e6
    );
    Ok(Exit::Ok)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().copied().map(ms).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn max_ms(samples: &[Duration]) -> f64 {
    samples.iter().copied().map(ms).fold(0.0, f64::max)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A realistic unit: a prompt of about 1.5 kB and a tests file of about 1 kB.
fn sample_unit(prompt: usize, version: usize) -> UnitFiles {
    let name = format!("bench/prompt-{prompt:03}");
    let body = format!(
        "---\nname: prompt-{prompt}\nmodel:\n  backend: local\n  parameters: {{temperature: 0.{v}}}\n---\nsystem:\n{}\nuser:\n{{{{ question }}}} (revision {v})\n",
        "You are a careful assistant who answers step by step and ends with `Answer: N`. "
            .repeat(16),
        v = version % 10
    );
    let tests = format!(
        "- description: case {version}\n  vars: {{question: 'What is {version} + 1?'}}\n  assert:\n    - type: contains\n      value: '{}'\n{}",
        version + 1,
        "- description: filler\n  vars: {question: 'How many apples are left?'}\n  assert: [{type: icontains, value: apples}]\n".repeat(6)
    );
    UnitFiles {
        prompt: name.clone(),
        files: [
            (format!("prompts/{name}.prompty"), body),
            (format!("prompts/{name}.tests.yaml"), tests),
        ]
        .into(),
    }
}

fn sample_result(case: u32) -> CaseResult {
    CaseResult {
        case,
        sample: 0,
        case_name: format!("case {case}"),
        messages: vec![
            Message {
                role: "system".to_owned(),
                content: "You are a careful assistant.".to_owned(),
            },
            Message {
                role: "user".to_owned(),
                content: format!("What is {case} + 1?"),
            },
        ],
        output: format!(
            "Let me think step by step. {case} plus one is {}. Answer: {}",
            case + 1,
            case + 1
        ),
        finish_reason: Some("stop".to_owned()),
        latency_ms: 120,
        ttft_ms: Some(20),
        usage: TokenUsage {
            input: 40,
            output: 24,
        },
        cost: 0.0,
        error: None,
        cached: false,
        assertions: Vec::new(),
        passed: Some(case % 5 != 0),
        technique: None,
    }
}

pub struct LocalBenchArgs {
    pub prompt_tokens: usize,
    pub tokens: usize,
    pub threads: Option<usize>,
    pub model: Option<std::path::PathBuf>,
    /// JSON from benches/llama_cpp_bench.py.
    pub reference: Option<std::path::PathBuf>,
    /// Also run the candle engine's two weight layouts.
    pub candle: bool,
}

/// llama.cpp's figures for the same model, as benches/llama_cpp_bench.py writes them.
#[derive(Debug, serde::Deserialize)]
struct Reference {
    engine: String,
    threads: usize,
    prompt_tokens: usize,
    tokens: usize,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    time_to_first_token_ms: f64,
}

/// Peak resident memory of this process, from /proc (Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `promptdeck bench local`: load time, prefill and decode speed, time to first token and peak
/// memory of the local engine (and, with `--candle`, of candle's weight layouts), with the
/// ratio to llama.cpp when its figures are given.
pub fn local(
    project: Option<&crate::project::Project>,
    args: &LocalBenchArgs,
) -> Result<Exit, CliError> {
    use crate::local::{Engine, EngineConfig, GenerateRequest, Prompt};
    let path = match &args.model {
        Some(path) => path.clone(),
        None => super::local::local_model_path(project, None)?.0,
    };
    let reference: Option<Reference> = match &args.reference {
        None => None,
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?,
            )
        }
    };
    let story =
        "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. ";
    let threads = args
        .threads
        .unwrap_or_else(crate::local::engine::default_threads);
    println!(
        "local engine benchmark: {} ({} prompt tokens, {} generated, {threads} threads)",
        path.display(),
        args.prompt_tokens,
        args.tokens,
    );
    // (native, exact): the default engine first, then candle's layouts on request.
    let mut modes = vec![(true, false)];
    if args.candle {
        modes.extend([(false, false), (false, true)]);
    }
    for (native, exact) in modes {
        let config = EngineConfig {
            exact,
            native,
            threads,
        };
        let mut engine =
            Engine::load(&path, &config).map_err(|e| CliError::Usage(e.to_string()))?;
        let load_ms = ms(engine.load_time());
        let text = story.repeat(args.prompt_tokens / 8 + 1);
        let ids = engine
            .prompt_tokens(&Prompt::Text(text))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let prompt: Vec<u32> = ids.into_iter().take(args.prompt_tokens.max(1)).collect();
        let request = GenerateRequest::new(Prompt::Tokens(prompt.clone()), args.tokens);
        let cancel = std::sync::atomic::AtomicBool::new(false);
        // The first generation warms caches and allocators; the second is the measurement.
        engine
            .generate(&request, &cancel, |_| {})
            .map_err(|e| CliError::Usage(e.to_string()))?;
        // The same prompt again would otherwise skip its prefill.
        engine.forget_cached_prompt();
        let done = engine
            .generate(&request, &cancel, |_| {})
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let t = done.timings;
        println!(
            "{:<58} load {load_ms:>6.0} ms  prefill {:>7.1} tok/s  decode {:>6.1} tok/s ({} tokens)  first token {:>6.1} ms",
            engine.weight_mode().describe(),
            t.prefill_tokens_per_s,
            t.decode_tokens_per_s,
            done.usage.completion_tokens,
            t.time_to_first_token_ms
        );
        // The next ReAct step or sample shares its prompt's start with the last request: one
        // token changed near the end leaves the rest to the kept keys and values.
        if prompt.len() > 8 {
            let mut tail_changed = prompt.clone();
            let at = prompt.len() - 4;
            tail_changed[at] = prompt[at - 1];
            let warm = GenerateRequest::new(Prompt::Tokens(tail_changed), 1);
            let kept = engine
                .generate(&warm, &cancel, |_| {})
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let k = kept.timings;
            if k.reused_prompt_tokens == 0 {
                println!(
                    "{:<58} {:>14}  not kept: this model's engine runs every prompt whole",
                    "  a prompt sharing its start", ""
                );
            } else {
                println!(
                    "{:<58} {:>14}  prefill {:>7.1} ms with {} of {} prompt tokens kept from the previous request ({:.1} ms cold, {:.1}x)",
                    "  a prompt sharing its start",
                    "",
                    k.prefill_ms,
                    k.reused_prompt_tokens,
                    prompt.len(),
                    t.prefill_ms,
                    t.prefill_ms / k.prefill_ms.max(f64::MIN_POSITIVE)
                );
            }
        }
        if let Some(r) = &reference {
            println!(
                "{:<58} {:>14}  prefill {:>7.2}x        decode {:>6.2}x              first token {:>6.2}x",
                "  ratio to the reference",
                "",
                t.prefill_tokens_per_s / r.prefill_tok_s,
                t.decode_tokens_per_s / r.decode_tok_s,
                r.time_to_first_token_ms / t.time_to_first_token_ms.max(f64::MIN_POSITIVE),
            );
        }
    }
    if let Some(r) = &reference {
        println!(
            "reference: {} ({} threads, {} prompt tokens, {} generated): prefill {:.1} tok/s, decode {:.1} tok/s, first token {:.1} ms",
            r.engine,
            r.threads,
            r.prompt_tokens,
            r.tokens,
            r.prefill_tok_s,
            r.decode_tok_s,
            r.time_to_first_token_ms
        );
        if r.threads != threads || r.prompt_tokens != args.prompt_tokens || r.tokens != args.tokens
        {
            println!(
                "note: the reference was run with other settings; the ratios compare unlike runs"
            );
        }
    }
    if let Some(peak) = peak_rss_mb() {
        println!("peak memory {peak:.0} MB");
    }
    Ok(Exit::Ok)
}

pub struct TuiBenchArgs {
    pub versions: usize,
    pub tokens: usize,
}

const BENCH_PROMPT: &str = "---\nname: bench\ninputs:\n  question: {type: string}\nsample:\n  question: How many apples?\n---\nsystem:\nYou answer briefly.\n{# a comment #}\nuser:\n{{ question }}\n";
const BENCH_TESTS: &str = "- description: apples\n  vars:\n    question: If I have 3 apples and buy 4 more, how many?\n  assert:\n    - type: contains\n      value: \"7\"\n";

/// `promptdeck bench tui`: start to first frame on a project whose store holds `versions`
/// versions of the open prompt, and input to frame while tokens stream in, both through the
/// real state machine and views, drawn into ratatui's in-memory backend at 120x40.
pub fn tui(args: &TuiBenchArgs) -> Result<Exit, CliError> {
    let dir = std::env::temp_dir().join(format!("promptdeck-tui-bench-{}", std::process::id()));
    let result = run_tui_bench(&dir, args);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_tui_bench(dir: &Path, args: &TuiBenchArgs) -> Result<Exit, CliError> {
    use crate::tui::app::{App, CellSpec, Effect, Msg};
    use crate::tui::keymap::{Key, KeyChord};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let io = |e: std::io::Error| CliError::Io(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir.join("prompts/bench")).map_err(io)?;
    std::fs::write(
        dir.join("promptdeck.toml"),
        "[defaults]\nbackend = \"local\"\n[backends.local]\nkind = \"local\"\n",
    )
    .map_err(io)?;
    std::fs::write(dir.join("prompts/bench/prompt.prompty"), BENCH_PROMPT).map_err(io)?;
    std::fs::write(dir.join("prompts/bench/prompt.tests.yaml"), BENCH_TESTS).map_err(io)?;

    // A store with `versions` versions of the prompt the workbench opens first.
    let fill = Instant::now();
    {
        let project = crate::project::Project::discover(dir, None)?;
        let store = project.open_store()?;
        for v in 0..args.versions {
            let mut files = std::collections::BTreeMap::new();
            files.insert(
                "prompts/bench/prompt.prompty".to_owned(),
                format!("{BENCH_PROMPT}\nrevision {v}\n"),
            );
            files.insert(
                "prompts/bench/prompt.tests.yaml".to_owned(),
                BENCH_TESTS.to_owned(),
            );
            let unit = UnitFiles {
                prompt: "bench/prompt".to_owned(),
                files,
            };
            store.commit(&unit, &format!("edit {v}"), "bench")?;
        }
    }
    let fill_time = fill.elapsed();

    // Start to first frame: what `promptdeck` does before its first draw.
    let start = Instant::now();
    let project = crate::project::Project::discover(dir, None)?;
    let keymap = crate::tui::terminal::load_keymap(&project)?;
    let theme = crate::tui::terminal::load_theme(&project, crate::tui::theme::DEFAULT_THEME)
        .map_err(CliError::Usage)?;
    let setup = crate::tui::terminal::setup(&project, keymap, &theme.name, 120, 40)?;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = crate::tui::worker::Worker::new(std::sync::Arc::new(project.clone()), tx);
    let (mut app, effects) = App::new(setup);
    let mut terminal =
        Terminal::new(TestBackend::new(120, 40)).map_err(|e| CliError::Io(e.to_string()))?;
    crate::tui::terminal::draw(&mut terminal, &app, &theme)?;
    let first_frame = start.elapsed();
    drop(worker);
    // Then the document (read from disk) in the second frame.
    for effect in effects {
        if let Effect::LoadDocument(file) = effect {
            let prompts = project.prompts_dir();
            let prompt = std::fs::read_to_string(prompts.join(&file)).map_err(io)?;
            let tests = std::fs::read_to_string(prompts.join("bench/prompt.tests.yaml")).ok();
            app.handle(Msg::DocumentLoaded {
                file_name: file,
                prompt,
                tests,
            });
        }
    }
    crate::tui::terminal::draw(&mut terminal, &app, &theme)?;
    let document_frame = start.elapsed();
    // What the store worker does meanwhile: a cold open and the pass counts and history.
    let store_start = Instant::now();
    let store = project.open_store()?;
    let history = store.history("bench/prompt")?;
    let store_time = store_start.elapsed();
    drop(store);

    // Input to frame while a generation streams: a thread keeps one core busy as the model
    // thread would; tokens arrive between key presses; each key is handled and drawn.
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spinner = {
        let busy = std::sync::Arc::clone(&busy);
        std::thread::spawn(move || {
            let mut x = 0u64;
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        })
    };
    app.handle(Msg::Key(KeyChord::plain(Key::Tab)));
    let fx = app.handle(Msg::Key(KeyChord::ctrl('r')));
    let run = fx
        .iter()
        .find_map(|e| match e {
            Effect::StartRun { run, cells, .. } => Some((*run, cells.clone())),
            _ => None,
        })
        .unwrap_or((0, Vec::<CellSpec>::new()));
    let words = [
        "To ", "solve ", "this, ", "we ", "add ", "3 ", "and ", "4 ", "to ", "get ", "7. ",
    ];
    let mut input_frames = Vec::new();
    let mut stream_frames = Vec::new();
    for t in 0..args.tokens {
        app.handle(Msg::RunChunk {
            run: run.0,
            cell: 0,
            text: words[t % words.len()].to_owned(),
        });
        if t % 8 == 7 {
            let s = Instant::now();
            crate::tui::terminal::draw(&mut terminal, &app, &theme)?;
            stream_frames.push(s.elapsed());
        }
        if t % 20 == 19 {
            let s = Instant::now();
            let c = if t % 40 == 19 {
                Key::Char('x')
            } else {
                Key::Backspace
            };
            app.handle(Msg::Key(KeyChord::plain(c)));
            crate::tui::terminal::draw(&mut terminal, &app, &theme)?;
            input_frames.push(s.elapsed());
        }
    }
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = spinner.join();
    let p99 = |samples: &[Duration]| {
        let mut sorted: Vec<f64> = samples.iter().copied().map(ms).collect();
        sorted.sort_by(f64::total_cmp);
        sorted
            .get((sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "tui benchmark: store of {} versions of the open prompt (filled in {:.1} s), 120x40 frames",
        args.versions,
        fill_time.as_secs_f64()
    );
    println!(
        "start to first frame {:.1} ms; with the prompt open {:.1} ms (the store is not on this path)",
        ms(first_frame),
        ms(document_frame)
    );
    println!(
        "store worker meanwhile: cold open + history of {} versions {:.1} ms",
        history.len(),
        ms(store_time)
    );
    println!(
        "input to frame while {} tokens stream (one core busy): median {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} keys",
        args.tokens,
        median_ms(&input_frames),
        p99(&input_frames),
        max_ms(&input_frames),
        input_frames.len()
    );
    println!(
        "streaming frame: median {:.2} ms, max {:.2} ms (the output at {} characters)",
        median_ms(&stream_frames),
        max_ms(&stream_frames),
        app.run
            .as_ref()
            .and_then(|r| r.cells.first())
            .map_or(0, |c| c.text.len())
    );
    Ok(Exit::Ok)
}
