//! Executing a [`Plan`]: every job on its backend, as many at once as each backend allows,
//! results scored and written to the store as they finish, progress reported as events, and a
//! clean stop on cancellation (finished results kept, in-flight requests dropped, which cancels
//! them).
//!
//! Shape: one queue per backend, worked by as many tasks as the backend's `concurrency` (the
//! backend's own limiter still applies on top, e.g. requests per minute and retries); workers
//! send what they finish over a channel to one consumer, the caller's future, which writes to
//! the store in batches of whatever has arrived since the last write (group commit: one sled
//! flush per batch instead of one per result, which is what keeps thousands of results per second
//! affordable) and calls the caller's event handler. The consumer is the only place that touches
//! the store, so the store needs no locking beyond its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};

use super::plan::Plan;
use super::score;
use serde_json::{Map, Value};

use crate::backend::{Backend, BackendError, ChatRequest, Chunk, Parameters};
use crate::execution::{self, Judges};
use crate::library::{PromptUnit, RenderedCase};
use crate::project::Project;
use crate::store::{CaseResult, RunId, Store, StoreError, TokenUsage};
use crate::suite::TestCase;
use crate::suite::evaluate::{AssertionResult, Observation};

/// A cancellation signal shared by the caller (Ctrl-C, a TUI key) and every worker.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    flag: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Completes once [`Cancel::cancel`] has been called.
    pub async fn cancelled(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a cancel between the two is not missed.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

/// A backend opened for a run.
pub struct BackendHandle {
    /// The name in promptdeck.toml.
    pub name: String,
    /// The model recorded with the run.
    pub model: String,
    pub backend: Arc<dyn Backend>,
    /// Requests of this run in flight at once on this backend.
    pub concurrency: usize,
    /// The backend's own sampling parameters, over each case's and under the overrides.
    pub parameters: Parameters,
}

/// One case ready to run: the test case (`None`: the prompt's sample variables) and its
/// rendered messages and parameters.
#[derive(Debug, Clone)]
pub struct PreparedCase {
    pub case: Option<TestCase>,
    pub rendered: RenderedCase,
}

impl PreparedCase {
    /// The name results are stored and compared under: the description, or `#N`.
    pub fn name(&self) -> String {
        self.case
            .as_ref()
            .map_or_else(|| "sample".to_owned(), TestCase::name)
    }

    /// The case index stored with results (0 for the sample).
    pub fn index(&self) -> u32 {
        self.case
            .as_ref()
            .map_or(0, |c| u32::try_from(c.index).unwrap_or(u32::MAX))
    }
}

/// A prompt unit with the cases a run takes from it, in the order the plan refers to them.
pub struct PreparedUnit {
    pub unit: PromptUnit,
    pub cases: Vec<PreparedCase>,
}

/// Everything the workers read; shared, immutable.
pub struct RunInputs {
    pub units: Vec<PreparedUnit>,
    /// In the order of [`Plan::backends`].
    pub backends: Vec<BackendHandle>,
    /// Sampling parameters from the command line, over each case's own.
    pub overrides: Parameters,
    pub no_cache: bool,
    /// What techniques and model-graded assertions need; `None` runs every case plainly.
    pub techniques: Option<TechniqueContext>,
}

/// What a prompt's technique or a model-graded assertion needs beyond the rendered case: the
/// project (step and generator prompts are loaded from it), the judge backends, and each
/// unit's command-line variables (the technique renders its stages itself).
pub struct TechniqueContext {
    pub project: Project,
    pub judges: Judges,
    /// Indexed like [`RunInputs::units`].
    pub vars: Vec<Map<String, Value>>,
}

/// The inputs of one case execution: the seam's arguments.
pub struct CaseJob<'a> {
    pub backend: &'a BackendHandle,
    pub unit: &'a PromptUnit,
    pub case: &'a PreparedCase,
    /// The case's parameters with the command line's overrides applied.
    pub parameters: Parameters,
    /// 0-based sample (or `--repeat`) index; part of the cache key so samples are independent.
    pub sample: u32,
    pub no_cache: bool,
    pub cancel: &'a Cancel,
}

