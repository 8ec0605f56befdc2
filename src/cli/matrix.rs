//! The shared driver of `promptdeck run` (several cases, backends or samples) and
//! `promptdeck test`: load and render the prompts' cases, open the backends, commit each prompt
//! as a version and begin one stored run per prompt and backend, then execute the plan with
//! progress on stderr and Ctrl-C handling, and finish the stored runs.
//!
//! Everything that can be wrong with the user's files or configuration is found before the
//! first request (exit 2); after that, only requests fail.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::run::open_backend;
use super::{CliError, print_diagnostics};
use crate::backend::Parameters;
use crate::diagnostic::Diagnostic;
use crate::library::{self, PromptUnit};
use crate::project::Project;
use crate::run::{
    self, BackendHandle, Cancel, Event, Outcome, Plan, PreparedCase, PreparedUnit, RunInputs,
    TechniqueContext, UnitSpec,
};
use crate::store::{RunId, RunMeta, RunStatus, SledStore, Store};

/// Loads the named prompts (all of `prompts/` when none is named). Any error in them is
/// returned as diagnostics (exit 2); warnings are printed.
pub fn load_units(
    project: &Project,
    cwd: &Path,
    names: &[String],
) -> Result<Vec<(String, PromptUnit)>, CliError> {
    let files = if names.is_empty() {
        project.list_prompts()?
    } else {
        names
            .iter()
            .map(|n| project.resolve_prompt(n, cwd).map_err(CliError::Usage))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut units = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        if units.iter().any(|(f, _)| *f == file) {
            continue;
        }
        match library::load_unit(project, &file) {
            Ok((unit, warnings)) => {
                print_diagnostics(&warnings, cwd);
                units.push((file, unit));
            }
            Err(diagnostics) => errors.extend(diagnostics),
        }
    }
    if errors.iter().any(Diagnostic::is_error) {
        return Err(CliError::Diagnostics(errors));
    }
    Ok(units)
}

