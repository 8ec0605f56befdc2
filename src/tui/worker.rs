//! Performs the state machine's effects off the UI loop and answers with [`Msg`]s.
//!
//! Everything here goes through the same core as the CLI: prompts and cases are parsed and
//! rendered by `prompt`, `suite` and `library::render_case`; backends are opened by
//! `cli::run::open_backend` and driven through `Backend::stream`; assertions are scored by
//! `suite::evaluate`; versions, labels and runs go to the project's `Store`.
//!
//! The store belongs to one thread ([`StoreActor`]) that opens it on demand and closes it after
//! two idle seconds, so a `promptdeck test` in another terminal can take it in between.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::app::{
    AssertionLine, Buffer, CaseInfo, CellDone, CellSpec, Effect, HistoryRow, ModelsData, Msg,
    PreviewResult, Problem, TokenInfo, VersionRef, estimate_tokens,
};
use crate::backend::{Backend, BackendError, ChatRequest, Chunk};
use crate::library::{self, PromptUnit, RenderedCase};
use crate::project::{PROMPTS_DIR, Project};
use crate::store::{
    self, CaseResult, RunMeta, RunStatus, SledStore, Store, StoreError, TokenUsage,
};
use crate::suite::{self, TestCase, TestSuite, TestsFileLocation};

/// How long the store stays open after its last use.
const STORE_IDLE: Duration = Duration::from_secs(2);
/// Pass rates are computed for this many of the newest versions in the history view.
const HISTORY_PASS_RATES: usize = 200;

type Job = Box<dyn FnOnce(Result<&SledStore, String>) + Send>;

