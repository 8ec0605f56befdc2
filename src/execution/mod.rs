//! Executing one case of one prompt on one backend, whatever its technique: a plain call,
//! self-consistency (samples and a majority vote), metaprompting (a generator writes the prompt),
//! ReAct (a thought/action/observation loop over tools) or steps (other prompts' outputs as
//! variables), then grading the result with the case's assertions, model-graded ones included.
//!
//! [`execute_case`] is the one entry point; `promptdeck run` uses it for its single case, and the
//! run matrix of `promptdeck test` calls it per (case, backend, sample). It does no printing and
//! touches no store: streamed text and progress go to the caller's [`Event`] sink, and
//! everything that happened comes back in [`CaseExecution`]. Committing a metaprompt's generated
//! prompt as its own version is [`generated_unit`] plus the caller's store.
//!
//! The decisions that need no IO live in [`plan`] (cycles, judges, sampling), [`react`] (the
//! ReAct text protocol) and [`tools`] (the calculator and date are pure; search and command
//! tools are the only IO besides the backends). Calls run one after another: a case's calls
//! depend on each other (ReAct, steps, metaprompts) or are few (samples), and concurrency
//! across cases belongs to the run matrix, within each backend's limits.

pub mod plan;
pub mod react;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backend::{Backend, BackendError, ChatRequest, Chunk, Usage};
use crate::diagnostic::Diagnostic;
use crate::library::{self, PromptUnit};
use crate::project::Project;
use crate::prompt::technique::{Technique, VoteOutput};
use crate::prompt::{Message, Parameters, Role};
use crate::store::UnitFiles;
use crate::suite::evaluate::{
    self, CaseVerdict, Judge, JudgeRequest, Observation, extract_answer, judge_case, majority_vote,
};
use crate::suite::{AssertionKind, TestCase};

/// The judge prompts as shipped, used when a project has no `prompts/_judges/` of its own.
const BUILTIN_RUBRIC_JUDGE: &str = include_str!("../../prompts/_judges/llm-rubric.prompty");
const BUILTIN_CLOSEDQA_JUDGE: &str = include_str!("../../prompts/_judges/closedqa.prompty");
const RUBRIC_JUDGE_FILE: &str = "_judges/llm-rubric.prompty";
const CLOSEDQA_JUDGE_FILE: &str = "_judges/closedqa.prompty";
/// Suffix of the prompt name under which a metaprompt's generated prompts are versioned.
pub const GENERATED_SUFFIX: &str = ".generated";

/// Everything [`execute_case`] needs.
pub struct CaseInput<'a> {
    pub project: &'a Project,
    pub unit: &'a PromptUnit,
    /// `None` runs the prompt's `sample` variables.
    pub case: Option<&'a TestCase>,
    /// `--var` values: over every other variable of the prompt (not of the prompts it runs).
    pub overrides: &'a Map<String, Value>,
    /// Explicit parameter overrides (`--temperature`, `--seed`, `--max-tokens`), over the
    /// prompt's and the technique's.
    pub parameters: &'a Parameters,
    /// The backend every stage runs on (generators and steps included).
    pub backend: &'a dyn Backend,
    /// Its configured name, recorded with each call.
    pub backend_name: &'a str,
    pub judges: &'a Judges,
    /// Which repetition of the case this is (0 for `promptdeck run`); keeps repeated samples
    /// from being cache hits of each other.
    pub sample: u32,
    pub no_cache: bool,
}

/// The judge backends a case may use, opened by the caller ([`plan::judges_for_case`] says
/// which), and the default judge name (`[defaults] judge`).
#[derive(Default, Clone)]
pub struct Judges {
    pub default: Option<String>,
    pub backends: BTreeMap<String, Arc<dyn Backend>>,
}

/// Progress, for a CLI or TUI showing tokens as they arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A backend call begins. `answer`: this call's text is the case's output as it streams (a
    /// plain prompt, the last stage of steps or a metaprompt); a consumer may show it as the
    /// answer. Other calls (samples, ReAct turns, generators, judges) are intermediate.
    Started {
        call: usize,
        stage: String,
        answer: bool,
    },
    Text {
        call: usize,
        text: String,
    },
    Finished {
        call: usize,
    },
    /// A ReAct tool answered.
    Observation {
        step: u32,
        tool: String,
        observation: String,
    },
}

/// Where events go; must not block.
pub type EventSink<'a> = &'a (dyn Fn(Event) + Send + Sync);

/// A cancellation signal: [`CancelHandle::cancel`] stops the current call (its partial text is
/// kept) and the execution ends as interrupted.
#[derive(Clone, Default)]
pub struct Cancel(Option<tokio::sync::watch::Receiver<bool>>);

pub struct CancelHandle(tokio::sync::watch::Sender<bool>);

impl Cancel {
    /// A signal that never fires.
    pub fn never() -> Cancel {
        Cancel(None)
    }

    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (CancelHandle(tx), Cancel(Some(rx)))
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when cancelled; never when the handle is dropped uncancelled.
    pub async fn cancelled(&self) {
        if let Some(rx) = &self.0 {
            let mut rx = rx.clone();
            if rx.wait_for(|cancelled| *cancelled).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

impl CancelHandle {
    pub fn cancel(&self) {
        // No receiver left means nothing is running to stop.
        let _ = self.0.send(true);
    }
}

/// Problems of the prompt library or configuration, found before or while running: the
/// caller reports them like `check` does (exit 2), not as a failed case.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error("{0}")]
    Render(Box<Diagnostic>),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Prompt(Vec<Diagnostic>),
    #[error("{0}")]
    Chain(String),
    #[error("{0}")]
    Judge(String),
    #[error("{0}")]
    Tool(String),
}

/// One backend call, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// What the call was for: `main`, `sample 2/5`, `react step 3`, `generator meta/writer`,
    /// `step 1 tasks/summary`, `judge llm-rubric`; nested stages are joined with ` > `.
    pub stage: String,
    pub backend: String,
    pub messages: Vec<Message>,
    pub parameters: Parameters,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    pub usage: Usage,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    #[serde(default)]
    pub cached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A judge's call: not counted in the case's latency and cost.
    #[serde(default)]
    pub judge: bool,
}

/// Self-consistency's samples and vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Votes {
    /// Each sample's extracted answer, in sample order; `None` where none could be extracted.
    pub answers: Vec<Option<String>>,
    pub answer: Option<String>,
    /// Each distinct answer with its count, most first.
    pub distribution: Vec<(String, usize)>,
    /// Votes for the winner over all samples.
    pub agreement: f64,
}