/// What one case execution produced: the record the store keeps, plus the assertion results
/// and score in their typed form for reports.
#[derive(Debug, Clone)]
pub struct Executed {
    pub record: CaseResult,
    pub assertions: Vec<AssertionResult>,
    pub score: f64,
    /// Why the sample failed or has no verdict (empty when it passed).
    pub reason: String,
    /// Stopped by cancellation before it finished; such results are not stored.
    pub interrupted: bool,
}

/// Runs one plain case on one backend and scores it: the case arrives rendered, one
/// `ChatRequest` goes through `Backend::stream`, and the text is scored with `suite::evaluate`.
/// Cases with a technique or a judged assertion take [`execute_technique`] instead.
pub async fn execute_plain(job: CaseJob<'_>) -> Executed {
    let request = ChatRequest {
        model: String::new(),
        messages: job.case.rendered.messages.clone(),
        parameters: job.parameters.clone(),
        extra: job.unit.prompt.front_matter.model.extra_parameters.clone(),
        sample_index: job.sample,
        no_cache: job.no_cache,
    };
    let start = Instant::now();
    let elapsed = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut record = CaseResult::started(
        job.case.index(),
        job.sample,
        job.case.name(),
        &job.case.rendered.messages,
    );
    let mut stream = job.backend.backend.stream(request);
    let mut interrupted = false;
    let mut done = None;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = job.cancel.cancelled() => { interrupted = true; break; }
        };
        match next {
            Some(Ok(Chunk::Text(piece))) => {
                record.ttft_ms.get_or_insert_with(elapsed);
                record.output.push_str(&piece);
            }
            Some(Ok(Chunk::Done(d))) => {
                done = Some(d);
                break;
            }
            Some(Err(error)) => {
                if let BackendError::Truncated { partial_text, .. } = &error {
                    if record.output.is_empty() {
                        record.output.clone_from(partial_text);
                    }
                }
                record.error = Some(error.to_string());
                break;
            }
            None => {
                record.error = Some("the backend stream ended without a result".to_owned());
                break;
            }
        }
    }
    // Dropping the stream cancels the request when it was interrupted.
    drop(stream);
    record.latency_ms = elapsed();
    let mut executed = Executed {
        record,
        assertions: Vec::new(),
        score: 0.0,
        reason: String::new(),
        interrupted,
    };
    if interrupted {
        executed.record.error = Some("interrupted".to_owned());
        executed.reason = "interrupted".to_owned();
        return executed;
    }
    let Some(done) = done else {
        executed.reason = executed.record.error.clone().unwrap_or_default();
        return executed;
    };
    let record = &mut executed.record;
    record.finish_reason = Some(format!("{:?}", done.finish_reason).to_lowercase());
    record.usage = TokenUsage {
        input: done.usage.input_tokens,
        output: done.usage.output_tokens,
    };
    record.cost = done.cost.unwrap_or(0.0);
    record.cached = done.cached;
    match &job.case.case {
        Some(case) => {
            let observation = Observation {
                output: &record.output,
                latency_ms: Some(record.latency_ms),
                cost: done.cost,
                votes: None,
            };
            let scored = score::score(case, &observation, None);
            record.assertions = scored
                .results
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect();
            record.passed = scored.passed;
            executed.assertions = scored.results;
            executed.score = scored.score;
            if scored.passed != Some(true) {
                executed.reason = scored.reason;
            }
        }
        None => executed.score = 1.0,
    }
    executed
}

/// Whether a case needs more than one plain call: a technique, or an assertion graded by a
/// judge or by votes. Plain cases take [`execute_plain`], which scores the already-rendered
/// messages without rendering again (what keeps thousands of cases a second affordable); the
/// rest go through `execution::execute_case`, the same path `promptdeck run` takes.
fn needs_execution(unit: &PromptUnit, case: &PreparedCase) -> bool {
    unit.prompt.front_matter.technique.is_some()
        || case.case.as_ref().is_some_and(|c| {
            c.assertions.iter().any(|a| {
                matches!(
                    a.kind.name(),
                    "llm-rubric" | "model-graded-closedqa" | "votes-agree"
                )
            })
        })
}

