//! `promptdeck test`: every case of every prompt (or the named ones) on their backends, scored,
//! stored as runs, compared with a baseline (a label, version or run in the store, or a
//! committed baseline file), reported (stdout, JUnit, JSON, Markdown) and turned into an exit
//! code: 0 nothing fails, 1 a case fails or regresses, 2 a configuration or template error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::matrix::{self, MatrixOptions, MatrixUnit, ProgressMode};
use super::{CliError, Exit};
use crate::backend::Parameters;
use crate::diagnostic::{Diagnostic, Position};
use crate::project::Project;
use crate::refs::{self, Resolved};
use crate::report::compare::{self, BaselineCase, BaselineFile, ChangeKind, FailOn};
use crate::report::{CaseKey, CaseOutcome, SampleOutcome, TestReport, formats};
use crate::run::plan::{aggregate, required_passes};
use crate::store::{CaseResult, RunStatus, Store};

/// The label `promptdeck test` compares with by default and `--update-baseline` moves.
pub const BASELINE_LABEL: &str = "baseline";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOnArg {
    /// Any case that does not pass fails the command.
    Any,
    /// Only changes for the worse against the baseline: regressions and new failures.
    Regression,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Prompts to test, as files or names under prompts/ (default: every prompt with cases).
    pub prompts: Vec<String>,
    /// Backends to run on, comma-separated (default: each prompt's own backend).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub backend: Vec<String>,
    /// Compare with a label (of each prompt), a version id or a run id (default: the
    /// `baseline` label where it exists).
    #[arg(
        long,
        value_name = "LABEL|VERSION|RUN",
        conflicts_with = "baseline_file"
    )]
    pub baseline: Option<String>,
    /// Compare with a committed baseline file (and write it with --update-baseline).
    #[arg(long, value_name = "FILE")]
    pub baseline_file: Option<PathBuf>,
    /// After a green run move the baseline label to the tested versions; with --baseline-file,
    /// write every case's verdict and output to the file after any complete run.
    #[arg(long)]
    pub update_baseline: bool,
    /// What fails the command: any failing case, or only regressions and new failures.
    #[arg(long, value_enum, default_value_t = FailOnArg::Any)]
    pub fail_on: FailOnArg,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a JSON report with every result.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a Markdown summary (for pull-request comments).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Run each case N times; a case passes when `min-pass` (default: all) of them pass.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
    /// Do not read or write the response cache.
    #[arg(long)]
    pub no_cache: bool,
}

pub const AFTER_HELP: &str = "Examples:
  promptdeck test                                   every prompt, compared with the `baseline` label
  promptdeck test cot/math classify/few-shot --backend local,gpt-4o-mini
  promptdeck test --junit junit.xml --markdown summary.md --json results.json
  promptdeck test --update-baseline                 move the `baseline` label after a green run
  promptdeck test --baseline-file tests/baseline.json --fail-on regression
  promptdeck test --baseline-file tests/baseline.json --update-baseline   (re)write the file
  promptdeck test --repeat 5                        with `min-pass: 3` in a case, 3 of 5 must pass

Exit codes: 0 nothing fails, 1 a case fails or regresses (with --fail-on regression: only
regressions and new failures), 2 configuration, template or usage error.";

/// What a finished test run produced, for callers that need more than the exit code
/// (`bench harness`).
pub struct TestRun {
    pub exit: Exit,
    pub report: TestReport,
    pub results: usize,
}

pub fn run(project: &Project, cwd: &Path, args: &TestArgs) -> Result<Exit, CliError> {
    Ok(execute(project, cwd, args, ProgressMode::detect(), true)?.exit)
}