/// A metaprompt's generated prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub generator: String,
    /// The derived prompt name it is versioned under: `<prompt>.generated`.
    pub prompt: String,
    /// The text as used (role-marker lines quoted).
    pub text: String,
    /// How many role-marker lines had to be quoted.
    #[serde(default)]
    pub neutralised_lines: usize,
}

/// One step's output in a `steps` chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutput {
    pub prompt: String,
    pub var: String,
    pub output: String,
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Complete,
    /// A backend call failed; `error` says which and why.
    Failed,
    Interrupted,
}

/// What a technique adds to a stored result: every call, the vote, the trace, the generated
/// prompt and the step outputs. Stored as JSON beside the result (`CaseResult::technique`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TechniqueRecord {
    /// `plain`, `self-consistency`, `metaprompt`, `react` or `steps`.
    pub kind: String,
    pub calls: Vec<CallRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<Votes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<react::Trace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<Generated>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepOutput>,
}

/// Everything one case execution produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseExecution {
    /// `plain` or the technique's kind.
    pub kind: String,
    /// What the assertions saw: the answer, the voted answer, the ReAct final answer.
    pub output: String,
    /// The prompt's own rendered messages (a metaprompt's stage 2, the first ReAct turn).
    pub messages: Vec<Message>,
    pub status: ExecutionStatus,
    pub error: Option<String>,
    /// Every backend call in order, judges included.
    pub calls: Vec<CallRecord>,
    pub votes: Option<Votes>,
    pub trace: Option<react::Trace>,
    pub generated: Option<Generated>,
    pub steps: Vec<StepOutput>,
    /// Totals over the calls that produced the output (judges excluded).
    pub usage: Usage,
    pub latency_ms: u64,
    /// Time to the first text of the first call.
    pub ttft_ms: Option<u64>,
    /// `None` when no call reported a cost.
    pub cost: Option<f64>,
    /// Every call was served from the cache.
    pub cached: bool,
    /// Of the last call that produced the output.
    pub finish_reason: Option<String>,
    /// The case's verdict; `None` without a case, or when the execution did not complete.
    pub verdict: Option<CaseVerdict>,
    pub warnings: Vec<String>,
}

impl CaseExecution {
    /// Copies what a stored result keeps into `record`: output, timings, usage, cost, the
    /// verdict's assertions and, for anything beyond one plain call, the technique record.
    /// An interrupted execution is recorded with the error "interrupted".
    pub fn fill_record(&self, record: &mut crate::store::CaseResult) {
        record.output.clone_from(&self.output);
        record.finish_reason.clone_from(&self.finish_reason);
        record.latency_ms = self.latency_ms;
        record.ttft_ms = self.ttft_ms;
        record.usage = crate::store::TokenUsage {
            input: self.usage.input_tokens,
            output: self.usage.output_tokens,
        };
        record.cost = self.cost.unwrap_or(0.0);
        record.cached = self.cached;
        record.error = match self.status {
            ExecutionStatus::Interrupted => Some("interrupted".to_owned()),
            _ => self.error.clone(),
        };
        record.assertions = self
            .verdict
            .iter()
            .flat_map(|v| v.results.iter())
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
        record.passed = self.verdict.as_ref().map(|v| v.pass);
        // A plain call is fully described by the fields above.
        record.technique = (self.kind != "plain" || self.calls.len() > 1)
            .then(|| serde_json::to_value(self.technique_record()).ok())
            .flatten();
    }

    /// The part of the execution a stored result keeps beside its plain fields.
    pub fn technique_record(&self) -> TechniqueRecord {
        TechniqueRecord {
            kind: self.kind.clone(),
            calls: self.calls.clone(),
            votes: self.votes.clone(),
            trace: self.trace.clone(),
            generated: self.generated.clone(),
            steps: self.steps.clone(),
        }
    }
}

/// The version-store unit of a generated prompt: prompt `<prompt>.generated`, one file. Two
/// generations committed this way can be compared with `promptdeck diff`.
pub fn generated_unit(generated: &Generated) -> UnitFiles {
    UnitFiles {
        prompt: generated.prompt.clone(),
        files: BTreeMap::from([(
            format!("{}/{}.txt", crate::project::PROMPTS_DIR, generated.prompt),
            if generated.text.ends_with('\n') {
                generated.text.clone()
            } else {
                format!("{}\n", generated.text)
            },
        )]),
    }
}