/// Renders the given cases of a unit (`None` in the list: the sample variables). Render errors
/// are collected into `errors`.
pub fn prepare_cases(
    project: &Project,
    unit: &PromptUnit,
    cases: &[Option<&crate::suite::TestCase>],
    overrides: &Map<String, Value>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<PreparedCase> {
    let mut prepared = Vec::with_capacity(cases.len());
    for case in cases {
        match library::render_case(project, unit, *case, overrides) {
            Ok(rendered) => prepared.push(PreparedCase {
                case: case.cloned(),
                rendered,
            }),
            Err(diagnostic) => errors.push(diagnostic),
        }
    }
    prepared
}

/// Opens each backend once. The run's concurrency on a backend is its configured
/// `concurrency` (API default 4); the local engine serves one request at a time.
pub fn open_backends(project: &Project, names: &[String]) -> Result<Vec<BackendHandle>, CliError> {
    names
        .iter()
        .map(|name| {
            let concurrency = match project.api_backend_config(name).map_err(CliError::Usage)? {
                Some(config) => config.concurrency as usize,
                None => 1,
            };
            let opened = open_backend(project, name)?;
            Ok(BackendHandle {
                name: name.clone(),
                model: opened.model,
                backend: opened.backend,
                concurrency,
                parameters: project.backend_sampling(name),
            })
        })
        .collect()
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// Plain lines: failures as they happen and a line per tenth done.
    Lines,
    /// Nothing (benchmarks, `--format json` when asked to be quiet).
    Quiet,
}

impl ProgressMode {
    pub fn detect() -> ProgressMode {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// What a matrix needs beyond the units.
pub struct MatrixOptions {
    pub samples: u32,
    pub overrides: Parameters,
    pub no_cache: bool,
    pub progress: ProgressMode,
    /// Recorded with each stored run (`promptdeck test`, `promptdeck run`).
    pub message: &'static str,
}

/// A prompt to run: its unit, the prepared cases, and the backends it runs on.
pub struct MatrixUnit {
    pub file: String,
    pub unit: PromptUnit,
    pub cases: Vec<PreparedCase>,
    pub backends: Vec<String>,
    /// `--var` values over the cases' own (techniques render their stages with them).
    pub vars: Map<String, Value>,
}

/// The stored runs of a matrix and what the executor returned.
pub struct MatrixResult {
    pub plan: Arc<Plan>,
    pub inputs: Arc<RunInputs>,
    pub outcome: Outcome,
    /// Per plan group: the stored run.
    pub runs: Vec<RunId>,
    /// Per unit: the version that ran.
    pub versions: Vec<String>,
    pub store: SledStore,
}

/// Commits every unit, begins the stored runs, executes the plan and finishes the runs.
/// `before_run` sees the open store before anything is written (baselines are read there, so
/// this run cannot be its own baseline).
pub fn run_matrix(
    project: &Project,
    units: Vec<MatrixUnit>,
    options: &MatrixOptions,
    before_run: &mut dyn FnMut(&dyn Store) -> Result<(), CliError>,
) -> Result<MatrixResult, CliError> {
    let specs: Vec<UnitSpec> = units
        .iter()
        .map(|u| UnitSpec {
            prompt: u.unit.prompt.name.clone(),
            cases: u.cases.len(),
            backends: u.backends.clone(),
        })
        .collect();
    let plan =
        Arc::new(run::plan(&specs, options.samples).map_err(|e| CliError::Usage(e.to_string()))?);
    // Backends are opened before the store is touched: a missing key is a configuration error
    // that must not leave a run behind.
    let backends = open_backends(project, &plan.backends)?;
    // Judges are configuration too: a model-graded assertion without one stops here.
    let judge_names = super::run::open_judges_plan(
        project,
        units
            .iter()
            .flat_map(|u| u.cases.iter().filter_map(|c| c.case.as_ref())),
    )?;
    let judges = match backends.first() {
        Some(first) => {
            super::run::open_judges(project, judge_names, (&first.name, &first.backend))?
        }
        None => crate::execution::Judges {
            default: project.config.judge.clone(),
            backends: BTreeMap::new(),
        },
    };

    let store = project.open_store()?;
    before_run(&store)?;
    let author = super::versions::author(project);
    let mut versions = Vec::with_capacity(units.len());
    for u in &units {
        let (snapshot, _) = library::unit_files(project, &u.file).map_err(CliError::Diagnostics)?;
        versions.push(
            store
                .commit(&snapshot, options.message, &author)?
                .id()
                .to_owned(),
        );
    }
    let mut runs = Vec::with_capacity(plan.groups.len());
    for group in &plan.groups {
        let backend = &backends[group.backend];
        let unit = &units[group.unit];
        let parameters = unit
            .cases
            .first()
            .map(|c| {
                c.rendered
                    .parameters
                    .overlay(&backend.parameters)
                    .overlay(&options.overrides)
            })
            .unwrap_or_default();
        runs.push(store.begin_run(RunMeta {
            version: versions[group.unit].clone(),
            prompt: unit.unit.prompt.name.clone(),
            backend: backend.name.clone(),
            model: backend.model.clone(),
            parameters: serde_json::to_value(&parameters).unwrap_or_default(),
        })?);
    }

    let vars: Vec<Map<String, Value>> = units.iter().map(|u| u.vars.clone()).collect();
    let inputs = Arc::new(RunInputs {
        units: units
            .into_iter()
            .map(|u| PreparedUnit {
                unit: u.unit,
                cases: u.cases,
            })
            .collect(),
        backends,
        overrides: options.overrides.clone(),
        no_cache: options.no_cache,
        techniques: Some(TechniqueContext {
            project: project.clone(),
            judges,
            vars,
        }),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?;
    let cancel = Cancel::new();
    let mut progress = Progress::new(options.progress, &plan, &inputs);
    let outcome = runtime.block_on(async {
        let on_signal = cancel.clone();
        let signal = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let outcome = run::execute(
            Arc::clone(&plan),
            Arc::clone(&inputs),
            Some(run::Sink {
                store: &store,
                runs: &runs,
            }),
            cancel.clone(),
            |event| progress.on_event(&event),
        )
        .await;
        signal.abort();
        outcome
    });
    progress.finish(&outcome);
    // Workers of a cancelled run may still be dropping their requests; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(200));

    let status = if outcome.interrupted || outcome.store_error.is_some() {
        RunStatus::Interrupted
    } else {
        RunStatus::Complete
    };
    for &run in &runs {
        let finished = store.finish_run(run, status);
        // A store that already failed to take results usually fails this too; its first error
        // is the one to report, and a run left `running` reads as interrupted once this
        // process has exited.
        if outcome.store_error.is_none() {
            finished?;
        }
    }
    if let Some(error) = &outcome.store_error {
        return Err(CliError::Io(format!(
            "could not store results ({error}); the runs are marked interrupted"
        )));
    }
    Ok(MatrixResult {
        plan,
        inputs,
        outcome,
        runs,
        versions,
        store,
    })
}

/// Progress on stderr: done, failed, running, output tokens per second and cost so far.
struct Progress<'a> {
    mode: ProgressMode,
    plan: &'a Plan,
    inputs: &'a RunInputs,
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    done: usize,
    failed: usize,
    running: usize,
    tokens: u64,
    cost: f64,
    next_line: usize,
    /// Whether jobs have several samples, so lines name the sample.
    sampled: bool,
}

impl<'a> Progress<'a> {
    fn new(mode: ProgressMode, plan: &'a Plan, inputs: &'a RunInputs) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(plan.jobs.len() as u64);
            // The template is a constant known to parse; fall back to the default style anyway.
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            mode,
            plan,
            inputs,
            bar,
            start: Instant::now(),
            done: 0,
            failed: 0,
            running: 0,
            tokens: 0,
            cost: 0.0,
            next_line: 1,
            sampled: plan.jobs.iter().any(|j| j.sample > 0),
        }
    }

    fn describe(&self, job: usize) -> String {
        let job = self.plan.jobs[job];
        let unit = &self.inputs.units[job.unit];
        let case = &unit.cases[job.case];
        let label = case
            .case
            .as_ref()
            .map_or_else(|| "(sample)".to_owned(), crate::suite::TestCase::label);
        let sample = if self.sampled {
            format!(" sample {}", job.sample + 1)
        } else {
            String::new()
        };
        format!(
            "{} {label} [{}]{sample}",
            unit.unit.prompt.name, self.inputs.backends[job.backend].name
        )
    }

    fn status(&self) -> String {
        let seconds = self.start.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{} failed · {} running · {:.1} tok/s · ${:.4}",
            self.failed,
            self.running,
            self.tokens as f64 / seconds,
            self.cost
        )
    }

    fn on_event(&mut self, event: &Event<'_>) {
        match event {
            Event::Started { .. } => self.running += 1,
            Event::Finished { job, executed } => {
                self.running = self.running.saturating_sub(1);
                self.done += 1;
                self.tokens += executed.record.usage.output;
                if !executed.record.cached {
                    self.cost += executed.record.cost;
                }
                let failed =
                    executed.record.passed == Some(false) || executed.record.error.is_some();
                if failed {
                    self.failed += 1;
                }
                let line = failed.then(|| {
                    let what = if executed.record.error.is_some() {
                        "ERROR"
                    } else {
                        "FAIL"
                    };
                    format!(
                        "{what} {}: {}",
                        self.describe(*job),
                        crate::report::snippet(&executed.reason, 200)
                    )
                });
                match self.mode {
                    ProgressMode::Bar => {
                        if let Some(bar) = &self.bar {
                            if let Some(line) = line {
                                bar.println(line);
                            }
                            bar.set_position(self.done as u64);
                            bar.set_message(self.status());
                        }
                    }
                    ProgressMode::Lines => {
                        if let Some(line) = line {
                            eprintln!("{line}");
                        }
                        let total = self.plan.jobs.len();
                        // A line per tenth done keeps CI logs short for thousands of cases.
                        if self.done * 10 >= self.next_line * total {
                            while self.done * 10 >= self.next_line * total {
                                self.next_line += 1;
                            }
                            eprintln!("[{}/{total}] {}", self.done, self.status());
                        }
                    }
                    ProgressMode::Quiet => {}
                }
            }
            Event::StoreFailed { error } => {
                if self.mode != ProgressMode::Quiet {
                    eprintln!("error: storing results failed: {error}");
                }
            }
        }
    }

    fn finish(&mut self, outcome: &Outcome) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.mode != ProgressMode::Quiet && outcome.interrupted {
            eprintln!(
                "interrupted: {} of {} finished results kept; the run is marked interrupted",
                self.done,
                self.plan.jobs.len()
            );
        }
    }
}

/// Parses `--var` overrides for a unit, as `render` and `run` do.
pub fn overrides_for(unit: &PromptUnit, vars: &[String]) -> Result<Map<String, Value>, CliError> {
    super::render::parse_overrides(&unit.prompt, vars)
}

/// Groups finished jobs by (unit, backend, case), samples in order: what a case's verdict is
/// computed from.
pub fn by_case(result: &MatrixResult) -> BTreeMap<(usize, usize, usize), Vec<usize>> {
    let mut cases: BTreeMap<(usize, usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, job) in result.plan.jobs.iter().enumerate() {
        cases
            .entry((job.unit, job.backend, job.case))
            .or_default()
            .push(i);
    }
    cases
}
