//! `promptdeck compare`: the suites of the named prompts on several backends, side by side.
//!
//! This is the CLI edge of [`crate::compare`] (which is pure): it selects prompts and cases as
//! `promptdeck test` does, adds deterministically perturbed copies of each case for `--perturb`,
//! runs what it needs through [`matrix::run_matrix`] (so every result is a stored run like any
//! other), or with `--reuse` takes the newest complete stored run of the same prompt version and
//! backend, turns the stored results into [`ResultSample`]s, and prints or writes the report.
//! [`compare_stored`] is the `--reuse` half on its own (stored runs only, nothing runs): the
//! workbench's Models view draws its charts from it, so the two agree on every number.
//!
//! Exit codes: 0 the comparison is complete; 1 a run was interrupted or a request failed (the
//! report is still printed and written, from what finished); 2 configuration or usage error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use super::matrix::{self, MatrixOptions, MatrixUnit, ProgressMode};
use super::{CliError, ColorChoice, Exit, OutputFormat};
use crate::backend::Parameters;
use crate::compare::{
    self, CompareOptions, CompareReport, HtmlOptions, Perturbation, ResultSample,
};
use crate::diagnostic::Diagnostic;
use crate::library::PromptUnit;
use crate::project::Project;
use crate::store::{CaseResult, Run, RunStatus, Store};
use crate::suite::TestCase;

/// What separates a case name from the perturbation in the stored name of a perturbed case
/// (`apples ~typos:20`, `apples ~typos:20 seed=7` with `--seed 7`): a tilde is unlikely in a
/// case description and reads as "roughly".
pub const PERTURBED_MARK: &str = " ~";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Prompts to compare on, as files or names under prompts/ (default: every prompt with
    /// cases).
    pub prompts: Vec<String>,
    /// Backends to compare, comma-separated: the columns of the comparison.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...", required = true)]
    pub backend: Vec<String>,
    /// Run each case N times (consistency is agreement across samples).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub samples: u32,
    /// Use the newest complete stored run of the current prompt version on each backend where
    /// one holds every case and sample needed; run only the rest.
    #[arg(long)]
    pub reuse: bool,
    /// Also run every case with perturbed variables: `--perturb` for the standard set, or
    /// `--perturb=LIST` (comma-separated, e.g. `typos:10,case-upper,whitespace`).
    #[arg(
        long,
        value_name = "LIST",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub perturb: Option<String>,
    /// Seed of the perturbations (the same seed perturbs the same way).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Write a self-contained HTML report (inline SVG radar chart and histograms).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write every metric and the run ids they came from as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// What to print on stdout: the table, or the JSON report.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Highlight the best value per metric in colour (without colour: `*`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Do not read or write the response cache.
    #[arg(long)]
    pub no_cache: bool,
}

pub const AFTER_HELP: &str = "Examples:
  promptdeck compare --backend local,gpt-4o-mini                 every prompt with cases
  promptdeck compare classify/zero-shot cot/math --backend local,local-hot --samples 3
  promptdeck compare --backend local,gpt-4o-mini --reuse         reuse stored runs of these versions
  promptdeck compare --backend a,b --perturb                     the standard perturbations too
  promptdeck compare --backend a,b --perturb=typos:10,case-upper --seed 7
  promptdeck compare --backend a,b --html report.html --json report.json
  promptdeck compare --backend a,b --format json > report.json

Metrics per backend: accuracy (weighted pass rate, per prompt; a case's weight is its numeric
`metadata.weight`, default 1), consistency (agreement across samples), robustness (the
prompt-injection suite, the pass-rate drop under --perturb), speed (latency p50/p95, time to
first token, output tokens/s) and cost (only for priced backends; local models have none).
Every run is stored; perturbed cases are stored as `CASE ~PERTURBATION` (`seed=S` added for
a --seed other than 0). With --reuse a stored
run counts when it is complete and holds every case (and perturbed case) with --samples samples.

Exit codes: 0 ok, 1 a run was interrupted or a request failed (the report is still written),
2 configuration or usage error (unknown backend, no cases, bad --perturb).";

/// What the adapter needs to know about a prompt beyond its stored results.
struct UnitInfo {
    prompt: String,
    injection: bool,
    /// Stored case name → (original case name, perturbation name, weight).
    cases: BTreeMap<String, (String, Option<String>, f64)>,
}