/// The one thread that holds the store.
#[derive(Clone)]
pub struct StoreActor {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl StoreActor {
    pub fn spawn(project: Arc<Project>) -> StoreActor {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("promptdeck-store".to_owned())
            .spawn(move || {
                let mut store: Option<SledStore> = None;
                loop {
                    match rx.recv_timeout(STORE_IDLE) {
                        Ok(job) => {
                            if store.is_none() {
                                match open_with_retry(&project) {
                                    Ok(s) => store = Some(s),
                                    Err(e) => {
                                        job(Err(e.to_string()));
                                        continue;
                                    }
                                }
                            }
                            match &store {
                                Some(s) => job(Ok(s)),
                                None => job(Err("the store is not open".to_owned())),
                            }
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => store = None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| log_line(&format!("cannot start the store thread: {e}")));
        StoreActor { jobs }
    }

    /// Runs `f` with the store on its thread.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SledStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = tx.send(store.and_then(|s| f(s).map_err(|e| e.to_string())));
        });
        self.jobs
            .send(job)
            .map_err(|_| "the store thread has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the store thread dropped a request".to_owned())?
    }
}

/// How long the store thread waits for another process (a `promptdeck test`) to release the
/// store before an operation reports it as in use.
const LOCKED_RETRY: Duration = Duration::from_secs(10);

/// Opens the store; while another process holds it, tries again every 250 ms for
/// [`LOCKED_RETRY`]. Only the store thread waits: the UI goes on.
fn open_with_retry(project: &Project) -> Result<SledStore, StoreError> {
    let deadline = Instant::now() + LOCKED_RETRY;
    loop {
        match project.open_store() {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// Worker errors that have nowhere else to go end up on stderr, which the TUI points at its
/// log file while it runs.
fn log_line(message: &str) {
    eprintln!("promptdeck tui: {message}");
}

/// A backend opened once and reused by later runs (the local engine keeps its model loaded).
type Backends = Arc<Mutex<HashMap<String, (Arc<dyn Backend>, String)>>>;

/// The model file's tokenizer, kept for token counts in the preview.
type InspectorCache = Arc<Mutex<Option<(PathBuf, Arc<crate::local::inspect::Inspector>)>>>;

pub struct Worker {
    project: Arc<Project>,
    tx: mpsc::UnboundedSender<Msg>,
    store: StoreActor,
    backends: Backends,
    inspector: InspectorCache,
    runs: HashMap<u64, watch::Sender<bool>>,
    author: Arc<std::sync::OnceLock<String>>,
}

impl Worker {
    pub fn new(project: Arc<Project>, tx: mpsc::UnboundedSender<Msg>) -> Worker {
        let store = StoreActor::spawn(Arc::clone(&project));
        // `author` may run `git config`: look it up off the path to the first frame.
        let author: Arc<std::sync::OnceLock<String>> = Arc::default();
        {
            let (author, project) = (Arc::clone(&author), Arc::clone(&project));
            std::thread::spawn(move || {
                let _ = author.set(crate::cli::versions::author(&project));
            });
        }
        Worker {
            project,
            tx,
            store,
            backends: Arc::default(),
            inspector: Arc::default(),
            runs: HashMap::new(),
            author,
        }
    }

    /// Who commits: the same name as the CLI's, once looked up.
    fn author(&self) -> Arc<str> {
        self.author
            .get()
            .cloned()
            .unwrap_or_else(|| crate::cli::versions::author(&self.project))
            .into()
    }

    /// Starts the work of one effect; must be called inside the tokio runtime.
    pub fn perform(&mut self, effect: Effect) {
        let tx = self.tx.clone();
        let project = Arc::clone(&self.project);
        let store = self.store.clone();
        match effect {
            Effect::LoadPassCounts => {
                tokio::spawn(async move {
                    match store.call(pass_counts).await {
                        Ok(counts) => {
                            let _ = tx.send(Msg::PassCounts(counts));
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::Failed(format!("pass counts: {e}")));
                        }
                    }
                });
            }
            Effect::LoadDocument(file_name) => {
                tokio::task::spawn_blocking(move || {
                    let prompts = project.prompts_dir();
                    let prompt = crate::user_file::read_text(&prompts.join(&file_name));
                    let tests_path = prompts.join(tests_file_name(&file_name));
                    let tests = tests_path
                        .exists()
                        .then(|| crate::user_file::read_text(&tests_path).ok())
                        .flatten();
                    let _ = tx.send(match prompt {
                        Ok(prompt) => Msg::DocumentLoaded {
                            file_name,
                            prompt,
                            tests,
                        },
                        Err(e) => Msg::Failed(e.to_string()),
                    });
                });
            }
            Effect::SchedulePreview { seq, delay_ms } => {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    let _ = tx.send(Msg::PreviewDue(seq));
                });
            }
            Effect::RenderPreview {
                seq,
                file_name,
                prompt,
                tests,
                case,
                backend,
            } => {
                let inspector = Arc::clone(&self.inspector);
                tokio::task::spawn_blocking(move || {
                    let result = preview(
                        &project,
                        &inspector,
                        &file_name,
                        &prompt,
                        tests.as_deref(),
                        case,
                        backend,
                    );
                    let _ = tx.send(Msg::PreviewReady { seq, result });
                });
            }
            Effect::StartRun {
                run,
                file_name,
                prompt,
                tests,
                cells,
            } => {
                let (cancel_tx, cancel_rx) = watch::channel(false);
                self.runs.insert(run, cancel_tx);
                let job = RunJob {
                    project,
                    store,
                    backends: Arc::clone(&self.backends),
                    author: self.author(),
                    tx,
                    run,
                    cancel: cancel_rx,
                };
                tokio::spawn(job.run(file_name, prompt, tests, cells));
            }
            Effect::CancelRun(run) => {
                if let Some(cancel) = self.runs.remove(&run) {
                    let _ = cancel.send(true);
                }
            }
            Effect::Save {
                file_name,
                prompt,
                tests,
            } => {
                let author = self.author();
                tokio::spawn(async move {
                    let msg = save(&project, &store, &author, file_name, prompt, tests).await;
                    let _ = tx.send(msg.unwrap_or_else(Msg::Failed));
                });
            }
            Effect::LoadHistory(prompt) => {
                tokio::spawn(async move {
                    let name = prompt.clone();
                    let rows = store.call(move |s| history_rows(s, &name)).await;
                    let _ = tx.send(match rows {
                        Ok(rows) => Msg::HistoryLoaded { prompt, rows },
                        Err(e) => Msg::Failed(format!("history: {e}")),
                    });
                });
            }
            Effect::LoadVersions {
                prompt,
                left,
                right,
                working,
            } => {
                tokio::spawn(async move {
                    let loaded = store
                        .call(move |s| {
                            let restrict = matches!(left, VersionRef::Working)
                                || matches!(right, VersionRef::Working);
                            let mut l = version_files(s, &prompt, &left, &working)?;
                            let mut r = version_files(s, &prompt, &right, &working)?;
                            if restrict {
                                // Working files are the prompt and its tests file only.
                                l.1.retain(|k, _| working.contains_key(k));
                                r.1.retain(|k, _| working.contains_key(k));
                            }
                            Ok((l, r))
                        })
                        .await;
                    let _ = tx.send(match loaded {
                        Ok((left, right)) => Msg::VersionsLoaded { left, right },
                        Err(e) => Msg::Failed(format!("compare: {e}")),
                    });
                });
            }
            Effect::LoadVersionForRestore { id, short } => {
                tokio::spawn(async move {
                    let files = store
                        .call(move |s| Ok(s.get_version(&id)?.map(|v| v.files)))
                        .await;
                    let _ = tx.send(match files {
                        Ok(Some(files)) => Msg::VersionForRestore { short, files },
                        Ok(None) => Msg::Failed(format!("version {short} not found")),
                        Err(e) => Msg::Failed(format!("restore: {e}")),
                    });
                });
            }
            Effect::SetLabel {
                prompt,
                label,
                version,
            } => {
                let author = self.author();
                tokio::spawn(async move {
                    let l = label.clone();
                    let set = store
                        .call(move |s| {
                            s.set_label(&prompt, &l, &version, &author)?;
                            Ok(s.short_id(&version))
                        })
                        .await;
                    let _ = tx.send(match set {
                        Ok(short) => Msg::LabelSet { label, short },
                        Err(e) => Msg::Failed(format!("label: {e}")),
                    });
                });
            }
            Effect::LoadModels {
                seq,
                prompts,
                backends,
                samples,
            } => {
                tokio::spawn(async move {
                    // The same reading of the store as `compare --reuse`, on the store's thread.
                    let loaded = store
                        .call(move |s| {
                            Ok(crate::cli::compare::compare_stored(
                                &project, s, &prompts, &backends, samples,
                            )
                            .map(|c| models_data(&c))
                            .map_err(|e| cli_error_text(&e)))
                        })
                        .await;
                    let _ = tx.send(Msg::ModelsLoaded {
                        seq,
                        result: loaded.and_then(|r| r),
                    });
                });
            }
            // The loop owns the terminal and the theme.
            Effect::ExternalEditor { .. } | Effect::SetTheme(_) | Effect::Quit => {}
        }
    }
}

fn models_data(c: &crate::cli::compare::StoredComparison) -> ModelsData {
    ModelsData {
        charts: crate::compare::tui_charts(&c.report),
        samples: c.report.samples,
        run_ids: c.report.run_ids.clone(),
        missing: c.missing.clone(),
        skipped: c.skipped.clone(),
    }
}

/// A CLI error as one status line: the first diagnostic rather than a count of them.
fn cli_error_text(e: &crate::cli::CliError) -> String {
    match e {
        crate::cli::CliError::Diagnostics(d) => d
            .iter()
            .find(|d| d.is_error())
            .map_or_else(|| e.to_string(), ToString::to_string),
        other => other.to_string(),
    }
}

pub fn tests_file_name(file_name: &str) -> String {
    format!(
        "{}{}",
        file_name.strip_suffix(".prompty").unwrap_or(file_name),
        crate::prompt::TESTS_SUFFIX
    )
}

/// (prompt, (passed, judged)) of each prompt's latest run with verdicts.
type PassCounts = Vec<(String, (u32, u32))>;

fn pass_counts(store: &SledStore) -> Result<PassCounts, StoreError> {
    let mut out = Vec::new();
    for prompt in store.prompts()? {
        if let Some(run) = store.list_runs(Some(&prompt))?.first() {
            let results = store.results(run.id)?;
            let judged = results.iter().filter(|r| r.passed.is_some()).count() as u32;
            let passed = results.iter().filter(|r| r.passed == Some(true)).count() as u32;
            if judged > 0 {
                out.push((prompt, (passed, judged)));
            }
        }
    }
    Ok(out)
}

fn history_rows(store: &SledStore, prompt: &str) -> Result<Vec<HistoryRow>, StoreError> {
    let entries = store.history(prompt)?;
    let mut rows = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let v = entry.version;
        let pass_rate = if i < HISTORY_PASS_RATES {
            match store.runs_for_version(&v.id)?.first() {
                Some(run) => store.pass_rate(run.id)?,
                None => None,
            }
        } else {
            None
        };
        rows.push(HistoryRow {
            short: store.short_id(&v.id),
            date: crate::cli::versions::short_time(v.created_at),
            message: v.message,
            author: v.author,
            labels: entry.labels,
            pass_rate,
            id: v.id,
        });
    }
    Ok(rows)
}

fn version_files(
    store: &SledStore,
    prompt: &str,
    which: &VersionRef,
    working: &BTreeMap<String, String>,
) -> Result<(String, BTreeMap<String, String>), StoreError> {
    match which {
        VersionRef::Working => Ok(("working".to_owned(), working.clone())),
        VersionRef::Stored { id, short } => {
            let version = if id.is_empty() {
                store.latest_version(prompt)?
            } else {
                store.get_version(id)?
            };
            match version {
                Some(v) => Ok((
                    if id.is_empty() {
                        format!("latest {}", store.short_id(&v.id))
                    } else {
                        short.clone()
                    },
                    v.files,
                )),
                None => Ok((format!("{short} (none)"), BTreeMap::new())),
            }
        }
    }
}

async fn save(
    project: &Project,
    store: &StoreActor,
    author: &str,
    file_name: String,
    prompt: String,
    tests: Option<String>,
) -> Result<Msg, String> {
    let prompts = project.prompts_dir();
    let write = |name: &str, text: &str| {
        crate::cli::versions::write_atomically(&prompts.join(name), text.as_bytes())
            .map_err(|e| e.to_string())
    };
    write(&file_name, &prompt)?;
    if let Some(tests) = &tests {
        write(&tests_file_name(&file_name), tests)?;
    }
    let unit = match library::unit_files(project, &file_name) {
        Ok((unit, _)) => unit,
        Err(diagnostics) => {
            let first = diagnostics
                .first()
                .map(|d| d.message.clone())
                .unwrap_or_default();
            return Err(format!("saved {file_name}; not committed: {first}"));
        }
    };
    let author = author.to_owned();
    let (version, created) = store
        .call(move |s| {
            let outcome = s.commit(&unit, "saved in the workbench", &author)?;
            let created = matches!(outcome, store::CommitOutcome::Created(_));
            Ok((s.short_id(outcome.id()), created))
        })
        .await
        .map_err(|e| format!("saved {file_name}; not committed: {e}"))?;
    Ok(Msg::Saved {
        file_name,
        prompt,
        tests,
        version,
        created,
    })
}

/// A prompt and its tests parsed from editor text, as `library::load_unit` does from disk.
struct ParsedUnit {
    unit: Option<PromptUnit>,
    problem: Option<Problem>,
    cases: Vec<CaseInfo>,
}

fn parse_unit(project: &Project, file_name: &str, prompt: &str, tests: Option<&str>) -> ParsedUnit {
    let workspace = project.workspace();
    let path = project.prompts_dir().join(file_name);
    let mut problem = None;
    let parsed = crate::prompt::parse_prompt(file_name, path, prompt);
    let prompt_file = match parsed {
        Ok((p, _)) => Some(p),
        Err(diagnostics) => {
            problem = diagnostics.iter().find(|d| d.is_error()).map(|d| Problem {
                buffer: Buffer::Prompt,
                line: Some(d.position.line),
                message: d.message.clone(),
            });
            None
        }
    };
    let tests_name = tests_file_name(file_name);
    let tests_path = project.prompts_dir().join(&tests_name);
    let mut suite: Option<TestSuite> = None;
    if let Some(text) = tests {
        let project_relative = format!("{PROMPTS_DIR}/{tests_name}");
        let at = TestsFileLocation {
            display: &tests_path,
            project_relative: &project_relative,
        };
        let (s, diagnostics) = suite::parse_tests_file(text, &at, &workspace);
        if problem.is_none() {
            problem = diagnostics.iter().find(|d| d.is_error()).map(|d| Problem {
                buffer: Buffer::Tests,
                line: Some(d.position.line),
                message: d.message.clone(),
            });
        }
        suite = Some(s);
    }
    let cases = suite
        .as_ref()
        .map(|s| s.cases.iter().map(case_info).collect())
        .unwrap_or_default();
    ParsedUnit {
        unit: prompt_file.map(|prompt| PromptUnit {
            prompt,
            tests_path: suite.as_ref().map(|_| tests_path),
            suite,
        }),
        problem,
        cases,
    }
}

fn case_info(case: &TestCase) -> CaseInfo {
    CaseInfo {
        index: case.index,
        label: case.label(),
        vars: case
            .vars
            .iter()
            .map(|(k, v)| {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), shown)
            })
            .collect(),
        line: case.position.line,
    }
}