/// The whole command; `print` writes the summary to stdout.
pub fn execute(
    project: &Project,
    cwd: &Path,
    args: &TestArgs,
    progress: ProgressMode,
    print: bool,
) -> Result<TestRun, CliError> {
    if args.repeat == 0 {
        return Err(CliError::Usage("--repeat must be at least 1".to_owned()));
    }
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
    }
    let baseline_file = args.baseline_file.as_ref().map(|f| cwd.join(f));
    let previous_file = match &baseline_file {
        Some(path) => read_baseline_file(path, args.update_baseline)?,
        None => None,
    };

    let loaded = matrix::load_units(project, cwd, &args.prompts)?;
    let mut units = Vec::new();
    let mut errors = Vec::new();
    let mut skipped = Vec::new();
    for (file, unit) in loaded {
        let cases: Vec<Option<&crate::suite::TestCase>> = unit
            .suite
            .as_ref()
            .map(|s| s.cases.iter().map(Some).collect())
            .unwrap_or_default();
        if cases.is_empty() {
            skipped.push(unit.prompt.name.clone());
            continue;
        }
        let prepared =
            matrix::prepare_cases(project, &unit, &cases, &Default::default(), &mut errors);
        let backends = if args.backend.is_empty() {
            vec![prepared.first().map_or_else(
                || project.config.default_backend.clone(),
                |c| c.rendered.backend.clone(),
            )]
        } else {
            args.backend.clone()
        };
        units.push(MatrixUnit {
            file,
            unit,
            cases: prepared,
            backends,
            vars: serde_json::Map::new(),
        });
    }
    if errors.iter().any(Diagnostic::is_error) {
        return Err(CliError::Diagnostics(errors));
    }
    if !skipped.is_empty() && progress != ProgressMode::Quiet {
        eprintln!(
            "no test cases, skipped: {} (add a NAME.tests.yaml beside each)",
            skipped.join(", ")
        );
    }
    if units.is_empty() {
        return Err(CliError::Usage(
            "nothing to test: no prompt has test cases".to_owned(),
        ));
    }
    let min_pass: BTreeMap<(String, String), Option<u32>> = units
        .iter()
        .flat_map(|u| {
            u.cases.iter().filter_map(|c| {
                c.case
                    .as_ref()
                    .map(|t| ((u.unit.prompt.name.clone(), t.name()), t.min_pass))
            })
        })
        .collect();
    let prompt_names: Vec<String> = units.iter().map(|u| u.unit.prompt.name.clone()).collect();
    let prompt_backends: Vec<(String, Vec<String>)> = units
        .iter()
        .map(|u| (u.unit.prompt.name.clone(), u.backends.clone()))
        .collect();

    let mut baseline: Option<(String, Vec<BaselineCase>)> = None;
    let mut read_baseline = |store: &dyn Store| -> Result<(), CliError> {
        baseline = match (&previous_file, &baseline_file) {
            (Some(file), Some(path)) => Some((
                super::relative(path, cwd).display().to_string(),
                file.cases.clone(),
            )),
            (None, Some(_)) => None,
            _ => baseline_from_store(
                store,
                args.baseline.as_deref(),
                &prompt_names,
                &prompt_backends,
                &min_pass,
            )?,
        };
        Ok(())
    };
    let options = MatrixOptions {
        samples: args.repeat,
        overrides: Parameters::default(),
        no_cache: args.no_cache,
        progress,
        message: "test",
    };
    let result = matrix::run_matrix(project, units, &options, &mut read_baseline)?;

    // Each case's samples add up to its verdict.
    let grouped = matrix::by_case(&result);
    let mut outcomes = Vec::new();
    let mut results = 0;
    for ((unit_index, backend_index, case_index), jobs) in grouped {
        let unit = &result.inputs.units[unit_index];
        let case = &unit.cases[case_index];
        let backend = &result.inputs.backends[backend_index];
        let samples: Vec<SampleOutcome> = jobs
            .iter()
            .filter_map(|&j| result.outcome.results[j].as_ref())
            .filter(|e| !e.interrupted)
            .map(|e| {
                results += 1;
                SampleOutcome {
                    sample: e.record.sample,
                    passed: e.record.passed,
                    score: e.score,
                    output: e.record.output.clone(),
                    reason: e.reason.clone(),
                    error: e.record.error.clone(),
                    latency_ms: e.record.latency_ms,
                    usage: e.record.usage,
                    cost: e.record.cost,
                    cached: e.record.cached,
                    assertions: e.assertions.clone(),
                }
            })
            .collect();
        if samples.is_empty() {
            // Interrupted before it ran: no verdict to report or compare.
            continue;
        }
        let min = case.case.as_ref().and_then(|c| c.min_pass);
        outcomes.push(CaseOutcome::from_samples(
            CaseKey {
                prompt: unit.unit.prompt.name.clone(),
                backend: backend.name.clone(),
                case: case.name(),
                index: case.index(),
            },
            backend.model.clone(),
            required_passes(min, args.repeat),
            samples,
        ));
    }
    let interrupted = result.outcome.interrupted;
    let comparison = baseline
        .as_ref()
        .map(|(name, cases)| compare::compare(&outcomes, cases, name));
    let fail_on = match args.fail_on {
        FailOnArg::Any => FailOn::Any,
        FailOnArg::Regression => FailOn::Regression,
    };
    let failing = compare::failing(
        &outcomes,
        baseline.as_ref().map_or(&[][..], |(_, c)| c.as_slice()),
        fail_on,
    )
    .len();
    let regressions = comparison
        .as_ref()
        .map_or(0, |c| c.count(ChangeKind::Regression));
    let report = TestReport::new(outcomes, comparison, interrupted);
    let green = failing == 0 && regressions == 0 && !interrupted;

    for (path, text) in [
        (&args.junit, formats::junit as fn(&TestReport) -> String),
        (&args.json, formats::json),
        (&args.markdown, formats::markdown),
    ] {
        if let Some(path) = path {
            write_file(&cwd.join(path), &text(&report))?;
        }
    }
    if print {
        print_report(&report, &result, green);
    }

    if args.update_baseline {
        if let Some(path) = &baseline_file {
            if interrupted {
                eprintln!(
                    "not writing {}: the run was interrupted",
                    super::relative(path, cwd).display()
                );
            } else {
                let file = BaselineFile::build(&report.outcomes, previous_file.as_ref());
                write_file(path, &file.to_text())?;
                eprintln!(
                    "wrote {} ({} cases)",
                    super::relative(path, cwd).display(),
                    file.cases.len()
                );
            }
        }
        let label = match args.baseline.as_deref() {
            Some(name)
                if crate::store::model::validate_label(name).is_ok() && !looks_like_id(name) =>
            {
                name
            }
            _ => BASELINE_LABEL,
        };
        if green {
            let by = super::versions::author(project);
            for (unit, version) in result.inputs.units.iter().zip(&result.versions) {
                result
                    .store
                    .set_label(&unit.unit.prompt.name, label, version, &by)?;
            }
            eprintln!(
                "moved label `{label}` of {} to the tested versions",
                super::plural(result.versions.len(), "prompt")
            );
        } else {
            eprintln!("label `{label}` not moved: the run is not green");
        }
    }
    Ok(TestRun {
        exit: if green { Exit::Ok } else { Exit::TestsFailed },
        report,
        results,
    })
}