/// Runs one case through `execution::execute_case` (techniques and judges) and turns the
/// result into the executor's record.
async fn execute_technique(
    job: CaseJob<'_>,
    context: &TechniqueContext,
    overrides: &Parameters,
    vars: &Map<String, Value>,
) -> Executed {
    let input = execution::CaseInput {
        project: &context.project,
        unit: job.unit,
        case: job.case.case.as_ref(),
        overrides: vars,
        parameters: overrides,
        backend: job.backend.backend.as_ref(),
        backend_name: &job.backend.name,
        judges: &context.judges,
        sample: job.sample,
        no_cache: job.no_cache,
    };
    let (handle, cancel) = execution::Cancel::new();
    let future = execution::execute_case(&input, &|_| {}, &cancel);
    tokio::pin!(future);
    let result = tokio::select! {
        result = &mut future => result,
        () = job.cancel.cancelled() => {
            // The technique keeps what came so far and marks the case interrupted.
            handle.cancel();
            future.await
        }
    };
    let mut record = CaseResult::started(
        job.case.index(),
        job.sample,
        job.case.name(),
        &job.case.rendered.messages,
    );
    let executed = match result {
        Ok(executed) => executed,
        Err(error) => {
            record.error = Some(error.to_string());
            return Executed {
                reason: error.to_string(),
                record,
                assertions: Vec::new(),
                score: 0.0,
                interrupted: false,
            };
        }
    };
    let interrupted = executed.status == execution::ExecutionStatus::Interrupted;
    executed.fill_record(&mut record);
    let mut out = Executed {
        assertions: Vec::new(),
        score: 0.0,
        reason: record.error.clone().unwrap_or_default(),
        interrupted,
        record,
    };
    if interrupted || out.record.error.is_some() {
        return out;
    }
    match (&executed.verdict, &job.case.case) {
        (Some(verdict), Some(_)) => {
            out.score = verdict.score;
            if !verdict.pass {
                out.reason.clone_from(&verdict.reason);
            }
            out.assertions.clone_from(&verdict.results);
        }
        _ => out.score = 1.0,
    }
    out
}

/// What the executor reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// A job's request is about to start.
    Started { job: usize },
    /// A job finished (stored or about to be, unless interrupted).
    Finished { job: usize, executed: &'a Executed },
    /// Writing to the store failed; the run stops.
    StoreFailed { error: &'a StoreError },
}

/// Where results go: the store and the stored run of each plan group.
pub struct Sink<'a> {
    pub store: &'a dyn Store,
    /// Indexed by [`super::plan::Job::group`].
    pub runs: &'a [RunId],
}

/// The executor's result: every job's outcome by job index (`None`: never ran or interrupted).
pub struct Outcome {
    pub results: Vec<Option<Executed>>,
    pub interrupted: bool,
    pub store_error: Option<StoreError>,
    pub elapsed_ms: u64,
}

enum Message {
    Started(usize),
    Finished(usize, Box<Executed>),
}