fn find_case(unit: &PromptUnit, index: Option<usize>) -> Option<&TestCase> {
    let index = index?;
    unit.suite.as_ref()?.cases.iter().find(|c| c.index == index)
}

/// Renders a case for the preview, with its token count on the backend it would run on.
fn preview(
    project: &Project,
    inspector: &InspectorCache,
    file_name: &str,
    prompt: &str,
    tests: Option<&str>,
    case: Option<usize>,
    backend: Option<String>,
) -> PreviewResult {
    let parsed = parse_unit(project, file_name, prompt, tests);
    let mut result = PreviewResult {
        cases: parsed.cases,
        problem: parsed.problem,
        backend: project.config.default_backend.clone(),
        ..PreviewResult::default()
    };
    let Some(unit) = parsed.unit else {
        return result;
    };
    if let Some(crate::prompt::technique::Technique::SelfConsistency {
        samples, extract, ..
    }) = &unit.prompt.front_matter.technique
    {
        result.votes = Some(super::app::VoteSpec {
            samples: *samples,
            extract: extract.clone(),
        });
    }
    result.inputs = unit
        .prompt
        .front_matter
        .inputs
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let tests_path = project.prompts_dir().join(tests_file_name(file_name));
    match library::render_case(project, &unit, find_case(&unit, case), &Map::new()) {
        Ok(rendered) => {
            result.backend = rendered.backend.clone();
            result.warnings = rendered
                .warnings
                .iter()
                .map(|w| w.message.clone())
                .collect();
            result.messages = rendered
                .messages
                .iter()
                .map(|m| (m.role.as_str().to_owned(), m.content.clone()))
                .collect();
            let backend = backend.unwrap_or_else(|| rendered.backend.clone());
            result.tokens = Some(count_tokens(project, inspector, &backend, &rendered));
        }
        Err(d) => {
            if result.problem.is_none() {
                let buffer = if d.path == tests_path {
                    Buffer::Tests
                } else {
                    Buffer::Prompt
                };
                // Errors inside partials point at another file: show them without a line here.
                let here =
                    d.path == project.prompts_dir().join(file_name) || buffer == Buffer::Tests;
                result.problem = Some(Problem {
                    buffer,
                    line: here.then_some(d.position.line),
                    message: if here {
                        d.message.clone()
                    } else {
                        format!("{}: {}", d.path.display(), d.message)
                    },
                });
            }
        }
    }
    result
}