/// Runs one case of one prompt on one backend with its technique, then checks its assertions
/// (model-graded ones through `input.judges`). Library and configuration problems are errors;
/// a failed or cancelled backend call is a [`CaseExecution`] with that status, keeping the
/// calls made so far.
pub async fn execute_case(
    input: &CaseInput<'_>,
    events: EventSink<'_>,
    cancel: &Cancel,
) -> Result<CaseExecution, ExecutionError> {
    let mut exec = Exec {
        input,
        events,
        cancel,
        calls: Vec::new(),
        units: BTreeMap::new(),
        warnings: Vec::new(),
    };
    // Configuration first: nothing is called when a judge is missing or prompts form a cycle.
    let judge_names = match input.case {
        Some(case) => plan::judges_for_case(case, input.judges.default.as_deref(), &|name| {
            input.project.config.backends.contains_key(name)
        })
        .map_err(ExecutionError::Judge)?,
        None => Vec::new(),
    };
    if let Some(missing) = judge_names
        .iter()
        .find(|name| !input.judges.backends.contains_key(*name))
    {
        return Err(ExecutionError::Judge(format!(
            "the judge backend `{missing}` was not opened by the caller"
        )));
    }
    exec.units
        .insert(input.unit.prompt.name.clone(), input.unit.clone());
    exec.check_chain()?;
    exec.check_tools()?;

    let top = Target {
        unit: input.unit.clone(),
        case: input.case.cloned(),
        overrides: input.overrides.clone(),
        stage: String::new(),
        top: true,
    };
    let outcome = exec.run_prompt(top).await;
    let (result, status, error) = match outcome {
        Ok(result) => (Some(result), ExecutionStatus::Complete, None),
        Err(Halt::Error(e)) => return Err(e),
        Err(Halt::Failed(message)) => (None, ExecutionStatus::Failed, Some(message)),
        Err(Halt::Interrupted) => (None, ExecutionStatus::Interrupted, None),
    };
    let result = result.unwrap_or_else(|| {
        // A failed or interrupted run reports what the last output-producing call received.
        let text = exec
            .calls
            .iter()
            .rev()
            .find(|c| !c.judge)
            .map(|c| c.text.clone())
            .unwrap_or_default();
        PromptResult {
            output: text,
            messages: Vec::new(),
            votes: None,
            trace: None,
            generated: None,
            steps: Vec::new(),
        }
    });
    let main_calls: Vec<&CallRecord> = exec.calls.iter().filter(|c| !c.judge).collect();
    let usage = main_calls.iter().fold(Usage::default(), |u, c| Usage {
        input_tokens: u.input_tokens + c.usage.input_tokens,
        output_tokens: u.output_tokens + c.usage.output_tokens,
    });
    let latency_ms = main_calls.iter().map(|c| c.latency_ms).sum();
    let cost = main_calls
        .iter()
        .filter_map(|c| c.cost)
        .fold(None, |sum: Option<f64>, c| Some(sum.unwrap_or(0.0) + c));
    let mut execution = CaseExecution {
        kind: input
            .unit
            .prompt
            .front_matter
            .technique
            .as_ref()
            .map_or("plain", Technique::kind_name)
            .to_owned(),
        output: result.output,
        messages: result.messages,
        status,
        error,
        votes: result.votes,
        trace: result.trace,
        generated: result.generated,
        steps: result.steps,
        usage,
        latency_ms,
        ttft_ms: main_calls.first().and_then(|c| c.ttft_ms),
        cost,
        cached: !main_calls.is_empty() && main_calls.iter().all(|c| c.cached),
        finish_reason: main_calls.last().and_then(|c| c.finish_reason.clone()),
        verdict: None,
        warnings: Vec::new(),
        calls: Vec::new(),
    };
    if let (Some(case), ExecutionStatus::Complete) = (input.case, status) {
        match exec.grade(case, &execution).await {
            Ok(verdict) => execution.verdict = Some(verdict),
            Err(Halt::Interrupted) => execution.status = ExecutionStatus::Interrupted,
            Err(Halt::Failed(message)) => {
                execution.status = ExecutionStatus::Failed;
                execution.error = Some(message);
            }
            Err(Halt::Error(e)) => return Err(e),
        }
    }
    execution.calls = exec.calls;
    execution.warnings = exec.warnings;
    Ok(execution)
}

/// Why a technique stopped early.
enum Halt {
    Error(ExecutionError),
    Failed(String),
    Interrupted,
}

impl From<ExecutionError> for Halt {
    fn from(e: ExecutionError) -> Self {
        Halt::Error(e)
    }
}

/// A prompt to run: the top one, or a step or generator on the parent's variables.
struct Target {
    unit: PromptUnit,
    case: Option<TestCase>,
    overrides: Map<String, Value>,
    /// Stage label prefix for nested prompts (empty at the top).
    stage: String,
    top: bool,
}

struct PromptResult {
    output: String,
    messages: Vec<Message>,
    votes: Option<Votes>,
    trace: Option<react::Trace>,
    generated: Option<Generated>,
    steps: Vec<StepOutput>,
}

impl PromptResult {
    fn plain(output: String, messages: Vec<Message>) -> Self {
        PromptResult {
            output,
            messages,
            votes: None,
            trace: None,
            generated: None,
            steps: Vec::new(),
        }
    }
}

struct Exec<'a> {
    input: &'a CaseInput<'a>,
    events: EventSink<'a>,
    cancel: &'a Cancel,
    calls: Vec<CallRecord>,
    /// Loaded prompt units by library name.
    units: BTreeMap<String, PromptUnit>,
    warnings: Vec<String>,
}

/// One backend call to make.
struct Call {
    stage: String,
    messages: Vec<Message>,
    parameters: Parameters,
    extra: Map<String, Value>,
    sample_index: u32,
    answer: bool,
    judge: bool,
}