/// Runs `plan`. Must be awaited inside a multi-threaded tokio runtime; workers are spawned on
/// it. Cancelling `cancel` stops new jobs and drops the ones in flight.
pub async fn execute(
    plan: Arc<Plan>,
    inputs: Arc<RunInputs>,
    sink: Option<Sink<'_>>,
    cancel: Cancel,
    mut on_event: impl FnMut(Event<'_>),
) -> Outcome {
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    for (backend, queue) in plan.queues().into_iter().enumerate() {
        if queue.is_empty() {
            continue;
        }
        let queue = Arc::new(queue);
        let next = Arc::new(AtomicUsize::new(0));
        let workers = inputs.backends[backend]
            .concurrency
            .clamp(1, queue.len().max(1));
        for _ in 0..workers {
            let (queue, next, plan, inputs, tx, cancel) = (
                Arc::clone(&queue),
                Arc::clone(&next),
                Arc::clone(&plan),
                Arc::clone(&inputs),
                tx.clone(),
                cancel.clone(),
            );
            tokio::spawn(async move {
                while !cancel.is_cancelled() {
                    let Some(&job_index) = queue.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let job = plan.jobs[job_index];
                    let unit = &inputs.units[job.unit];
                    if tx.send(Message::Started(job_index)).is_err() {
                        break;
                    }
                    let case_job = CaseJob {
                        backend: &inputs.backends[job.backend],
                        unit: &unit.unit,
                        case: &unit.cases[job.case],
                        parameters: unit.cases[job.case]
                            .rendered
                            .parameters
                            .overlay(&inputs.backends[job.backend].parameters)
                            .overlay(&inputs.overrides),
                        sample: job.sample,
                        no_cache: inputs.no_cache,
                        cancel: &cancel,
                    };
                    let executed = match &inputs.techniques {
                        Some(context) if needs_execution(&unit.unit, &unit.cases[job.case]) => {
                            execute_technique(
                                case_job,
                                context,
                                &inputs.overrides,
                                &context.vars[job.unit],
                            )
                            .await
                        }
                        _ => execute_plain(case_job).await,
                    };
                    if tx
                        .send(Message::Finished(job_index, Box::new(executed)))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    }
    drop(tx);

    let mut results: Vec<Option<Executed>> = (0..plan.jobs.len()).map(|_| None).collect();
    let mut store_error = None;
    let mut batch: Vec<usize> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        batch.clear();
        for message in pending {
            match message {
                Message::Started(job) => on_event(Event::Started { job }),
                Message::Finished(job, executed) => {
                    if !executed.interrupted {
                        batch.push(job);
                    }
                    results[job] = Some(*executed);
                }
            }
        }
        if let (Some(sink), None) = (&sink, &store_error) {
            if let Err(error) = write_batch(sink, &plan, &results, &batch) {
                on_event(Event::StoreFailed { error: &error });
                store_error = Some(error);
                // Nothing more can be kept: stop the workers rather than run unrecorded.
                cancel.cancel();
            }
        }
        // `Finished` means stored: once the store has failed, a result that finishes is not
        // reported as finished, or a user would count on a result the store does not hold.
        if sink.is_some() && store_error.is_some() {
            continue;
        }
        for &job in &batch {
            if let Some(executed) = &results[job] {
                on_event(Event::Finished { job, executed });
            }
        }
    }
    let finished = results
        .iter()
        .filter(|r| r.as_ref().is_some_and(|e| !e.interrupted))
        .count();
    Outcome {
        interrupted: cancel.is_cancelled() && finished < plan.jobs.len(),
        results,
        store_error,
        elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Stores the finished jobs of a batch, one atomic write per stored run.
fn write_batch(
    sink: &Sink<'_>,
    plan: &Plan,
    results: &[Option<Executed>],
    batch: &[usize],
) -> Result<(), StoreError> {
    let mut by_group: std::collections::BTreeMap<usize, Vec<CaseResult>> = Default::default();
    for &job in batch {
        if let Some(executed) = &results[job] {
            by_group
                .entry(plan.jobs[job].group)
                .or_default()
                .push(executed.record.clone());
        }
    }
    for (group, records) in by_group {
        let run = sink.runs.get(group).copied().ok_or_else(|| {
            StoreError::invalid("run", format!("no stored run for plan group {group}"))
        })?;
        sink.store.record_results(run, &records)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Done, FinishReason, Message, Role, Usage};
    use crate::run::plan::{UnitSpec, plan};
    use crate::store::{MemoryStore, RunMeta, UnitFiles};
    use futures_util::future::BoxFuture;
    use futures_util::stream::BoxStream;

    /// Answers with the last message's text, or never answers when `hang`.
    struct Echo {
        hang: bool,
    }

    impl Backend for Echo {
        fn name(&self) -> &str {
            "echo"
        }

        fn stream(&self, req: ChatRequest) -> BoxStream<'static, Result<Chunk, BackendError>> {
            if self.hang {
                return futures_util::stream::pending().boxed();
            }
            let text = req
                .messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let done = Done {
                finish_reason: FinishReason::Stop,
                usage: Usage {
                    input_tokens: 3,
                    output_tokens: 2,
                },
                cached: false,
                cost: Some(0.5),
                warnings: Vec::new(),
            };
            futures_util::stream::iter([Ok(Chunk::Text(text)), Ok(Chunk::Done(Box::new(done)))])
                .boxed()
        }

        fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    fn inputs(hang: bool) -> RunInputs {
        let (prompt, _) = crate::prompt::parse_prompt(
            "p.prompty",
            "prompts/p.prompty".into(),
            "---\nname: p\n---\n{{ q }}\n",
        )
        .expect("prompt");
        let tests = "- description: seven\n  assert:\n    - type: contains\n      value: '7'\n- description: eight\n  assert:\n    - type: contains\n      value: '7'\n";
        struct NoFiles;
        impl crate::prompt::Workspace for NoFiles {
            fn read_library_file(&self, _: &str) -> Result<Option<String>, String> {
                Ok(None)
            }
            fn read_project_file(&self, _: &str) -> Result<Option<String>, String> {
                Ok(None)
            }
            fn display_path(&self, name: &str) -> std::path::PathBuf {
                name.into()
            }
        }
        let at = crate::suite::TestsFileLocation {
            display: std::path::Path::new("prompts/p.tests.yaml"),
            project_relative: "prompts/p.tests.yaml",
        };
        let (suite, _) = crate::suite::parse_tests_file(tests, &at, &NoFiles);
        let cases = suite
            .cases
            .iter()
            .zip(["answer 7", "answer 8"])
            .map(|(case, text)| PreparedCase {
                case: Some(case.clone()),
                rendered: RenderedCase {
                    messages: vec![Message::new(Role::User, text)],
                    parameters: Parameters::default(),
                    backend: "echo".into(),
                    warnings: Vec::new(),
                },
            })
            .collect();
        RunInputs {
            units: vec![PreparedUnit {
                unit: PromptUnit {
                    prompt,
                    suite: Some(suite),
                    tests_path: None,
                },
                cases,
            }],
            backends: vec![BackendHandle {
                name: "echo".into(),
                model: "echo-1".into(),
                backend: Arc::new(Echo { hang }),
                concurrency: 2,
                parameters: Parameters::default(),
            }],
            overrides: Parameters::default(),
            no_cache: true,
            techniques: None,
        }
    }

    fn store_with_run() -> (MemoryStore, RunId) {
        let store = MemoryStore::new();
        let version = store
            .commit(
                &UnitFiles {
                    prompt: "p".into(),
                    files: [("prompts/p.prompty".to_owned(), "x".to_owned())].into(),
                },
                "m",
                "t",
            )
            .expect("commit")
            .id()
            .to_owned();
        let run = store
            .begin_run(RunMeta {
                version,
                prompt: "p".into(),
                backend: "echo".into(),
                model: "echo-1".into(),
                parameters: serde_json::Value::Null,
            })
            .expect("run");
        (store, run)
    }

    fn spec() -> Vec<UnitSpec> {
        vec![UnitSpec {
            prompt: "p".into(),
            cases: 2,
            backends: vec!["echo".into()],
        }]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_scores_and_stores_every_job() {
        let plan = Arc::new(plan(&spec(), 3).expect("plan"));
        let (store, run) = store_with_run();
        let mut finished = 0;
        let outcome = execute(
            Arc::clone(&plan),
            Arc::new(inputs(false)),
            Some(Sink {
                store: &store,
                runs: &[run],
            }),
            Cancel::new(),
            |e| {
                if matches!(e, Event::Finished { .. }) {
                    finished += 1;
                }
            },
        )
        .await;
        assert!(!outcome.interrupted);
        assert_eq!(finished, 6);
        let stored = store.results(run).expect("results");
        assert_eq!(stored.len(), 6);
        assert_eq!(
            stored
                .iter()
                .map(|r| (r.case, r.sample, r.passed))
                .collect::<Vec<_>>(),
            [
                (1, 0, Some(true)),
                (1, 1, Some(true)),
                (1, 2, Some(true)),
                (2, 0, Some(false)),
                (2, 1, Some(false)),
                (2, 2, Some(false))
            ]
        );
        let first = outcome.results[0].as_ref().expect("result");
        assert_eq!(first.record.output, "answer 7");
        assert_eq!(first.record.usage.output, 2);
        assert_eq!(first.record.cost, 0.5);
        let failed = outcome.results[3].as_ref().expect("result");
        assert!(failed.reason.contains("contains"), "{}", failed.reason);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelling_keeps_what_finished_and_drops_the_rest() {
        let plan = Arc::new(plan(&spec(), 1).expect("plan"));
        let (store, run) = store_with_run();
        let cancel = Cancel::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            trigger.cancel();
        });
        let outcome = execute(
            plan,
            Arc::new(inputs(true)),
            Some(Sink {
                store: &store,
                runs: &[run],
            }),
            cancel,
            |_| {},
        )
        .await;
        assert!(outcome.interrupted);
        assert!(outcome.results.iter().flatten().all(|e| e.interrupted));
        assert!(store.results(run).expect("results").is_empty());
    }
}