/// Exact tokens for the local model (its GGUF tokenizer and chat template, without loading
/// weights); an estimate for API backends.
fn count_tokens(
    project: &Project,
    cache: &InspectorCache,
    backend: &str,
    rendered: &RenderedCase,
) -> TokenInfo {
    let chars: usize = rendered
        .messages
        .iter()
        .map(|m| m.content.chars().count())
        .sum();
    let approximate = TokenInfo {
        count: estimate_tokens(chars),
        approximate: true,
        context: None,
    };
    let Some(raw) = project.config.backends.get(backend) else {
        return approximate;
    };
    if raw.kind != crate::project::BackendKind::Local {
        return approximate;
    }
    let configured = raw.model.as_ref().map(|m| project.root.join(m));
    let Ok(Some((path, _))) = crate::local::models::locate_default(configured.as_deref()) else {
        return approximate;
    };
    let inspector = {
        let mut guard = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref() {
            Some((p, i)) if *p == path => Arc::clone(i),
            _ => match crate::local::inspect::Inspector::open(&path) {
                Ok(i) => {
                    let i = Arc::new(i);
                    *guard = Some((path, Arc::clone(&i)));
                    i
                }
                Err(_) => return approximate,
            },
        }
    };
    match inspector
        .chat_text(&rendered.messages)
        .and_then(|text| inspector.tokenize(&text))
    {
        Ok(tokens) => TokenInfo {
            count: tokens.len(),
            approximate: false,
            context: Some(inspector.info.context_length),
        },
        Err(_) => approximate,
    }
}