pub fn run(project: &Project, cwd: &Path, args: &CompareArgs) -> Result<Exit, CliError> {
    if args.samples == 0 {
        return Err(CliError::Usage("--samples must be at least 1".to_owned()));
    }
    let mut backends: Vec<String> = Vec::new();
    for name in &args.backend {
        if !project.config.backends.contains_key(name) {
            return Err(CliError::Usage(format!(
                "no backend `{name}` in promptdeck.toml (configured: {})",
                project
                    .config
                    .backends
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !backends.contains(name) {
            backends.push(name.clone());
        }
    }
    let perturbations = match args.perturb.as_deref() {
        None => Vec::new(),
        Some("") => Perturbation::standard_set(),
        Some(list) => Perturbation::parse_list(list)
            .map_err(|e| CliError::Usage(format!("--perturb: {e}")))?,
    };

    let (mut units, infos) = select_cases(project, cwd, args, &backends, &perturbations)?;

    // With --reuse: the stored runs that already hold what is needed; the rest still runs.
    let mut gathered: Vec<(usize, Run, Vec<CaseResult>)> = Vec::new();
    if args.reuse {
        let store = project.open_store()?;
        for (i, (u, info)) in units.iter_mut().zip(&infos).enumerate() {
            let (found, missing) =
                reuse_runs(project, &store, &u.file, info, &u.backends, args.samples)?;
            gathered.extend(found.into_iter().map(|(run, results)| (i, run, results)));
            u.backends = missing;
        }
        let reused = gathered.len();
        if reused > 0 {
            eprintln!(
                "reusing {}: {}",
                super::plural(reused, "stored run"),
                gathered
                    .iter()
                    .map(|(_, r, _)| format!("{} [{}] {}", r.prompt, r.backend, r.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    // Run whatever is not reused.
    let mut incomplete = false;
    let (to_run, run_infos): (Vec<MatrixUnit>, Vec<usize>) = units
        .into_iter()
        .enumerate()
        .filter(|(_, u)| !u.backends.is_empty())
        .map(|(i, u)| (u, i))
        .unzip();
    if !to_run.is_empty() {
        let progress = ProgressMode::detect();
        let options = MatrixOptions {
            samples: args.samples,
            overrides: Parameters::default(),
            no_cache: args.no_cache,
            progress,
            message: "compare",
        };
        let result = matrix::run_matrix(project, to_run, &options, &mut |_| Ok(()))?;
        incomplete |= result.outcome.interrupted;
        for (group, run_id) in result.plan.groups.iter().zip(&result.runs) {
            let Some(run) = result.store.get_run(*run_id)? else {
                continue;
            };
            let results = result.store.results(*run_id)?;
            incomplete |= results.iter().any(|r| r.error.is_some());
            gathered.push((run_infos[group.unit], run, results));
        }
    }

    let report = build_report(project, &infos, &gathered, &backends);
    let json = compare::to_json(&report).map_err(|e| CliError::Io(e.to_string()))?;
    if let Some(path) = &args.html {
        let html = compare::render_html(
            &report,
            &HtmlOptions {
                title: format!("promptdeck compare: {}", backends.join(" vs ")),
                generated_at: Some(crate::store::format_rfc3339(crate::store::now_millis())),
            },
        );
        write_file(&cwd.join(path), &html)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.json {
        write_file(&cwd.join(path), &json)?;
        eprintln!("wrote {}", path.display());
    }
    match args.format {
        OutputFormat::Json => println!("{json}"),
        OutputFormat::Text => {
            let table = compare::build_table(&report);
            let text = if super::diff::use_color(args.color) {
                compare::table::render_highlighted(&table, "\x1b[1;32m", "\x1b[0m")
            } else {
                compare::render_plain(&table)
            };
            print!("{text}");
            println!(
                "{} · {} · runs {}",
                super::plural(report.samples, "result"),
                super::plural(report.prompts.len(), "prompt"),
                report.run_ids.join(", ")
            );
        }
    }
    Ok(if incomplete {
        Exit::TestsFailed
    } else {
        Exit::Ok
    })
}

/// Loads the prompts, selects their cases, adds a perturbed copy of each case per perturbation
/// that changes its variables, and renders them all: the units to run on every backend and what
/// the adapter needs to read their results back.
fn select_cases(
    project: &Project,
    cwd: &Path,
    args: &CompareArgs,
    backends: &[String],
    perturbations: &[Perturbation],
) -> Result<(Vec<MatrixUnit>, Vec<UnitInfo>), CliError> {
    let loaded = matrix::load_units(project, cwd, &args.prompts)?;
    let mut units: Vec<MatrixUnit> = Vec::new();
    let mut infos: Vec<UnitInfo> = Vec::new();
    let mut errors = Vec::new();
    let mut skipped = Vec::new();
    for (file, unit) in loaded {
        let originals: Vec<&TestCase> = unit
            .suite
            .as_ref()
            .map(|s| s.cases.iter().collect())
            .unwrap_or_default();
        if originals.is_empty() {
            skipped.push(unit.prompt.name.clone());
            continue;
        }
        let (info, all) = unit_info(&unit, &originals, perturbations, args.seed);
        let refs: Vec<Option<&TestCase>> = all.iter().map(Some).collect();
        let prepared =
            matrix::prepare_cases(project, &unit, &refs, &Default::default(), &mut errors);
        units.push(MatrixUnit {
            file,
            unit,
            cases: prepared,
            backends: backends.to_vec(),
            vars: serde_json::Map::new(),
        });
        infos.push(info);
    }
    if errors.iter().any(Diagnostic::is_error) {
        return Err(CliError::Diagnostics(errors));
    }
    if !skipped.is_empty() {
        eprintln!(
            "no test cases, skipped: {} (add a NAME.tests.yaml beside each)",
            skipped.join(", ")
        );
    }
    if units.is_empty() {
        return Err(CliError::Usage(
            "nothing to compare: no prompt has test cases".to_owned(),
        ));
    }

    Ok((units, infos))
}

/// What the adapter needs to know about a prompt (from its tests file), and the cases to run:
/// the originals, then a perturbed copy of each per perturbation that changes its variables.
fn unit_info(
    unit: &PromptUnit,
    originals: &[&TestCase],
    perturbations: &[Perturbation],
    seed: u64,
) -> (UnitInfo, Vec<TestCase>) {
    let mut info = UnitInfo {
        prompt: unit.prompt.name.clone(),
        injection: compare::is_injection_suite(&unit.prompt.front_matter.tags),
        cases: BTreeMap::new(),
    };
    let mut all: Vec<TestCase> = Vec::new();
    // The store keys results by (case index, sample): perturbed copies get indices past
    // the file's own cases so they never overwrite an original's result.
    let mut next_index = originals.iter().map(|c| c.index).max().unwrap_or(0);
    for case in originals {
        let name = case.name();
        let weight = case_weight(case);
        info.cases
            .insert(name.clone(), (name.clone(), None, weight));
        all.push((*case).clone());
        for p in perturbations {
            let vars = p.apply(&case.vars, seed);
            // A perturbation that changes nothing would only measure noise.
            if vars == case.vars {
                continue;
            }
            let label = p.name();
            // Another seed perturbs differently, so it is part of the stored name: `--reuse`
            // must not take a run perturbed with another seed.
            let stored = if seed == 0 {
                format!("{name}{PERTURBED_MARK}{label}")
            } else {
                format!("{name}{PERTURBED_MARK}{label} seed={seed}")
            };
            info.cases
                .insert(stored.clone(), (name.clone(), Some(label), weight));
            let mut perturbed = (*case).clone();
            perturbed.vars = vars;
            perturbed.description = Some(stored);
            next_index += 1;
            perturbed.index = next_index;
            all.push(perturbed);
        }
    }
    (info, all)
}

/// For each backend, the newest reusable stored run of the *current* version of the unit's
/// files (as on disk), and the backends without one.
type Reused = (Vec<(Run, Vec<CaseResult>)>, Vec<String>);

fn reuse_runs(
    project: &Project,
    store: &dyn Store,
    file: &str,
    info: &UnitInfo,
    backends: &[String],
    samples: u32,
) -> Result<Reused, CliError> {
    let (snapshot, _) = crate::library::unit_files(project, file).map_err(CliError::Diagnostics)?;
    let version = crate::store::hash::version_id(&snapshot);
    let runs = store.runs_for_version(&version)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for backend in backends {
        match reusable(store, &runs, backend, info, samples)? {
            Some(pair) => found.push(pair),
            None => missing.push(backend.clone()),
        }
    }
    Ok((found, missing))
}

/// The report of the gathered runs (each with the index of its unit in `infos`), columns in
/// `backends` order.
fn build_report(
    project: &Project,
    infos: &[UnitInfo],
    gathered: &[(usize, Run, Vec<CaseResult>)],
    backends: &[String],
) -> CompareReport {
    let samples: Vec<ResultSample> = gathered
        .iter()
        .filter_map(|(i, run, results)| Some((infos.get(*i)?, run, results)))
        .flat_map(|(info, run, results)| samples_of(project, info, run, results))
        .collect();
    compare::compare(
        &samples,
        &CompareOptions {
            backends: backends.to_vec(),
            ..CompareOptions::default()
        },
    )
}

/// A comparison from stored runs alone: what `compare --reuse` would reuse, and nothing run.
#[derive(Debug, Clone)]
pub struct StoredComparison {
    pub report: CompareReport,
    /// (prompt, backend) pairs with no reusable stored run of the prompt's current version.
    pub missing: Vec<(String, String)>,
    /// Prompts left out, with why (no test cases, errors in their files).
    pub skipped: Vec<(String, String)>,
}

/// Compares `backends` on the stored runs of the current versions of `prompts` (library file
/// names such as `cot/math.prompty`; empty: every prompt with cases), `samples` samples each,
/// by the same rules as `compare --reuse` and without perturbations. A prompt whose files do
/// not load is skipped, not fatal: one broken prompt must not hide the library's comparison.
pub fn compare_stored(
    project: &Project,
    store: &dyn Store,
    prompts: &[String],
    backends: &[String],
    samples: u32,
) -> Result<StoredComparison, CliError> {
    let files = if prompts.is_empty() {
        project.list_prompts()?
    } else {
        prompts.to_vec()
    };
    let samples = samples.max(1);
    let mut infos = Vec::new();
    let mut gathered = Vec::new();
    let mut missing = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        let name = file.strip_suffix(".prompty").unwrap_or(&file).to_owned();
        let unit = match crate::library::load_unit(project, &file) {
            Ok((unit, _warnings)) => unit,
            Err(diagnostics) => {
                let why = diagnostics
                    .iter()
                    .find(|d| d.is_error())
                    .map_or_else(|| "does not load".to_owned(), |d| d.message.clone());
                skipped.push((name, why));
                continue;
            }
        };
        let originals: Vec<&TestCase> = unit
            .suite
            .as_ref()
            .map(|s| s.cases.iter().collect())
            .unwrap_or_default();
        if originals.is_empty() {
            skipped.push((name, "no test cases".to_owned()));
            continue;
        }
        let (info, _) = unit_info(&unit, &originals, &[], 0);
        let (found, absent) = reuse_runs(project, store, &file, &info, backends, samples)?;
        let i = infos.len();
        gathered.extend(found.into_iter().map(|(run, results)| (i, run, results)));
        missing.extend(absent.into_iter().map(|b| (info.prompt.clone(), b)));
        infos.push(info);
    }
    Ok(StoredComparison {
        report: build_report(project, &infos, &gathered, backends),
        missing,
        skipped,
    })
}

/// One stored run's results as comparison samples (the table in the module docs of
/// `compare`): cases the current suite no longer selects are left out.
fn samples_of(
    project: &Project,
    info: &UnitInfo,
    run: &Run,
    results: &[CaseResult],
) -> Vec<ResultSample> {
    let cost_known = priced(project, &run.backend);
    let window = context_window(project, &run.backend);
    results
        .iter()
        .filter_map(|r| {
            let (case, perturbation, weight) = info.cases.get(&r.case_name)?;
            Some(ResultSample {
                run_id: run.id.to_string(),
                backend: run.backend.clone(),
                prompt: info.prompt.clone(),
                prompt_version: run.version.clone(),
                case: case.clone(),
                sample: r.sample,
                perturbation: perturbation.clone(),
                injection_suite: info.injection,
                weight: *weight,
                passed: r.passed.unwrap_or(false),
                // The store keeps the verdict, not the weighted score: a pass scores 1.
                score: if r.passed == Some(true) { 1.0 } else { 0.0 },
                answer: r.output.trim().to_owned(),
                self_consistency: self_consistency(r),
                latency_ms: r.latency_ms as f64,
                ttft_ms: r.ttft_ms.map(|t| t as f64),
                tokens_in: r.usage.input,
                tokens_out: r.usage.output,
                cost_usd: cost_known.then_some(r.cost),
                context_window: window,
                largest_request_in: largest_request_in(r, &run.backend),
            })
        })
        .collect()
}

/// The input tokens of the largest request a technique sent to the compared backend (judges on
/// other backends do not count), from the stored record of its calls.
fn largest_request_in(result: &CaseResult, backend: &str) -> Option<u64> {
    let calls = result.technique.as_ref()?.get("calls")?.as_array()?;
    calls
        .iter()
        .filter(|call| call.get("backend").and_then(serde_json::Value::as_str) == Some(backend))
        .filter_map(|call| call.get("usage")?.get("input_tokens")?.as_u64())
        .max()
}

/// A case's weight: its numeric `metadata.weight`, else 1 (promptfoo's schema has none).
fn case_weight(case: &TestCase) -> f64 {
    case.metadata
        .get("weight")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(1.0)
}

/// The newest complete run of the version on `backend` that holds every case the comparison
/// needs with at least `samples` samples, with its results.
fn reusable(
    store: &dyn Store,
    runs: &[Run],
    backend: &str,
    info: &UnitInfo,
    samples: u32,
) -> Result<Option<(Run, Vec<CaseResult>)>, CliError> {
    let mut candidates: Vec<&Run> = runs
        .iter()
        .filter(|r| r.backend == backend && r.status == RunStatus::Complete)
        .collect();
    candidates.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    for run in candidates {
        let results = store.results(run.id)?;
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for r in &results {
            *counts.entry(r.case_name.as_str()).or_default() += 1;
        }
        if info
            .cases
            .keys()
            .all(|c| counts.get(c.as_str()).copied().unwrap_or(0) >= samples)
        {
            // More samples than asked for stay out, so every backend is measured alike.
            let results = results.into_iter().filter(|r| r.sample < samples).collect();
            return Ok(Some((run.clone(), results)));
        }
    }
    Ok(None)
}

/// Whether the backend's results carry a real price: an API backend with configured prices or
/// a model in the built-in price table. Local models and unknown models have none (the store's
/// `cost` is 0 for them, which must not read as "free").
fn priced(project: &Project, backend: &str) -> bool {
    match project.api_backend_config(backend) {
        Ok(Some(config)) => {
            config.prices.is_some() || crate::backend::default_prices(&config.model).is_some()
        }
        _ => false,
    }
}

/// The context window of the backend's model where promptdeck knows it without a request: for
/// a local backend the context the engine serves (the GGUF's declared length, capped as the
/// engine caps it), read from the model file's metadata if the file is already here (never
/// fetched for this). API backends report no window, so theirs is `None` ("–").
fn context_window(project: &Project, backend: &str) -> Option<u64> {
    let raw = project.config.backends.get(backend)?;
    if raw.kind != crate::project::BackendKind::Local {
        return None;
    }
    let configured = raw.model.as_ref().map(|m| project.root.join(m));
    let (path, _) = crate::local::models::locate_default(configured.as_deref()).ok()??;
    let gguf = crate::local::gguf::GgufModel::open(&path).ok()?;
    let window = crate::local::engine::usable_context(&gguf).ok()?;
    u64::try_from(window).ok()
}

/// Self-consistency agreement from a stored technique record.
fn self_consistency(result: &CaseResult) -> Option<f64> {
    result
        .technique
        .as_ref()?
        .get("votes")?
        .get("agreement")?
        .as_f64()
}

fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    // A temporary file renamed into place: a full disk or a kill leaves the previous file (or
    // none), never half a report that CI would then read as complete.
    super::versions::write_atomically(path, text.as_bytes()).map_err(|e| match e {
        CliError::Io(message) => CliError::Io(format!("cannot write {message}")),
        other => other,
    })
}