fn looks_like_id(text: &str) -> bool {
    text.len() >= 7 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// Reads the baseline file. A missing file is fine when it is about to be written.
fn read_baseline_file(path: &Path, update: bool) -> Result<Option<BaselineFile>, CliError> {
    if !path.exists() {
        if update {
            return Ok(None);
        }
        return Err(CliError::Usage(format!(
            "baseline file {} does not exist; create it with `promptdeck test --baseline-file {} --update-baseline`",
            path.display(),
            path.display()
        )));
    }
    let text = crate::user_file::read_text(path)
        .map_err(|e| CliError::Diagnostics(vec![e.to_diagnostic()]))?;
    BaselineFile::parse(&text).map(Some).map_err(|e| {
        let position = match &e {
            compare::BaselineFileError::Syntax { line, column, .. } => Position {
                line: *line,
                col: *column,
            },
            compare::BaselineFileError::NewerFormat { .. } => Position::START,
        };
        let message = match e {
            compare::BaselineFileError::Syntax { message, .. } => {
                format!("not a promptdeck baseline file: {message}")
            }
            other => other.to_string(),
        };
        CliError::Diagnostics(vec![Diagnostic::error(path, position, message)])
    })
}

/// The baseline from the store: a label of each prompt (default `baseline`, when any prompt
/// has it), a version, or a run. `None` when the default label exists nowhere.
fn baseline_from_store(
    store: &dyn Store,
    reference: Option<&str>,
    prompts: &[String],
    backends: &[(String, Vec<String>)],
    min_pass: &BTreeMap<(String, String), Option<u32>>,
) -> Result<Option<(String, Vec<BaselineCase>)>, CliError> {
    let backends_of = |prompt: &str| -> &[String] {
        backends
            .iter()
            .find(|(p, _)| p == prompt)
            .map_or(&[][..], |(_, b)| b.as_slice())
    };
    let label = match reference {
        None => Some(BASELINE_LABEL),
        Some(text) if !text.contains('@') && !looks_like_id(text) => Some(text),
        Some(_) => None,
    };
    if let Some(label) = label {
        let mut cases = Vec::new();
        let mut found = false;
        for prompt in prompts {
            if let Some(l) = store.get_label(prompt, label)? {
                found = true;
                for backend in backends_of(prompt) {
                    cases.extend(cases_of_version(
                        store, &l.version, prompt, backend, min_pass,
                    )?);
                }
            }
        }
        if !found {
            return match reference {
                None => Ok(None),
                Some(_) => Err(CliError::Usage(format!(
                    "no tested prompt has a label `{label}` (set one with `promptdeck label set {label} PROMPT@latest` or `promptdeck test --update-baseline --baseline {label}`)"
                ))),
            };
        }
        return Ok(Some((format!("label {label}"), cases)));
    }
    // Checked above: reference is Some here.
    let text = reference.unwrap_or_default();
    let resolved = refs::resolve(store, text, &|p| Some(p.to_owned()))
        .map_err(|e| CliError::Usage(format!("--baseline {text}: {e}")))?;
    match resolved {
        Resolved::Version(version) => {
            let mut cases = Vec::new();
            for backend in backends_of(&version.prompt) {
                cases.extend(cases_of_version(
                    store,
                    &version.id,
                    &version.prompt,
                    backend,
                    min_pass,
                )?);
            }
            Ok(Some((format!("version {}", store.short_id(&version.id)), cases)))
        }
        Resolved::Run(run) => {
            let results = store.results(run.id)?;
            Ok(Some((
                format!("run {}", store.short_run_id(run.id)),
                cases_of_results(&run.prompt, &run.backend, &results, min_pass),
            )))
        }
        Resolved::Working(_) => Err(CliError::Usage(
            "--baseline working: the working tree is what is being tested; name a label, version or run".to_owned(),
        )),
    }
}

/// The cases of the newest complete run of `version` on `backend`.
fn cases_of_version(
    store: &dyn Store,
    version: &str,
    prompt: &str,
    backend: &str,
    min_pass: &BTreeMap<(String, String), Option<u32>>,
) -> Result<Vec<BaselineCase>, CliError> {
    let run = store
        .runs_for_version(version)?
        .into_iter()
        .find(|r| r.backend == backend && r.status == RunStatus::Complete);
    Ok(match run {
        Some(run) => cases_of_results(prompt, backend, &store.results(run.id)?, min_pass),
        None => Vec::new(),
    })
}

/// Stored results (ordered by case, sample) as baseline cases.
fn cases_of_results(
    prompt: &str,
    backend: &str,
    results: &[CaseResult],
    min_pass: &BTreeMap<(String, String), Option<u32>>,
) -> Vec<BaselineCase> {
    let mut cases: Vec<BaselineCase> = Vec::new();
    let mut verdicts: Vec<Vec<Option<bool>>> = Vec::new();
    // A `compare --perturb` run of the same version also holds perturbed copies of the cases;
    // they are not cases of the tests file, so they are no baseline for one.
    let originals = results
        .iter()
        .filter(|r| !r.case_name.contains(super::compare::PERTURBED_MARK));
    for r in originals {
        match cases.last() {
            Some(last) if last.case == r.case_name => {
                if let Some(v) = verdicts.last_mut() {
                    v.push(r.passed);
                }
            }
            _ => {
                cases.push(BaselineCase {
                    prompt: prompt.to_owned(),
                    backend: backend.to_owned(),
                    case: r.case_name.clone(),
                    index: r.case,
                    verdict: crate::run::Verdict::Error,
                    output: r.output.clone(),
                });
                verdicts.push(vec![r.passed]);
            }
        }
    }
    for (case, samples) in cases.iter_mut().zip(&verdicts) {
        let min = min_pass
            .get(&(prompt.to_owned(), case.case.clone()))
            .copied()
            .flatten();
        let n = u32::try_from(samples.len()).unwrap_or(u32::MAX);
        case.verdict = aggregate(samples, required_passes(min, n));
    }
    cases
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

/// The human summary on stdout: failures, changes against the baseline, the count line.
fn print_report(report: &TestReport, result: &matrix::MatrixResult, green: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for o in &report.outcomes {
        if o.verdict == crate::run::Verdict::Pass {
            continue;
        }
        let what = match o.verdict {
            crate::run::Verdict::Fail => "FAIL ",
            _ => "ERROR",
        };
        let (reason, output) = o.failure.as_ref().map_or((String::new(), ""), |f| {
            (
                match &f.assertion {
                    Some(a) => format!("{a}: {}", f.reason),
                    None => f.reason.clone(),
                },
                f.output.as_str(),
            )
        });
        let samples = if o.samples.len() > 1 {
            format!(
                " ({} of {} samples passed, {} needed)",
                o.passed_samples,
                o.samples.len(),
                o.required
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{what} {} \"{}\" [{}]{samples}: {}",
            o.prompt,
            o.case,
            o.backend,
            crate::report::snippet(&reason, 300)
        );
        let _ = writeln!(
            out,
            "      output: {}",
            crate::report::snippet(&output.replace('\n', "\\n"), 160)
        );
    }
    for c in &report.changes {
        let verdicts = match (c.before, c.after) {
            (Some(b), Some(a)) => format!("{} -> {}", b.as_str(), a.as_str()),
            (None, Some(a)) => a.as_str().to_owned(),
            (Some(b), None) => format!("was {}", b.as_str()),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<10} {} \"{}\" [{}] {verdicts}{}",
            c.kind.as_str().to_uppercase(),
            c.prompt,
            c.case,
            c.backend,
            c.diff
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    let runs: Vec<String> = result
        .runs
        .iter()
        .map(|r| result.store.short_run_id(*r))
        .collect();
    let baseline = report
        .baseline
        .as_ref()
        .map(|b| format!(" (compared with {b})"))
        .unwrap_or_else(|| " (no baseline)".to_owned());
    let _ = writeln!(
        out,
        "{} {}: {}{baseline} · {:.2} s · run {}",
        if green { "ok" } else { "FAILED" },
        super::plural(report.summary.cases, "case"),
        report.summary.line(),
        result.outcome.elapsed_ms as f64 / 1000.0,
        runs.join(", ")
    );
}