struct RunJob {
    project: Arc<Project>,
    store: StoreActor,
    backends: Backends,
    author: Arc<str>,
    tx: mpsc::UnboundedSender<Msg>,
    run: u64,
    cancel: watch::Receiver<bool>,
}

/// How one streamed answer ended.
pub enum StreamEnd {
    Done(Box<crate::backend::Done>),
    Failed(BackendError),
    Cancelled,
}

/// What streaming one case produced.
pub struct Streamed {
    pub text: String,
    pub ttft_ms: Option<u64>,
    pub latency_ms: u64,
    pub end: StreamEnd,
}

/// Streams one request on a backend, calling `on_text` with each piece, until it ends or
/// `cancel` turns true. Dropping the stream on cancel cancels the HTTP request or the local
/// generation. Plain cells and self-consistency samples; other techniques and judged
/// assertions go through `execution::execute_case` (`RunJob::execute_technique`).
pub async fn stream_case(
    backend: &dyn Backend,
    request: ChatRequest,
    cancel: &mut watch::Receiver<bool>,
    mut on_text: impl FnMut(&str),
) -> Streamed {
    let start = Instant::now();
    let elapsed = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut stream = backend.stream(request);
    let mut text = String::new();
    let mut ttft_ms = None;
    let end = loop {
        if *cancel.borrow() {
            break StreamEnd::Cancelled;
        }
        let next = tokio::select! {
            next = stream.next() => next,
            _ = cancel.changed() => continue,
        };
        match next {
            Some(Ok(Chunk::Text(piece))) => {
                ttft_ms.get_or_insert_with(elapsed);
                on_text(&piece);
                text.push_str(&piece);
            }
            Some(Ok(Chunk::Done(done))) => break StreamEnd::Done(done),
            Some(Err(error)) => break StreamEnd::Failed(error),
            None => {
                break StreamEnd::Failed(BackendError::Truncated {
                    partial_text: text.clone(),
                    reason: "the backend stream ended without a result".to_owned(),
                });
            }
        }
    };
    Streamed {
        text,
        ttft_ms,
        latency_ms: elapsed(),
        end,
    }
}

/// Whether a cell goes through `execution::execute_case`: a technique other than
/// self-consistency (whose samples are the workbench's own cells), or an assertion graded by a
/// judge.
fn needs_execution(unit: &PromptUnit, case: Option<&TestCase>) -> bool {
    use crate::prompt::technique::Technique;
    use crate::suite::AssertionKind::{LlmRubric, ModelGradedClosedqa};
    let technique = matches!(
        unit.prompt.front_matter.technique,
        Some(Technique::Metaprompt { .. } | Technique::React { .. } | Technique::Steps { .. })
    );
    technique
        || case.is_some_and(|c| {
            c.assertions
                .iter()
                .any(|a| matches!(a.kind, LlmRubric | ModelGradedClosedqa))
        })
}