impl Exec<'_> {
    /// Loads a referenced prompt (once) by library name.
    fn unit(&mut self, name: &str) -> Result<PromptUnit, ExecutionError> {
        if let Some(unit) = self.units.get(name) {
            return Ok(unit.clone());
        }
        let project = self.input.project;
        let file = project
            .resolve_prompt(name, &project.root)
            .map_err(ExecutionError::Chain)?;
        let (unit, diagnostics) = library::load_unit_lenient(project, &file);
        let unit = unit.ok_or(ExecutionError::Prompt(diagnostics))?;
        self.units.insert(name.to_owned(), unit.clone());
        Ok(unit)
    }

    fn check_chain(&mut self) -> Result<(), ExecutionError> {
        let root = self.input.unit.prompt.name.clone();
        let mut failure = None;
        let result = plan::check_chain(&root, &mut |name| match self.unit(name) {
            Ok(unit) => Ok(unit
                .prompt
                .front_matter
                .technique
                .as_ref()
                .map(|t| {
                    t.referenced_prompts()
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()),
            Err(e) => {
                let message = e.to_string();
                failure = Some(e);
                Err(message)
            }
        });
        match (result, failure) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(e)) => Err(e),
            (Err(message), None) => Err(ExecutionError::Chain(message)),
        }
    }

    /// Every prompt of the chain may only name tools that are built in or allow-listed.
    fn check_tools(&self) -> Result<(), ExecutionError> {
        for unit in self.units.values() {
            if let Some(Technique::React { tools, .. }) = &unit.prompt.front_matter.technique {
                for tool in tools {
                    if self.input.project.config.tool_description(tool).is_none() {
                        return Err(ExecutionError::Tool(format!(
                            "{}: tool `{tool}` is neither built in (calculator, search, date) nor allow-listed under [tools.{tool}] in promptdeck.toml; refusing to run it",
                            unit.prompt.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn render(
        &self,
        target: &Target,
        provided: &Map<String, Value>,
    ) -> Result<library::RenderedCase, ExecutionError> {
        library::render_case_with(
            self.input.project,
            &target.unit,
            target.case.as_ref(),
            &target.overrides,
            provided,
        )
        .map_err(|d| ExecutionError::Render(Box::new(d)))
    }

    /// The variables a nested prompt (a step, a generator) receives: the parent's case variables
    /// (or sample) and overrides, not the parent's input defaults, so the nested prompt's own
    /// defaults apply.
    fn nested_case(&self, target: &Target, extra: &Map<String, Value>) -> Result<TestCase, Halt> {
        let mut vars = match &target.case {
            Some(case) => case.vars.clone(),
            None => target
                .unit
                .prompt
                .sample(&self.input.project.workspace())
                .map_err(|d| Halt::Error(ExecutionError::Render(Box::new(d))))?,
        };
        vars.extend(target.overrides.clone());
        vars.extend(extra.clone());
        Ok(TestCase {
            index: target.case.as_ref().map_or(0, |c| c.index),
            description: target.case.as_ref().and_then(|c| c.description.clone()),
            vars,
            assertions: Vec::new(),
            options: Map::new(),
            threshold: None,
            min_pass: None,
            metadata: Map::new(),
            position: target
                .case
                .as_ref()
                .map_or(crate::diagnostic::Position::START, |c| c.position),
        })
    }

    fn stage(target: &Target, label: &str) -> String {
        if target.stage.is_empty() {
            label.to_owned()
        } else {
            format!("{} > {label}", target.stage)
        }
    }

    fn run_prompt(&mut self, target: Target) -> BoxFuture<'_, Result<PromptResult, Halt>> {
        Box::pin(async move {
            let technique = target.unit.prompt.front_matter.technique.clone();
            match technique {
                None => {
                    let rendered = self.render(&target, &Map::new())?;
                    let stage = Self::stage(&target, "main");
                    let record = self
                        .call(self.plain_call(&target, &rendered, stage, target.top))
                        .await?;
                    Ok(PromptResult::plain(record.text, rendered.messages))
                }
                Some(Technique::SelfConsistency {
                    samples,
                    extract,
                    output,
                    ..
                }) => {
                    let rendered = self.render(&target, &Map::new())?;
                    let technique = target.unit.prompt.front_matter.technique.clone();
                    let parameters = match &technique {
                        Some(t) => plan::sampling_parameters(
                            t,
                            &rendered.parameters,
                            self.input.parameters,
                        ),
                        None => rendered.parameters.overlay(self.input.parameters),
                    };
                    let mut answers = Vec::new();
                    let mut texts = Vec::new();
                    for i in 0..samples {
                        let call = Call {
                            stage: Self::stage(&target, &format!("sample {}/{samples}", i + 1)),
                            messages: rendered.messages.clone(),
                            parameters: parameters.clone(),
                            extra: target
                                .unit
                                .prompt
                                .front_matter
                                .model
                                .extra_parameters
                                .clone(),
                            sample_index: plan::sample_index(self.input.sample, samples, i),
                            answer: false,
                            judge: false,
                        };
                        let record = self.call(call).await?;
                        answers.push(extract_answer(&extract, &record.text));
                        texts.push(record.text);
                    }
                    let vote = majority_vote(&answers);
                    if vote.answer.is_none() {
                        self.warnings.push(format!(
                            "{}: no answer could be extracted from any of the {samples} samples",
                            target.unit.prompt.name
                        ));
                    }
                    let graded = match (output, &vote.answer) {
                        (VoteOutput::Sample, Some(winner)) => answers
                            .iter()
                            .position(|a| a.as_ref() == Some(winner))
                            .and_then(|i| texts.get(i).cloned())
                            .unwrap_or_default(),
                        (_, answer) => answer.clone().unwrap_or_default(),
                    };
                    Ok(PromptResult {
                        output: graded,
                        messages: rendered.messages,
                        votes: Some(Votes {
                            answers,
                            answer: vote.answer,
                            distribution: vote.distribution,
                            agreement: vote.agreement,
                        }),
                        trace: None,
                        generated: None,
                        steps: Vec::new(),
                    })
                }
                Some(Technique::Metaprompt {
                    generator,
                    variable,
                }) => {
                    let unit = self.unit(&generator)?;
                    let case = self.nested_case(&target, &Map::new())?;
                    let stage1 = Target {
                        unit,
                        case: Some(case),
                        overrides: Map::new(),
                        stage: Self::stage(&target, &format!("generator {generator}")),
                        top: false,
                    };
                    let written = self.run_prompt(stage1).await?.output;
                    // The generated text is data in a variable: it is never rendered as a
                    // template (so it cannot include files or spend fuel), and role-marker lines
                    // in it are quoted so it cannot add messages of its own.
                    let (text, neutralised) = plan::neutralise_role_markers(written.trim());
                    if neutralised > 0 {
                        self.warnings.push(format!(
                            "{generator} wrote {neutralised} role-marker line(s) into the generated prompt; they were quoted so they stay inside the system message"
                        ));
                    }
                    let mut provided = Map::new();
                    provided.insert(variable, Value::String(text.clone()));
                    let rendered = self.render(&target, &provided)?;
                    let stage = Self::stage(&target, "generated");
                    let record = self
                        .call(self.plain_call(&target, &rendered, stage, target.top))
                        .await?;
                    Ok(PromptResult {
                        output: record.text,
                        messages: rendered.messages,
                        votes: None,
                        trace: None,
                        generated: Some(Generated {
                            generator,
                            prompt: format!("{}{GENERATED_SUFFIX}", target.unit.prompt.name),
                            text,
                            neutralised_lines: neutralised,
                        }),
                        steps: Vec::new(),
                    })
                }
                Some(Technique::Steps { steps }) => {
                    let mut provided = Map::new();
                    let mut outputs = Vec::new();
                    for (i, step) in steps.iter().enumerate() {
                        let unit = self.unit(&step.prompt)?;
                        let case = self.nested_case(&target, &provided)?;
                        let nested = Target {
                            unit,
                            case: Some(case),
                            overrides: Map::new(),
                            stage: Self::stage(&target, &format!("step {} {}", i + 1, step.prompt)),
                            top: false,
                        };
                        let output = self.run_prompt(nested).await?.output;
                        provided.insert(step.var.clone(), Value::String(output.clone()));
                        outputs.push(StepOutput {
                            prompt: step.prompt.clone(),
                            var: step.var.clone(),
                            output,
                        });
                    }
                    let rendered = self.render(&target, &provided)?;
                    let stage = Self::stage(&target, "main");
                    let record = self
                        .call(self.plain_call(&target, &rendered, stage, target.top))
                        .await?;
                    Ok(PromptResult {
                        output: record.text,
                        messages: rendered.messages,
                        votes: None,
                        trace: None,
                        generated: None,
                        steps: outputs,
                    })
                }
                Some(Technique::React {
                    tools,
                    max_steps,
                    search_dir,
                }) => self.react(&target, &tools, max_steps, search_dir).await,
            }
        })
    }

    fn plain_call(
        &self,
        target: &Target,
        rendered: &library::RenderedCase,
        stage: String,
        answer: bool,
    ) -> Call {
        Call {
            stage,
            messages: rendered.messages.clone(),
            parameters: rendered.parameters.overlay(self.input.parameters),
            extra: target
                .unit
                .prompt
                .front_matter
                .model
                .extra_parameters
                .clone(),
            sample_index: self.input.sample,
            answer,
            judge: false,
        }
    }

    async fn react(
        &mut self,
        target: &Target,
        tools: &[String],
        max_steps: u32,
        search_dir: Option<String>,
    ) -> Result<PromptResult, Halt> {
        let rendered = self.render(target, &Map::new())?;
        let mut messages = rendered.messages.clone();
        let mut trace = react::Trace::default();
        let mut output = None;
        for step in 1..=max_steps {
            let mut call = self.plain_call(
                target,
                &rendered,
                Self::stage(target, &format!("react step {step}")),
                false,
            );
            call.messages = messages.clone();
            let record = self.call(call).await?;
            let kept = react::keep_until_observation(&record.text).to_owned();
            let mut entry = react::TraceStep {
                step,
                thought: None,
                action: None,
                input: None,
                observation: None,
                final_answer: None,
            };
            let observation = match react::parse_turn(&record.text) {
                react::Turn::Final { thought, answer } => {
                    entry.thought = thought;
                    entry.final_answer = Some(answer.clone());
                    trace.steps.push(entry);
                    output = Some(answer);
                    break;
                }
                react::Turn::Action {
                    thought,
                    tool,
                    input,
                } => {
                    entry.thought = thought;
                    let observation = self
                        .use_tool(&tool, &input, tools, search_dir.as_deref())
                        .await;
                    entry.action = Some(tool.clone());
                    entry.input = Some(input);
                    (self.events)(Event::Observation {
                        step,
                        tool,
                        observation: observation.clone(),
                    });
                    observation
                }
                react::Turn::Invalid { reason } => {
                    entry.thought = (!kept.trim().is_empty()).then(|| kept.trim().to_owned());
                    format!("Invalid format: {reason}")
                }
            };
            entry.observation = Some(observation.clone());
            trace.steps.push(entry);
            messages.push(Message::new(Role::Assistant, kept));
            messages.push(Message::new(
                Role::User,
                format!("Observation: {observation}"),
            ));
        }
        if output.is_none() {
            trace.stopped = Some(format!(
                "reached the step limit ({max_steps}) without a Final Answer"
            ));
        }
        Ok(PromptResult {
            output: output.unwrap_or_default(),
            messages: rendered.messages,
            votes: None,
            trace: Some(trace),
            generated: None,
            steps: Vec::new(),
        })
    }

    /// Runs a tool for the model; every failure is an observation it can read.
    async fn use_tool(
        &self,
        tool: &str,
        input: &str,
        allowed: &[String],
        search_dir: Option<&str>,
    ) -> String {
        if !allowed.iter().any(|t| t == tool) {
            return format!(
                "Error: tool `{tool}` is not available; use one of: {}",
                allowed.join(", ")
            );
        }
        let project = self.input.project;
        let result = match tool {
            "calculator" => tools::calculate(input).map(tools::format_number),
            "date" => Ok(tools::today()),
            "search" => {
                let root = project.root.clone();
                let dir = search_dir.unwrap_or("data").to_owned();
                let query = input.to_owned();
                tokio::task::spawn_blocking(move || tools::search(&root, &dir, &query))
                    .await
                    .unwrap_or_else(|e| Err(format!("the search stopped: {e}")))
            }
            other => match project.config.tools.get(other) {
                Some(config) => {
                    let (config, input, root) =
                        (config.clone(), input.to_owned(), project.root.clone());
                    tokio::task::spawn_blocking(move || tools::run_command(&config, &input, &root))
                        .await
                        .unwrap_or_else(|e| Err(format!("the tool stopped: {e}")))
                }
                // check_tools refused the prompt before anything ran; kept for safety.
                None => Err(format!("tool `{other}` is not allow-listed")),
            },
        };
        match result {
            Ok(text) if text.trim().is_empty() => "(no output)".to_owned(),
            Ok(text) => tools::clip(&text, tools::MAX_OBSERVATION_CHARS),
            Err(e) => format!("Error: {e}"),
        }
    }

    /// Makes one backend call (on the case's backend, or a judge's), streaming events and
    /// recording it. Failures keep their partial text in the record.
    async fn call(&mut self, call: Call) -> Result<CallRecord, Halt> {
        self.call_on(call, None).await
    }

    async fn call_on(
        &mut self,
        call: Call,
        judge: Option<(&str, &dyn Backend)>,
    ) -> Result<CallRecord, Halt> {
        if self.cancel.is_cancelled() {
            return Err(Halt::Interrupted);
        }
        let (backend_name, backend) =
            judge.unwrap_or((self.input.backend_name, self.input.backend));
        let index = self.calls.len();
        (self.events)(Event::Started {
            call: index,
            stage: call.stage.clone(),
            answer: call.answer,
        });
        let request = ChatRequest {
            model: String::new(),
            messages: call.messages.clone(),
            parameters: call.parameters.clone(),
            extra: call.extra.clone(),
            sample_index: call.sample_index,
            no_cache: self.input.no_cache,
        };
        let start = std::time::Instant::now();
        let elapsed = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut stream = backend.stream(request);
        let mut text = String::new();
        let mut ttft_ms = None;
        let mut record = CallRecord {
            stage: call.stage.clone(),
            backend: backend_name.to_owned(),
            messages: call.messages,
            parameters: call.parameters,
            text: String::new(),
            finish_reason: None,
            usage: Usage::default(),
            latency_ms: 0,
            ttft_ms: None,
            cost: None,
            cached: false,
            error: None,
            judge: call.judge,
        };
        let end: Result<(), Halt> = loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = self.cancel.cancelled() => break Err(Halt::Interrupted),
            };
            match next {
                Some(Ok(Chunk::Text(piece))) => {
                    ttft_ms.get_or_insert_with(elapsed);
                    (self.events)(Event::Text {
                        call: index,
                        text: piece.clone(),
                    });
                    text.push_str(&piece);
                }
                Some(Ok(Chunk::Done(done))) => {
                    record.finish_reason = Some(format!("{:?}", done.finish_reason).to_lowercase());
                    record.usage = done.usage;
                    record.cost = done.cost;
                    record.cached = done.cached;
                    for warning in &done.warnings {
                        self.warnings.push(format!("{}: {warning}", call.stage));
                    }
                    break Ok(());
                }
                Some(Err(error)) => {
                    if let BackendError::Truncated { partial_text, .. } = &error {
                        if text.is_empty() {
                            text = partial_text.clone();
                        }
                    }
                    record.error = Some(error.to_string());
                    break Err(Halt::Failed(format!("{}: {error}", call.stage)));
                }
                None => {
                    let message = "the backend stream ended without a result";
                    record.error = Some(message.to_owned());
                    break Err(Halt::Failed(format!("{}: {message}", call.stage)));
                }
            }
        };
        drop(stream);
        if matches!(end, Err(Halt::Interrupted)) {
            record.error = Some("interrupted".to_owned());
        }
        record.text = text;
        record.latency_ms = elapsed();
        record.ttft_ms = ttft_ms;
        self.calls.push(record.clone());
        (self.events)(Event::Finished { call: index });
        end.map(|()| record)
    }

    /// Asks the judges (one call per model-graded assertion), then checks every assertion.
    async fn grade(
        &mut self,
        case: &TestCase,
        execution: &CaseExecution,
    ) -> Result<CaseVerdict, Halt> {
        let mut replies = Replies::default();
        let task = execution
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        for assertion in case.assertions.iter().filter(|a| plan::is_model_graded(a)) {
            let criterion = match &assertion.value {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => continue,
            };
            let key = (
                assertion.kind,
                criterion.clone(),
                assertion.provider.clone(),
            );
            if replies.0.contains_key(&key) {
                continue;
            }
            // judges_for_case checked that this resolves; a None here cannot happen.
            let Some(name) =
                plan::judge_name(assertion, case, self.input.judges.default.as_deref())
            else {
                continue;
            };
            let Some(backend) = self.input.judges.backends.get(&name).cloned() else {
                continue;
            };
            let reply = self
                .ask_judge(
                    assertion.kind,
                    &name,
                    backend.as_ref(),
                    &execution.output,
                    &criterion,
                    &task,
                )
                .await;
            let reply = match reply {
                Ok(text) => Ok(text),
                Err(Halt::Failed(message)) => Err(message),
                Err(other) => return Err(other),
            };
            replies.0.insert(key, reply);
        }
        let votes: Option<Vec<String>> = execution.votes.as_ref().map(|v| {
            v.answers
                .iter()
                .map(|a| a.clone().unwrap_or_default())
                .collect()
        });
        let observation = Observation {
            output: &execution.output,
            latency_ms: (!execution.cached).then_some(execution.latency_ms),
            cost: execution.cost,
            votes: votes.as_deref(),
        };
        let results = case
            .assertions
            .iter()
            .map(|a| evaluate::evaluate(a, &observation, Some(&replies)))
            .collect();
        Ok(judge_case(case.threshold, results))
    }

    async fn ask_judge(
        &mut self,
        kind: AssertionKind,
        backend_name: &str,
        backend: &dyn Backend,
        output: &str,
        criterion: &str,
        task: &str,
    ) -> Result<String, Halt> {
        let (file, builtin, criterion_var) = match kind {
            AssertionKind::ModelGradedClosedqa => {
                (CLOSEDQA_JUDGE_FILE, BUILTIN_CLOSEDQA_JUDGE, "criterion")
            }
            _ => (RUBRIC_JUDGE_FILE, BUILTIN_RUBRIC_JUDGE, "rubric"),
        };
        let unit = self.judge_unit(file, builtin)?;
        // The output is untrusted: it must not add messages to the judge's prompt.
        let (output, _) = plan::neutralise_role_markers(output);
        let (task, _) = plan::neutralise_role_markers(task);
        let mut vars = Map::new();
        vars.insert("output".to_owned(), Value::String(output));
        vars.insert(
            criterion_var.to_owned(),
            Value::String(criterion.to_owned()),
        );
        if kind == AssertionKind::ModelGradedClosedqa {
            vars.insert("task".to_owned(), Value::String(task));
        }
        let rendered =
            library::render_case_with(self.input.project, &unit, None, &vars, &Map::new())
                .map_err(|d| Halt::Error(ExecutionError::Render(Box::new(d))))?;
        let call = Call {
            stage: format!("judge {}", kind.name()),
            messages: rendered.messages,
            parameters: rendered.parameters,
            extra: Map::new(),
            sample_index: 0,
            answer: false,
            judge: true,
        };
        Ok(self
            .call_on(call, Some((backend_name, backend)))
            .await?
            .text)
    }

    /// The project's judge prompt when it has one, else the shipped one.
    fn judge_unit(&self, file: &str, builtin: &str) -> Result<PromptUnit, ExecutionError> {
        let project = self.input.project;
        if project.prompts_dir().join(file).is_file() {
            let (unit, diagnostics) = library::load_unit_lenient(project, file);
            return unit.ok_or(ExecutionError::Prompt(diagnostics));
        }
        let path = std::path::PathBuf::from(format!("<built-in>/{file}"));
        let (prompt, _) =
            crate::prompt::parse_prompt(file, path, builtin).map_err(ExecutionError::Prompt)?;
        Ok(PromptUnit {
            prompt,
            suite: None,
            tests_path: None,
        })
    }
}

/// Judge replies gathered before grading, so the pure evaluator can read them synchronously.
#[derive(Default)]
struct Replies(
    std::collections::HashMap<(AssertionKind, String, Option<String>), Result<String, String>>,
);

impl Judge for Replies {
    fn judge(&self, request: &JudgeRequest<'_>) -> Result<String, String> {
        let key = (
            request.kind,
            request.criterion.to_owned(),
            request.provider.map(str::to_owned),
        );
        self.0
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Err("the judge was not asked".to_owned()))
    }
}

/// What a technique did, for `promptdeck run`'s stderr and the workbench's cells: the votes, the ReAct trace, the generated prompt, the
/// step outputs.
pub fn technique_report(executed: &CaseExecution) -> String {
    let mut out = String::new();
    for step in &executed.steps {
        out.push_str(&format!(
            "step {} -> {}:\n{}\n",
            step.prompt,
            step.var,
            indent_block(&step.output)
        ));
    }
    if let Some(generated) = &executed.generated {
        out.push_str(&format!(
            "generated prompt ({}):\n{}\n",
            generated.generator,
            indent_block(&generated.text)
        ));
    }
    if let Some(votes) = &executed.votes {
        let answers: Vec<String> = votes
            .answers
            .iter()
            .map(|a| a.clone().unwrap_or_else(|| "-".to_owned()))
            .collect();
        let distribution: Vec<String> = votes
            .distribution
            .iter()
            .map(|(answer, count)| format!("{answer} x{count}"))
            .collect();
        out.push_str(&format!(
            "samples: {}\nvotes: {} · agreement {:.2} ({} of {})\n",
            answers.join(", "),
            if distribution.is_empty() {
                "no answers".to_owned()
            } else {
                distribution.join(", ")
            },
            votes.agreement,
            votes.distribution.first().map_or(0, |(_, c)| *c),
            votes.answers.len(),
        ));
    }
    if let Some(trace) = &executed.trace {
        out.push_str("trace:\n");
        for line in trace.render().lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

fn indent_block(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|line| format!("  | {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::future::BoxFuture;
    use futures_util::stream::BoxStream;

    use super::*;
    use crate::backend::{Done, FinishReason};

    /// Answers each request with the next scripted reply, in two chunks; `None` never answers
    /// (a call that hangs until cancelled).
    struct Scripted {
        replies: Mutex<Vec<Option<String>>>,
        requests: Mutex<Vec<ChatRequest>>,
    }

    impl Scripted {
        fn new(replies: &[Option<&str>]) -> Scripted {
            Scripted {
                replies: Mutex::new(replies.iter().rev().map(|r| r.map(str::to_owned)).collect()),
                requests: Mutex::new(Vec::new()),
            }
        }
    }

    impl Backend for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }

        fn stream(&self, req: ChatRequest) -> BoxStream<'static, Result<Chunk, BackendError>> {
            self.requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(req);
            let reply = self
                .replies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .flatten();
            match reply {
                None => Box::pin(futures_util::stream::pending()),
                Some(text) => {
                    let mid = text.len() / 2;
                    let done = Chunk::Done(Box::new(Done {
                        finish_reason: FinishReason::Stop,
                        usage: Usage {
                            input_tokens: 3,
                            output_tokens: 2,
                        },
                        cached: false,
                        cost: Some(0.5),
                        warnings: Vec::new(),
                    }));
                    let chunks = vec![
                        Ok(Chunk::Text(text[..mid].to_owned())),
                        Ok(Chunk::Text(text[mid..].to_owned())),
                        Ok(done),
                    ];
                    Box::pin(futures_util::stream::iter(chunks))
                }
            }
        }

        fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        for (path, text) in files {
            let full = dir.path().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(full, text).unwrap_or_else(|e| panic!("{e}"));
        }
        let project = Project {
            root: dir.path().to_path_buf(),
            config: crate::project::Config::default(),
        };
        (dir, project)
    }

    async fn execute(
        project: &Project,
        name: &str,
        backend: &Scripted,
        cancel: &Cancel,
        events: EventSink<'_>,
    ) -> Result<CaseExecution, ExecutionError> {
        let (unit, _) = library::load_unit(project, &format!("{name}.prompty"))
            .unwrap_or_else(|d| panic!("{d:?}"));
        let input = CaseInput {
            project,
            unit: &unit,
            case: None,
            overrides: &Map::new(),
            parameters: &Parameters::default(),
            backend,
            backend_name: "scripted",
            judges: &Judges::default(),
            sample: 0,
            no_cache: false,
        };
        execute_case(&input, events, cancel).await
    }

    #[tokio::test]
    async fn plain_prompts_stream_their_answer_as_events() {
        let (_dir, project) = project(&[("prompts/hi.prompty", "Say hi.\n")]);
        let backend = Scripted::new(&[Some("Hello there")]);
        let seen = Mutex::new(Vec::new());
        let sink = |e: Event| seen.lock().unwrap_or_else(|e| e.into_inner()).push(e);
        let done = execute(&project, "hi", &backend, &Cancel::never(), &sink).await;
        let done = done.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.output, "Hello there");
        assert_eq!(
            (done.kind.as_str(), done.status),
            ("plain", ExecutionStatus::Complete)
        );
        assert_eq!(done.cost, Some(0.5));
        assert_eq!(
            seen.into_inner().unwrap_or_default(),
            vec![
                Event::Started {
                    call: 0,
                    stage: "main".to_owned(),
                    answer: true
                },
                Event::Text {
                    call: 0,
                    text: "Hello".to_owned()
                },
                Event::Text {
                    call: 0,
                    text: " there".to_owned()
                },
                Event::Finished { call: 0 },
            ]
        );
    }

    #[tokio::test]
    async fn cancelling_keeps_the_calls_made_so_far() {
        let prompt = "---\ntechnique: {kind: self-consistency, samples: 3, extract: last-number}\n---\nCount.\n";
        let (_dir, project) = project(&[("prompts/sc.prompty", prompt)]);
        // The second sample never answers; cancelling stops it.
        let backend = Scripted::new(&[Some("Answer: 4"), None]);
        let (handle, cancel) = Cancel::new();
        let handle = Mutex::new(Some(handle));
        let sink = |e: Event| {
            if let Event::Started { call: 1, .. } = e {
                if let Some(h) = handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    h.cancel();
                }
            }
        };
        let done = execute(&project, "sc", &backend, &cancel, &sink).await;
        let done = done.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.status, ExecutionStatus::Interrupted);
        assert_eq!(done.calls.len(), 2);
        assert_eq!(done.calls[1].error.as_deref(), Some("interrupted"));
        assert_eq!(done.verdict, None);
    }

    /// The run matrix spawns executions on the runtime: the future must be `Send`.
    #[allow(dead_code)]
    fn execute_case_is_send(input: &CaseInput<'_>, events: EventSink<'_>, cancel: &Cancel) {
        fn send<T: Send>(_: T) {}
        send(execute_case(input, events, cancel));
    }

    #[test]
    fn shipped_judge_prompts_render() {
        let (_dir, project) = project(&[]);
        for (file, builtin, vars) in [
            (
                RUBRIC_JUDGE_FILE,
                BUILTIN_RUBRIC_JUDGE,
                vec!["output", "rubric"],
            ),
            (
                CLOSEDQA_JUDGE_FILE,
                BUILTIN_CLOSEDQA_JUDGE,
                vec!["task", "output", "criterion"],
            ),
        ] {
            let (prompt, warnings) = crate::prompt::parse_prompt(file, file.into(), builtin)
                .unwrap_or_else(|d| panic!("{d:?}"));
            assert!(warnings.is_empty(), "{warnings:?}");
            let unit = PromptUnit {
                prompt,
                suite: None,
                tests_path: None,
            };
            let values: Map<String, Value> = vars
                .iter()
                .map(|v| ((*v).to_owned(), Value::String(format!("<{v}>"))))
                .collect();
            let rendered = library::render_case_with(&project, &unit, None, &values, &Map::new())
                .unwrap_or_else(|d| panic!("{d}"));
            assert_eq!(rendered.messages.len(), 2, "{file}");
            assert_eq!(rendered.parameters.temperature, Some(0.0));
            for v in vars {
                assert!(
                    rendered.messages[1].content.contains(&format!("<{v}>")),
                    "{file}: {v}"
                );
            }
        }
    }
}