/// Assertions checked against one output, as `promptdeck run` does: those needing a judge
/// model or several samples are left to `promptdeck test`.
fn check(
    case: &TestCase,
    output: &str,
    latency_ms: u64,
    cost: Option<f64>,
) -> (Vec<AssertionLine>, Vec<Value>, Option<bool>, usize) {
    use crate::suite::AssertionKind::{LlmRubric, ModelGradedClosedqa, VotesAgree};
    use crate::suite::evaluate::{Observation, evaluate, judge_case};
    let observation = Observation {
        output,
        latency_ms: Some(latency_ms),
        cost,
        votes: None,
    };
    let (deferred, checkable): (Vec<_>, Vec<_>) = case
        .assertions
        .iter()
        .partition(|a| matches!(a.kind, LlmRubric | ModelGradedClosedqa | VotesAgree));
    let results: Vec<_> = checkable
        .iter()
        .map(|a| evaluate(a, &observation, None))
        .collect();
    let lines = results
        .iter()
        .map(|r| AssertionLine {
            pass: r.pass,
            assertion: r.assertion.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    let stored = results
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let verdict = judge_case(case.threshold, results);
    let verdict = (deferred.is_empty() && !case.assertions.is_empty()).then_some(verdict.pass);
    (lines, stored, verdict, deferred.len())
}

impl RunJob {
    fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
    }

    fn fail_all(&self, cells: usize, message: &str) {
        for cell in 0..cells {
            self.send(Msg::CellFinished {
                run: self.run,
                cell,
                outcome: Err(message.to_owned()),
            });
        }
        self.send(Msg::RunFinished { run: self.run });
    }

    async fn run(
        self,
        file_name: String,
        prompt: String,
        tests: Option<String>,
        cells: Vec<CellSpec>,
    ) {
        // Render every case first, with the same path as the preview and `promptdeck run`.
        let project = Arc::clone(&self.project);
        let (fname, ptext, ttext) = (file_name.clone(), prompt.clone(), tests.clone());
        let parsed = tokio::task::spawn_blocking(move || {
            let parsed = parse_unit(&project, &fname, &ptext, ttext.as_deref());
            parsed.unit
        })
        .await
        .ok()
        .flatten();
        let Some(unit) = parsed else {
            self.fail_all(cells.len(), "the prompt does not parse");
            return;
        };
        let unit = Arc::new(unit);
        let mut rendered: BTreeMap<Option<usize>, Result<RenderedCase, String>> = BTreeMap::new();
        for spec in &cells {
            if let std::collections::btree_map::Entry::Vacant(slot) = rendered.entry(spec.case) {
                slot.insert(
                    library::render_case(
                        &self.project,
                        &unit,
                        find_case(&unit, spec.case),
                        &Map::new(),
                    )
                    .map_err(|d| d.to_string()),
                );
            }
        }

        // The version this run ran: the unit's files on disk with the editor's text over them.
        let snapshot = {
            let project = Arc::clone(&self.project);
            let fname = file_name.clone();
            tokio::task::spawn_blocking(move || library::unit_files(&project, &fname).ok())
                .await
                .ok()
                .flatten()
        };
        let mut unit_files = snapshot.map(|(u, _)| u).unwrap_or(store::UnitFiles {
            prompt: unit.prompt.name.clone(),
            files: BTreeMap::new(),
        });
        unit_files
            .files
            .insert(format!("{PROMPTS_DIR}/{file_name}"), prompt.clone());
        if let Some(t) = &tests {
            unit_files.files.insert(
                format!("{PROMPTS_DIR}/{}", tests_file_name(&file_name)),
                t.clone(),
            );
        }
        let author = self.author.to_string();
        let committed = self
            .store
            .call(move |s| {
                let id = s
                    .commit(&unit_files, "run in the workbench", &author)?
                    .id()
                    .to_owned();
                Ok((s.short_id(&id), id))
            })
            .await;
        let version = match committed {
            Ok((short, id)) => {
                self.send(Msg::RunStarted {
                    run: self.run,
                    version: short,
                });
                Some(id)
            }
            Err(e) => {
                self.send(Msg::Failed(format!("run not recorded: {e}")));
                None
            }
        };

        // One task per backend; the cells of a backend run one after another.
        let mut by_backend: BTreeMap<String, Vec<(usize, CellSpec)>> = BTreeMap::new();
        for (i, spec) in cells.into_iter().enumerate() {
            by_backend
                .entry(spec.backend.clone())
                .or_default()
                .push((i, spec));
        }
        let rendered = Arc::new(rendered);
        let job = Arc::new(self);
        let mut tasks = Vec::new();
        for (backend_name, specs) in by_backend {
            let job = Arc::clone(&job);
            let unit = Arc::clone(&unit);
            let rendered = Arc::clone(&rendered);
            let version = version.clone();
            tasks.push(tokio::spawn(async move {
                job.run_backend(&backend_name, specs, &unit, &rendered, version)
                    .await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        job.send(Msg::RunFinished { run: job.run });
    }

    /// Runs one cell through `execution::execute_case`, the path `promptdeck run` and `test`
    /// take: techniques other than self-consistency (metaprompt, ReAct, steps) and assertions
    /// graded by a judge. The answer's call streams into the cell; the stored record keeps the
    /// technique's calls, trace and generated prompt.
    #[allow(clippy::too_many_arguments)]
    async fn execute_technique(
        &self,
        backend: &dyn Backend,
        backend_name: &str,
        unit: &PromptUnit,
        case: Option<&TestCase>,
        rendered: &RenderedCase,
        spec: &CellSpec,
        cell: usize,
    ) -> (Result<CellDone, String>, CaseResult, RunStatus) {
        let mut result = CaseResult::started(
            spec.case.map_or(0, |c| c as u32),
            spec.sample,
            case.map_or_else(|| "sample".to_owned(), TestCase::name),
            &rendered.messages,
        );
        let judges = {
            let project = Arc::clone(&self.project);
            let names = crate::cli::run::open_judges_plan(&project, case.into_iter());
            match names {
                Ok(names) => {
                    let mut judges = crate::execution::Judges {
                        default: project.config.judge.clone(),
                        backends: BTreeMap::new(),
                    };
                    let mut failed = None;
                    for name in names {
                        match self.open(&name).await {
                            Ok((b, _)) => {
                                judges.backends.insert(name, b);
                            }
                            Err(e) => failed = Some(e),
                        }
                    }
                    match failed {
                        Some(e) => Err(e),
                        None => Ok(judges),
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let judges = match judges {
            Ok(j) => j,
            Err(e) => {
                result.error = Some(e.clone());
                return (Err(e), result, RunStatus::Failed);
            }
        };
        let overrides = Map::new();
        let parameters = crate::backend::Parameters::default();
        let input = crate::execution::CaseInput {
            project: &self.project,
            unit,
            case,
            overrides: &overrides,
            parameters: &parameters,
            backend,
            backend_name,
            judges: &judges,
            sample: spec.sample,
            no_cache: false,
        };
        let answer_call = std::sync::Mutex::new(None::<usize>);
        let streamed_answer = std::sync::atomic::AtomicBool::new(false);
        let (run, tx) = (self.run, self.tx.clone());
        let events = |event: crate::execution::Event| match event {
            crate::execution::Event::Started {
                call, answer: true, ..
            } => {
                *answer_call
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(call);
            }
            crate::execution::Event::Text { call, text } => {
                let current = *answer_call
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if current == Some(call) {
                    streamed_answer.store(true, std::sync::atomic::Ordering::Relaxed);
                    let _ = tx.send(Msg::RunChunk { run, cell, text });
                }
            }
            _ => {}
        };
        let (handle, cancel) = crate::execution::Cancel::new();
        let mut watch = self.cancel.clone();
        let future = crate::execution::execute_case(&input, &events, &cancel);
        tokio::pin!(future);
        let executed = loop {
            tokio::select! {
                executed = &mut future => break executed,
                changed = watch.changed() => {
                    if changed.is_err() || *watch.borrow() {
                        handle.cancel();
                        break future.await;
                    }
                }
            }
        };
        let executed = match executed {
            Ok(e) => e,
            Err(e) => {
                result.error = Some(e.to_string());
                return (Err(e.to_string()), result, RunStatus::Failed);
            }
        };
        executed.fill_record(&mut result);
        match executed.status {
            crate::execution::ExecutionStatus::Interrupted => {
                (Err("cancelled".to_owned()), result, RunStatus::Interrupted)
            }
            crate::execution::ExecutionStatus::Failed => {
                let e = executed
                    .error
                    .clone()
                    .unwrap_or_else(|| "failed".to_owned());
                result.error = Some(e.clone());
                (Err(e), result, RunStatus::Failed)
            }
            crate::execution::ExecutionStatus::Complete => {
                let assertions = executed
                    .verdict
                    .iter()
                    .flat_map(|v| v.results.iter())
                    .map(|r| AssertionLine {
                        pass: r.pass,
                        assertion: r.assertion.clone(),
                        reason: r.reason.clone(),
                    })
                    .collect();
                // A technique whose answer did not stream (a ReAct loop's final answer) shows
                // it once known.
                if !streamed_answer.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = self.tx.send(Msg::RunChunk {
                        run: self.run,
                        cell,
                        text: executed.output.clone(),
                    });
                }
                // The technique's own account (a ReAct trace, a metaprompt's generated prompt,
                // the steps' outputs) follows the answer in the cell, as `promptdeck run`
                // prints it; comparing two cells then diffs two traces or two generations.
                let report = crate::execution::technique_report(&executed);
                if !report.is_empty() {
                    let _ = self.tx.send(Msg::RunChunk {
                        run: self.run,
                        cell,
                        text: format!("\n\n── {} ──\n{report}", executed.kind),
                    });
                }
                (
                    Ok(CellDone {
                        latency_ms: executed.latency_ms,
                        ttft_ms: executed.ttft_ms,
                        tokens_in: executed.usage.input_tokens,
                        tokens_out: executed.usage.output_tokens,
                        cost: executed.cost,
                        assertions,
                        verdict: executed.verdict.as_ref().map(|v| v.pass),
                        deferred: 0,
                        cached: executed.cached,
                    }),
                    result,
                    RunStatus::Complete,
                )
            }
        }
    }

    async fn open(&self, name: &str) -> Result<(Arc<dyn Backend>, String), String> {
        if let Some(found) = self
            .backends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            return Ok(found.clone());
        }
        let project = Arc::clone(&self.project);
        let n = name.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            crate::cli::run::open_backend(&project, &n).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let entry = (opened.backend, opened.model);
        self.backends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), entry.clone());
        Ok(entry)
    }

    async fn run_backend(
        &self,
        backend_name: &str,
        specs: Vec<(usize, CellSpec)>,
        unit: &PromptUnit,
        rendered: &BTreeMap<Option<usize>, Result<RenderedCase, String>>,
        version: Option<String>,
    ) {
        let (backend, model) = match self.open(backend_name).await {
            Ok(b) => b,
            Err(e) => {
                for (i, _) in specs {
                    self.send(Msg::CellFinished {
                        run: self.run,
                        cell: i,
                        outcome: Err(e.clone()),
                    });
                }
                return;
            }
        };
        let parameters = rendered
            .values()
            .find_map(|r| r.as_ref().ok())
            .map(|r| serde_json::to_value(&r.parameters).unwrap_or_default())
            .unwrap_or_default();
        let store_run = match &version {
            Some(version) => {
                let meta = RunMeta {
                    version: version.clone(),
                    prompt: unit.prompt.name.clone(),
                    backend: backend_name.to_owned(),
                    model: model.clone(),
                    parameters,
                };
                self.store.call(move |s| s.begin_run(meta)).await.ok()
            }
            None => None,
        };
        let mut cancel = self.cancel.clone();
        let mut status = RunStatus::Complete;
        for (i, spec) in specs {
            if *cancel.borrow() {
                status = RunStatus::Interrupted;
                break;
            }
            let case = find_case(unit, spec.case);
            let r = match rendered.get(&spec.case) {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    self.send(Msg::CellFinished {
                        run: self.run,
                        cell: i,
                        outcome: Err(e.clone()),
                    });
                    continue;
                }
                None => continue,
            };
            if needs_execution(unit, case) {
                let (outcome, result, ended) = self
                    .execute_technique(backend.as_ref(), backend_name, unit, case, r, &spec, i)
                    .await;
                if ended != RunStatus::Complete {
                    status = ended;
                }
                if let Some(id) = store_run {
                    if let Err(e) = self.store.call(move |s| s.record_result(id, &result)).await {
                        self.send(Msg::Failed(format!("result not stored: {e}")));
                    }
                }
                self.send(Msg::CellFinished {
                    run: self.run,
                    cell: i,
                    outcome,
                });
                if status == RunStatus::Interrupted {
                    break;
                }
                continue;
            }
            let mut parameters = r.parameters.clone();
            // Self-consistency samples are separate cells here (the vote is drawn from them);
            // each is sampled at the technique's temperature, as `execute_case` would.
            if let Some(crate::prompt::technique::Technique::SelfConsistency {
                temperature: Some(t),
                ..
            }) = &unit.prompt.front_matter.technique
            {
                parameters.temperature = Some(*t);
            }
            let request = ChatRequest {
                model: String::new(),
                messages: r.messages.clone(),
                parameters,
                extra: unit.prompt.front_matter.model.extra_parameters.clone(),
                sample_index: spec.sample,
                no_cache: false,
            };
            let run = self.run;
            let tx = self.tx.clone();
            let streamed = stream_case(backend.as_ref(), request, &mut cancel, |piece| {
                let _ = tx.send(Msg::RunChunk {
                    run,
                    cell: i,
                    text: piece.to_owned(),
                });
            })
            .await;
            let mut result = CaseResult {
                output: streamed.text.clone(),
                latency_ms: streamed.latency_ms,
                ttft_ms: streamed.ttft_ms,
                ..CaseResult::started(
                    spec.case.map_or(0, |c| c as u32),
                    spec.sample,
                    case.map_or_else(|| "sample".to_owned(), TestCase::name),
                    &r.messages,
                )
            };
            let outcome = match streamed.end {
                StreamEnd::Done(done) => {
                    result.finish_reason = Some(format!("{:?}", done.finish_reason).to_lowercase());
                    result.usage = TokenUsage {
                        input: done.usage.input_tokens,
                        output: done.usage.output_tokens,
                    };
                    result.cost = done.cost.unwrap_or(0.0);
                    result.cached = done.cached;
                    let (lines, stored, verdict, deferred) = match case {
                        Some(case) => check(case, &streamed.text, streamed.latency_ms, done.cost),
                        None => (Vec::new(), Vec::new(), None, 0),
                    };
                    result.assertions = stored;
                    result.passed = verdict;
                    Ok(CellDone {
                        latency_ms: streamed.latency_ms,
                        ttft_ms: streamed.ttft_ms,
                        tokens_in: done.usage.input_tokens,
                        tokens_out: done.usage.output_tokens,
                        cost: done.cost,
                        assertions: lines,
                        verdict,
                        deferred,
                        cached: done.cached,
                    })
                }
                StreamEnd::Failed(e) => {
                    result.error = Some(e.to_string());
                    status = RunStatus::Failed;
                    Err(e.to_string())
                }
                StreamEnd::Cancelled => {
                    result.error = Some("interrupted".to_owned());
                    status = RunStatus::Interrupted;
                    Err("cancelled".to_owned())
                }
            };
            if let Some(id) = store_run {
                let record = result.clone();
                if let Err(e) = self.store.call(move |s| s.record_result(id, &record)).await {
                    self.send(Msg::Failed(format!("result not stored: {e}")));
                }
            }
            self.send(Msg::CellFinished {
                run: self.run,
                cell: i,
                outcome,
            });
            if status == RunStatus::Interrupted {
                break;
            }
        }
        if let Some(id) = store_run {
            let _ = self.store.call(move |s| s.finish_run(id, status)).await;
        }
    }
}
