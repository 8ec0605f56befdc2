//! The workbench's state machine: `App::handle(Msg) -> Vec<Effect>`.
//!
//! PURE: no terminal, runtime or store types. Keys arrive as [`KeyChord`]s, results of work as
//! [`Msg`]s; what should happen in the world leaves as [`Effect`]s, which the terminal loop
//! performs and answers with more messages. Every result that belongs to a request carries the
//! request's sequence number (preview) or run id, and one that is no longer current is dropped,
//! so a slow answer never overwrites a newer one.

use std::collections::BTreeMap;

use super::editor::Editor;
use super::keymap::{Action, Context, Key, KeyChord, Keymap};
use super::layout;
use crate::diff::{self, SideBySideRow};

/// How long typing must pause before the preview renders.
pub const PREVIEW_DEBOUNCE_MS: u64 = 120;
/// The most samples one run asks for per backend and case.
pub const MAX_SAMPLES: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Main,
    Compare,
    History,
    /// Model comparison: radar and bar charts over the stored runs of the current versions.
    Models,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Tree,
    Editor,
    Preview,
    Cases,
    Outputs,
}

const PANES: [Pane; 5] = [
    Pane::Tree,
    Pane::Editor,
    Pane::Preview,
    Pane::Cases,
    Pane::Outputs,
];

/// Which file of the prompt the editor shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    Prompt,
    Tests,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPurpose {
    Search,
    Label { version: String },
}

/// Modal things drawn over a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    Help { scroll: usize },
    Palette { query: String, selected: usize },
    ConfirmQuit,
    Backends { selected: usize },
    Input { purpose: InputPurpose, text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// A prompt in the tree, with the verdicts of its latest run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptEntry {
    /// Library file name, `cot/math.prompty`.
    pub file_name: String,
    /// (passed, judged) of the latest run.
    pub counts: Option<(u32, u32)>,
}

impl PromptEntry {
    pub fn name(&self) -> &str {
        self.file_name
            .strip_suffix(".prompty")
            .unwrap_or(&self.file_name)
    }
}

/// The open prompt: its two files as editor buffers and as last saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub file_name: String,
    pub prompt: Editor,
    pub tests: Editor,
    pub saved_prompt: String,
    pub saved_tests: String,
    /// The tests file existed on disk when loaded (or was saved since).
    pub tests_exists: bool,
    pub active: Buffer,
}

impl Document {
    pub fn name(&self) -> &str {
        self.file_name
            .strip_suffix(".prompty")
            .unwrap_or(&self.file_name)
    }

    pub fn tests_file_name(&self) -> String {
        format!("{}.tests.yaml", self.name())
    }

    pub fn dirty(&self) -> bool {
        self.prompt.text() != self.saved_prompt || self.tests.text() != self.saved_tests
    }

    pub fn editor(&self) -> &Editor {
        match self.active {
            Buffer::Prompt => &self.prompt,
            Buffer::Tests => &self.tests,
        }
    }

    pub fn editor_mut(&mut self) -> &mut Editor {
        match self.active {
            Buffer::Prompt => &mut self.prompt,
            Buffer::Tests => &mut self.tests,
        }
    }

    /// The tests text to render and run with: `None` when there is no tests file.
    pub fn tests_text(&self) -> Option<String> {
        let text = self.tests.text();
        (self.tests_exists || !text.trim().is_empty()).then_some(text)
    }
}

/// A test case as the cases pane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseInfo {
    /// 1-based position in the tests file.
    pub index: usize,
    pub label: String,
    /// Variables as `name = value` (values shortened for display by the view).
    pub vars: Vec<(String, String)>,
    /// 1-based line of the case in the tests file.
    pub line: usize,
}

/// Where a template problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Which buffer the line is in.
    pub buffer: Buffer,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenInfo {
    pub count: usize,
    /// Counted by a rough characters-per-token rule rather than the model's tokenizer.
    pub approximate: bool,
    pub context: Option<usize>,
}

/// A self-consistency prompt's vote: how many samples, and how each answer is extracted.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteSpec {
    pub samples: u32,
    pub extract: crate::prompt::technique::Extractor,
}

/// What the preview worker answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreviewResult {
    /// (role, content) of each message.
    pub messages: Vec<(String, String)>,
    pub problem: Option<Problem>,
    pub warnings: Vec<String>,
    /// The cases of the tests buffer, when it parsed.
    pub cases: Vec<CaseInfo>,
    pub tokens: Option<TokenInfo>,
    /// The backend the prompt runs on by default.
    pub backend: String,
    /// Declared input names, for new cases.
    pub inputs: Vec<String>,
    /// Set for self-consistency prompts: the outputs pane shows the vote.
    pub votes: Option<VoteSpec>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreviewState {
    pub seq: u64,
    pub result: PreviewResult,
    /// The shown result is older than the buffer.
    pub pending: bool,
    pub scroll: usize,
    /// The case the latest render request was for.
    pub case: Option<usize>,
}

/// One assertion outcome as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct AssertionLine {
    pub pass: bool,
    pub assertion: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CellStatus {
    Waiting,
    Streaming,
    Done,
    Failed(String),
    Cancelled,
}

/// What a finished cell reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CellDone {
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: Option<f64>,
    pub assertions: Vec<AssertionLine>,
    /// Case verdict; `None` when some assertion needs `promptdeck test`.
    pub verdict: Option<bool>,
    /// Assertions left to `promptdeck test` (judges, votes).
    pub deferred: usize,
    pub cached: bool,
}

/// One output: a (case, backend, sample) of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// 1-based case index; `None` runs the prompt's sample variables.
    pub case: Option<usize>,
    pub backend: String,
    pub sample: u32,
    pub text: String,
    pub status: CellStatus,
    pub done: Option<CellDone>,
}

impl Cell {
    pub fn title(&self, samples: u32) -> String {
        if samples > 1 {
            format!("{} #{}", self.backend, self.sample + 1)
        } else {
            self.backend.clone()
        }
    }
}

/// What a run worker is asked to do for one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellSpec {
    pub case: Option<usize>,
    pub backend: String,
    pub sample: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub id: u64,
    pub cells: Vec<Cell>,
    pub samples: u32,
    pub finished: bool,
    /// Short id of the version the run stored, once known.
    pub version: Option<String>,
    pub scroll: usize,
}

impl RunState {
    pub fn done_count(&self) -> usize {
        self.cells
            .iter()
            .filter(|c| !matches!(c.status, CellStatus::Waiting | CellStatus::Streaming))
            .count()
    }
}

/// One row of the compare view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareRow {
    File(String),
    Line(SideBySideRow),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareState {
    pub left_title: String,
    pub right_title: String,
    pub rows: Vec<CompareRow>,
    pub changes: Vec<usize>,
    pub inline: bool,
    pub scroll: usize,
}

impl CompareState {
    /// Two texts (two outputs), diffed by words within lines.
    pub fn of_texts(left_title: &str, left: &str, right_title: &str, right: &str) -> Self {
        let file = diff::diff_texts(left, right, usize::MAX / 4);
        Self::of_files(left_title, right_title, &[file], false)
    }

    /// Sets of files (two versions).
    pub fn of_files(
        left_title: &str,
        right_title: &str,
        files: &[diff::FileDiff],
        headers: bool,
    ) -> Self {
        let mut rows = Vec::new();
        for file in files {
            if headers {
                rows.push(CompareRow::File(format!(
                    "{} ({:?}, +{} -{})",
                    file.new_path, file.status, file.inserted, file.deleted
                )));
            }
            rows.extend(diff::side_by_side(file).into_iter().map(CompareRow::Line));
        }
        let changes = rows
            .iter()
            .enumerate()
            .filter(|(i, row)| {
                let is_change = |r: &CompareRow| matches!(r, CompareRow::Line(l) if l.is_change());
                is_change(row) && (*i == 0 || !is_change(&rows[i - 1]))
            })
            .map(|(i, _)| i)
            .collect();
        CompareState {
            left_title: left_title.to_owned(),
            right_title: right_title.to_owned(),
            rows,
            changes,
            inline: false,
            scroll: 0,
        }
    }
}

/// A version in the history view.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub id: String,
    pub short: String,
    pub date: String,
    pub message: String,
    pub author: String,
    pub labels: Vec<String>,
    pub pass_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryState {
    pub prompt: String,
    pub rows: Vec<HistoryRow>,
    pub selected: usize,
    pub marked: Option<usize>,
    pub loading: bool,
}

/// What the Models view compares on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelsScope {
    /// The open prompt.
    #[default]
    Prompt,
    /// Every prompt with cases.
    Library,
}

/// Which histogram the Models view draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Histogram {
    #[default]
    Latency,
    Cost,
}

/// What the worker found in the store for a model comparison (`compare --reuse`'s rules).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelsData {
    pub charts: crate::compare::TuiCharts,
    /// Results counted, and the stored runs they came from.
    pub samples: usize,
    pub run_ids: Vec<String>,
    /// (prompt, backend) pairs without a stored run of the prompt's current version.
    pub missing: Vec<(String, String)>,
    /// Prompts left out, with why.
    pub skipped: Vec<(String, String)>,
}

/// The Models view.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelsState {
    pub scope: ModelsScope,
    /// The prompt compared (scope `Prompt`), by name.
    pub prompt: String,
    /// The columns: backends chosen with ^B, else every configured backend.
    pub backends: Vec<String>,
    /// Samples per case a stored run must hold.
    pub samples: u32,
    /// Sequence number of the latest request; older answers are dropped.
    pub seq: u64,
    pub loading: bool,
    pub data: Option<ModelsData>,
    /// First row of the pass-rate chart shown.
    pub scroll: usize,
    pub histogram: Histogram,
    /// The run started from the view (its missing backends), while it runs.
    pub run: Option<u64>,
}

impl ModelsState {
    /// Backends without a stored run of `prompt`'s current version.
    pub fn missing_for(&self, prompt: &str) -> Vec<String> {
        self.data
            .iter()
            .flat_map(|d| d.missing.iter())
            .filter(|(p, _)| p == prompt)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// Which side of a version comparison the working files are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRef {
    Working,
    Stored { id: String, short: String },
}

/// Input the loop turns into messages, and results of effects.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyChord),
    Paste(String),
    Mouse(Mouse),
    Resize(u16, u16),
    PromptsListed(Vec<String>),
    PassCounts(Vec<(String, (u32, u32))>),
    DocumentLoaded {
        file_name: String,
        prompt: String,
        tests: Option<String>,
    },
    /// The debounce timer of a preview request fired.
    PreviewDue(u64),
    PreviewReady {
        seq: u64,
        result: PreviewResult,
    },
    RunStarted {
        run: u64,
        version: String,
    },
    RunChunk {
        run: u64,
        cell: usize,
        text: String,
    },
    CellFinished {
        run: u64,
        cell: usize,
        outcome: Result<CellDone, String>,
    },
    RunFinished {
        run: u64,
    },
    Saved {
        file_name: String,
        prompt: String,
        tests: Option<String>,
        version: String,
        created: bool,
    },
    HistoryLoaded {
        prompt: String,
        rows: Vec<HistoryRow>,
    },
    VersionsLoaded {
        left: (String, BTreeMap<String, String>),
        right: (String, BTreeMap<String, String>),
    },
    VersionForRestore {
        short: String,
        files: BTreeMap<String, String>,
    },
    LabelSet {
        label: String,
        short: String,
    },
    ExternalEditDone {
        file_name: String,
        prompt: String,
        tests: Option<String>,
    },
    ModelsLoaded {
        seq: u64,
        result: Result<ModelsData, String>,
    },
    ThemeApplied(String),
    /// A worker failed; shown in the status line.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseKind {
    Down,
    ScrollUp,
    ScrollDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mouse {
    pub kind: MouseKind,
    pub col: u16,
    pub row: u16,
}

/// Work for the loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    LoadPassCounts,
    LoadDocument(String),
    /// Send `Msg::PreviewDue(seq)` after `delay_ms`.
    SchedulePreview {
        seq: u64,
        delay_ms: u64,
    },
    RenderPreview {
        seq: u64,
        file_name: String,
        prompt: String,
        tests: Option<String>,
        case: Option<usize>,
        backend: Option<String>,
    },
    StartRun {
        run: u64,
        file_name: String,
        prompt: String,
        tests: Option<String>,
        cells: Vec<CellSpec>,
    },
    CancelRun(u64),
    Save {
        file_name: String,
        prompt: String,
        tests: Option<String>,
    },
    LoadHistory(String),
    LoadVersions {
        prompt: String,
        left: VersionRef,
        right: VersionRef,
        /// The working files, for `VersionRef::Working`.
        working: BTreeMap<String, String>,
    },
    LoadVersionForRestore {
        id: String,
        short: String,
    },
    SetLabel {
        prompt: String,
        label: String,
        version: String,
    },
    ExternalEditor {
        file_name: String,
        buffer: Buffer,
    },
    /// Answer with `Msg::ModelsLoaded`: the stored runs of the current versions of `prompts`
    /// (library file names; empty: every prompt) on `backends`.
    LoadModels {
        seq: u64,
        prompts: Vec<String>,
        backends: Vec<String>,
        samples: u32,
    },
    SetTheme(String),
    Quit,
}

/// Everything the workbench shows.
#[derive(Debug, Clone)]
pub struct App {
    pub keymap: Keymap,
    pub project_name: String,
    pub backends: Vec<String>,
    pub default_backend: String,
    pub themes: Vec<String>,
    pub theme: String,
    pub no_color: bool,
    pub width: u16,
    pub height: u16,
    pub view: View,
    pub focus: Pane,
    pub overlay: Option<Overlay>,
    pub prompts: Vec<PromptEntry>,
    pub filter: String,
    /// Index into the filtered list.
    pub tree_selected: usize,
    pub doc: Option<Document>,
    /// A prompt the user asked to open while the document has unsaved changes.
    pub pending_open: Option<String>,
    pub preview: PreviewState,
    pub cases: Vec<CaseInfo>,
    /// Index into `cases`; `None` selects the prompt's sample variables.
    pub case_selected: Option<usize>,
    pub chosen_backends: Vec<String>,
    pub samples: u32,
    pub run: Option<RunState>,
    /// The run before the current one, so an output can be compared with its previous answer.
    pub previous_run: Option<RunState>,
    next_run: u64,
    pub compare: Option<CompareState>,
    pub history: HistoryState,
    pub models: ModelsState,
    pub status: Option<(Level, String)>,
    pub search: String,
    pub wrap: bool,
    pub quit: bool,
    /// The last prompt clicked, for open-on-click.
    last_click: Option<(u16, u16)>,
    /// The user chose the sample row, so a new case list does not move the selection.
    case_chosen_sample: bool,
}

/// Where the app starts.
#[derive(Debug, Clone)]
pub struct Setup {
    pub keymap: Keymap,
    pub project_name: String,
    pub backends: Vec<String>,
    pub default_backend: String,
    pub themes: Vec<String>,
    pub theme: String,
    pub no_color: bool,
    pub prompts: Vec<String>,
    pub width: u16,
    pub height: u16,
}

impl App {
    /// The app, and the effects that load the first prompt and the pass counts.
    pub fn new(setup: Setup) -> (App, Vec<Effect>) {
        let mut app = App {
            keymap: setup.keymap,
            project_name: setup.project_name,
            backends: setup.backends,
            default_backend: setup.default_backend,
            themes: setup.themes,
            theme: setup.theme,
            no_color: setup.no_color,
            width: setup.width,
            height: setup.height,
            view: View::Main,
            focus: Pane::Tree,
            overlay: None,
            prompts: Vec::new(),
            filter: String::new(),
            tree_selected: 0,
            doc: None,
            pending_open: None,
            preview: PreviewState::default(),
            cases: Vec::new(),
            case_selected: None,
            chosen_backends: Vec::new(),
            samples: 1,
            run: None,
            previous_run: None,
            next_run: 0,
            compare: None,
            history: HistoryState::default(),
            models: ModelsState::default(),
            status: None,
            search: String::new(),
            wrap: true,
            quit: false,
            last_click: None,
            case_chosen_sample: false,
        };
        let mut effects = app.handle(Msg::PromptsListed(setup.prompts));
        effects.push(Effect::LoadPassCounts);
        (app, effects)
    }

    // -----------------------------------------------------------------------------------------
    // Queries the view uses.

    /// Prompts matching the filter (a case-insensitive subsequence of the name).
    pub fn visible_prompts(&self) -> Vec<&PromptEntry> {
        let filter = self.filter.to_lowercase();
        self.prompts
            .iter()
            .filter(|p| subsequence(&filter, &p.name().to_lowercase()))
            .collect()
    }

    pub fn panes(&self) -> layout::Panes {
        layout::panes(self.width, self.height)
    }

    /// The keymap context of what has focus.
    pub fn context(&self) -> Context {
        match self.view {
            View::Compare => Context::Compare,
            View::History => Context::History,
            View::Models => Context::Models,
            View::Main => match self.focus {
                Pane::Tree => Context::Tree,
                Pane::Editor => Context::Editor,
                Pane::Preview => Context::Preview,
                Pane::Cases => Context::Cases,
                Pane::Outputs => Context::Outputs,
            },
        }
    }

    /// The case key of the selection: its 1-based index, or `None` for the sample.
    pub fn selected_case_key(&self) -> Option<usize> {
        self.case_selected
            .and_then(|i| self.cases.get(i))
            .map(|c| c.index)
    }

    /// Output cells of the selected case.
    pub fn visible_cells(&self) -> Vec<&Cell> {
        let key = self.selected_case_key();
        self.run
            .as_ref()
            .map(|r| r.cells.iter().filter(|c| c.case == key).collect())
            .unwrap_or_default()
    }

    /// The backends a run uses: those chosen, else the prompt's.
    pub fn run_backends(&self) -> Vec<String> {
        if !self.chosen_backends.is_empty() {
            return self.chosen_backends.clone();
        }
        let backend = if self.preview.result.backend.is_empty() {
            self.default_backend.clone()
        } else {
            self.preview.result.backend.clone()
        };
        vec![backend]
    }

    /// Palette entries matching the query.
    pub fn palette_matches(&self, query: &str) -> Vec<Action> {
        let query = query.to_lowercase();
        // Names containing the query first, then loose (subsequence) name matches, then help.
        let rank = |a: &Action| {
            if a.name().contains(&query) {
                Some(0)
            } else if subsequence(&query, a.name()) {
                Some(1)
            } else if a.help().to_lowercase().contains(&query) {
                Some(2)
            } else {
                None
            }
        };
        let mut ranked: Vec<(u8, Action)> = Action::ALL
            .iter()
            .filter_map(|a| rank(a).map(|r| (r, *a)))
            .collect();
        ranked.sort_by_key(|(r, _)| *r);
        ranked.into_iter().map(|(_, a)| a).collect()
    }

    /// The vote over the selected case's finished outputs, for self-consistency prompts.
    pub fn votes(&self) -> Option<crate::suite::evaluate::Vote> {
        let spec = self.preview.result.votes.as_ref()?;
        let answers: Vec<Option<String>> = self
            .visible_cells()
            .iter()
            .filter(|c| c.status == CellStatus::Done)
            .map(|c| crate::suite::evaluate::extract_answer(&spec.extract, &c.text))
            .collect();
        (!answers.is_empty()).then(|| crate::suite::evaluate::majority_vote(&answers))
    }

    pub fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.finished)
    }

    // -----------------------------------------------------------------------------------------
    // The transition function.

    pub fn handle(&mut self, msg: Msg) -> Vec<Effect> {
        let mut fx = Vec::new();
        match msg {
            Msg::Key(chord) => self.on_key(chord, &mut fx),
            Msg::Paste(text) => {
                if let Some(Overlay::Input { text: input, .. }) = &mut self.overlay {
                    input.push_str(text.lines().next().unwrap_or_default());
                } else if self.view == View::Main && self.focus == Pane::Editor {
                    if let Some(doc) = &mut self.doc {
                        doc.editor_mut().insert_text(&text);
                        self.edited(&mut fx);
                    }
                } else if self.view == View::Main && self.focus == Pane::Tree {
                    self.filter
                        .push_str(text.lines().next().unwrap_or_default());
                    self.tree_selected = 0;
                }
            }
            Msg::Mouse(mouse) => self.on_mouse(mouse, &mut fx),
            Msg::Resize(w, h) => {
                self.width = w;
                self.height = h;
                self.scroll_editor();
            }
            Msg::PromptsListed(files) => {
                let old: BTreeMap<String, Option<(u32, u32)>> = self
                    .prompts
                    .iter()
                    .map(|p| (p.file_name.clone(), p.counts))
                    .collect();
                self.prompts = files
                    .into_iter()
                    .map(|f| PromptEntry {
                        counts: old.get(&f).copied().flatten(),
                        file_name: f,
                    })
                    .collect();
                if self.doc.is_none() {
                    if let Some(first) = self.prompts.first() {
                        fx.push(Effect::LoadDocument(first.file_name.clone()));
                    }
                }
            }
            Msg::PassCounts(counts) => {
                for (name, c) in counts {
                    if let Some(p) = self.prompts.iter_mut().find(|p| p.name() == name) {
                        p.counts = Some(c);
                    }
                }
            }
            Msg::DocumentLoaded {
                file_name,
                prompt,
                tests,
            } => {
                self.doc = Some(Document {
                    file_name: file_name.clone(),
                    prompt: Editor::new(&prompt),
                    tests: Editor::new(tests.as_deref().unwrap_or_default()),
                    saved_prompt: prompt,
                    saved_tests: tests.clone().unwrap_or_default(),
                    tests_exists: tests.is_some(),
                    active: Buffer::Prompt,
                });
                if let Some(i) = self
                    .visible_prompts()
                    .iter()
                    .position(|p| p.file_name == file_name)
                {
                    self.tree_selected = i;
                }
                self.cases.clear();
                self.case_selected = None;
                self.case_chosen_sample = false;
                self.run = None;
                self.previous_run = None;
                self.compare = None;
                self.preview = PreviewState {
                    seq: self.preview.seq,
                    ..PreviewState::default()
                };
                self.request_preview(&mut fx, true);
            }
            Msg::PreviewDue(seq) => {
                if seq == self.preview.seq {
                    self.request_preview(&mut fx, true);
                }
            }
            Msg::PreviewReady { seq, result } => {
                if seq == self.preview.seq {
                    self.preview.pending = false;
                    if !result.cases.is_empty()
                        || result
                            .problem
                            .as_ref()
                            .is_none_or(|p| p.buffer != Buffer::Tests)
                    {
                        self.cases = result.cases.clone();
                    }
                    if let Some(i) = self.case_selected {
                        if i >= self.cases.len() {
                            self.case_selected = self.cases.len().checked_sub(1);
                        }
                    }
                    let rendered_case = self.preview.case;
                    // A self-consistency prompt samples as many times as its technique says.
                    if let Some(spec) = result
                        .votes
                        .as_ref()
                        .filter(|_| self.preview.result.votes.is_none())
                    {
                        if self.samples == 1 {
                            self.samples = spec.samples.clamp(1, MAX_SAMPLES);
                        }
                    }
                    if self.case_selected.is_none()
                        && !self.cases.is_empty()
                        && !self.case_chosen_sample
                    {
                        self.case_selected = Some(0);
                    }
                    self.preview.result = result;
                    // The first case was selected just now: render it rather than the sample.
                    if self.selected_case_key() != rendered_case {
                        self.request_preview(&mut fx, true);
                    }
                }
            }
            Msg::RunStarted { run, version } => {
                if let Some(r) = self.run.as_mut().filter(|r| r.id == run) {
                    r.version = Some(version);
                }
            }
            Msg::RunChunk { run, cell, text } => {
                if let Some(c) = self.current_cell(run, cell) {
                    c.status = CellStatus::Streaming;
                    c.text.push_str(&text);
                }
            }
            Msg::CellFinished { run, cell, outcome } => {
                if let Some(c) = self.current_cell(run, cell) {
                    match outcome {
                        Ok(done) => {
                            c.status = CellStatus::Done;
                            c.done = Some(done);
                        }
                        Err(e) => c.status = CellStatus::Failed(e),
                    }
                }
            }
            Msg::RunFinished { run } => {
                let Some(r) = self.run.as_mut().filter(|r| r.id == run) else {
                    return fx;
                };
                r.finished = true;
                let judged: Vec<bool> = r
                    .cells
                    .iter()
                    .filter_map(|c| c.done.as_ref().and_then(|d| d.verdict))
                    .collect();
                let failed = r
                    .cells
                    .iter()
                    .filter(|c| matches!(c.status, CellStatus::Failed(_)))
                    .count();
                let passed = judged.iter().filter(|p| **p).count();
                let version = r
                    .version
                    .as_ref()
                    .map(|v| format!(" · version {v}"))
                    .unwrap_or_default();
                if let Some(doc) = &self.doc {
                    let name = doc.name().to_owned();
                    if !judged.is_empty() {
                        if let Some(p) = self.prompts.iter_mut().find(|p| p.name() == name) {
                            p.counts = Some((passed as u32, judged.len() as u32));
                        }
                    }
                }
                let mut text = if judged.is_empty() {
                    format!("run done: no verdicts{version}")
                } else {
                    format!("run done: {passed}/{} passed{version}", judged.len())
                };
                if failed > 0 {
                    text.push_str(&format!(" · {failed} failed"));
                }
                self.info(text);
                // The view's charts include what just ran, when it was stored.
                if self.models.run.take() == Some(run) || self.view == View::Models {
                    self.load_models(&mut fx);
                }
            }
            Msg::Saved {
                file_name,
                prompt,
                tests,
                version,
                created,
            } => {
                if let Some(doc) = self.doc.as_mut().filter(|d| d.file_name == file_name) {
                    doc.saved_prompt = prompt;
                    if let Some(t) = tests {
                        doc.saved_tests = t;
                        doc.tests_exists = true;
                    }
                }
                self.info(if created {
                    format!("saved; committed version {version}")
                } else {
                    format!("saved; content is version {version} already")
                });
                fx.push(Effect::LoadPassCounts);
            }
            Msg::HistoryLoaded { prompt, rows } => {
                if prompt == self.history.prompt {
                    self.history.rows = rows;
                    self.history.loading = false;
                    self.history.selected = self
                        .history
                        .selected
                        .min(self.history.rows.len().saturating_sub(1));
                    if self.history.rows.is_empty() {
                        self.info(format!(
                            "{prompt} has no versions yet: ^S saves and commits one"
                        ));
                    }
                }
            }
            Msg::VersionsLoaded { left, right } => {
                let files = diff::diff_all_file_sets(&left.1, &right.1, 3)
                    .into_iter()
                    .filter(|f| f.status != diff::FileStatus::Unchanged)
                    .collect::<Vec<_>>();
                let mut state = CompareState::of_files(&left.0, &right.0, &files, true);
                if files.is_empty() {
                    state
                        .rows
                        .push(CompareRow::File("no differences".to_owned()));
                }
                self.compare = Some(state);
                self.view = View::Compare;
            }
            Msg::VersionForRestore { short, files } => {
                let Some(doc) = &mut self.doc else {
                    return fx;
                };
                let prompt_path = format!("prompts/{}", doc.file_name);
                let tests_path = format!("prompts/{}", doc.tests_file_name());
                if let Some(text) = files.get(&prompt_path) {
                    doc.prompt.replace_all(text);
                }
                if let Some(text) = files.get(&tests_path) {
                    doc.tests.replace_all(text);
                }
                self.view = View::Main;
                self.focus = Pane::Editor;
                self.info(format!(
                    "restored version {short} into the editor; ^S saves it, ^Z undoes"
                ));
                self.edited(&mut fx);
            }
            Msg::LabelSet { label, short } => {
                self.info(format!("label {label} now points at {short}"));
                if !self.history.prompt.is_empty() {
                    fx.push(Effect::LoadHistory(self.history.prompt.clone()));
                }
            }
            Msg::ExternalEditDone {
                file_name,
                prompt,
                tests,
            } => {
                if let Some(doc) = self.doc.as_mut().filter(|d| d.file_name == file_name) {
                    doc.prompt.replace_all(&prompt);
                    doc.saved_prompt = prompt;
                    doc.tests.replace_all(tests.as_deref().unwrap_or_default());
                    doc.tests_exists = tests.is_some();
                    doc.saved_tests = tests.unwrap_or_default();
                    self.info("reloaded the file after $EDITOR".to_owned());
                    self.request_preview(&mut fx, true);
                }
            }
            Msg::ModelsLoaded { seq, result } => {
                if seq == self.models.seq {
                    self.models.loading = false;
                    match result {
                        Ok(data) => {
                            let rows = data.charts.pass_rate.groups.len();
                            self.models.scroll = self.models.scroll.min(rows.saturating_sub(1));
                            self.models.data = Some(data);
                        }
                        Err(e) => {
                            self.models.data = None;
                            self.status = Some((Level::Error, format!("models: {e}")));
                        }
                    }
                }
            }
            Msg::ThemeApplied(name) => {
                self.theme = name.clone();
                self.info(format!("theme: {name}"));
            }
            Msg::Failed(message) => {
                self.history.loading = false;
                self.status = Some((Level::Error, message));
            }
        }
        fx
    }

    fn info(&mut self, text: String) {
        self.status = Some((Level::Info, text));
    }

    fn current_cell(&mut self, run: u64, cell: usize) -> Option<&mut Cell> {
        self.run
            .as_mut()
            .filter(|r| r.id == run)
            .and_then(|r| r.cells.get_mut(cell))
    }

    /// After any edit: keep the cursor visible and debounce a preview.
    fn edited(&mut self, fx: &mut Vec<Effect>) {
        self.scroll_editor();
        self.request_preview(fx, false);
    }

    fn scroll_editor(&mut self) {
        let area = self.panes().editor.inner();
        let wrap = self.wrap;
        if let Some(doc) = &mut self.doc {
            let gutter = gutter_width(doc.editor().line_count());
            doc.editor_mut().scroll_to_cursor(
                usize::from(area.h),
                usize::from(area.w).saturating_sub(gutter),
                wrap,
            );
        }
    }

    /// `now`: render at once; otherwise after the debounce delay.
    fn request_preview(&mut self, fx: &mut Vec<Effect>, now: bool) {
        let Some(doc) = &self.doc else {
            return;
        };
        self.preview.seq += 1;
        self.preview.pending = true;
        let seq = self.preview.seq;
        if now {
            self.preview.case = self.selected_case_key();
            fx.push(Effect::RenderPreview {
                seq,
                file_name: doc.file_name.clone(),
                prompt: doc.prompt.text(),
                tests: doc.tests_text(),
                case: self.selected_case_key(),
                backend: self.chosen_backends.first().cloned(),
            });
        } else {
            fx.push(Effect::SchedulePreview {
                seq,
                delay_ms: PREVIEW_DEBOUNCE_MS,
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Keys.

    fn on_key(&mut self, chord: KeyChord, fx: &mut Vec<Effect>) {
        if self.overlay.is_some() {
            self.on_overlay_key(chord, fx);
            return;
        }
        let context = self.context();
        if let Some(action) = self.keymap.lookup(context, &chord) {
            // Keys an editor or a filter needs as text win over global single-character bindings.
            let typing = chord.typed_char().is_some()
                && (context == Context::Editor || context == Context::Tree)
                && self.keymap.lookup_local(context, &chord).is_none();
            if !typing {
                self.perform(action, fx);
                return;
            }
        }
        match context {
            Context::Editor => self.on_editor_key(chord, fx),
            Context::Tree => match chord.key {
                Key::Char(c) if chord.typed_char().is_some() => {
                    self.filter.push(c);
                    self.tree_selected = 0;
                }
                Key::Backspace => {
                    self.filter.pop();
                    self.tree_selected = 0;
                }
                Key::Char('k') | Key::Home => self.tree_selected = 0,
                _ => {}
            },
            _ => {}
        }
    }

    fn on_editor_key(&mut self, chord: KeyChord, fx: &mut Vec<Effect>) {
        let page = usize::from(self.panes().editor.inner().h.max(1));
        let Some(doc) = &mut self.doc else {
            return;
        };
        let editor = doc.editor_mut();
        let mut changed = true;
        match chord.key {
            Key::Char(c) if chord.typed_char().is_some() => editor.insert_char(c),
            Key::Enter => editor.insert_newline(),
            Key::Backspace => editor.backspace(),
            Key::Delete => editor.delete(),
            Key::Left => {
                editor.left();
                changed = false;
            }
            Key::Right => {
                editor.right();
                changed = false;
            }
            Key::Up => {
                editor.up(1);
                changed = false;
            }
            Key::Down => {
                editor.down(1);
                changed = false;
            }
            Key::Home => {
                editor.home();
                changed = false;
            }
            Key::End => {
                editor.end();
                changed = false;
            }
            Key::PageUp => {
                editor.up(page);
                changed = false;
            }
            Key::PageDown => {
                editor.down(page);
                changed = false;
            }
            _ => changed = false,
        }
        if changed {
            self.edited(fx);
        } else {
            self.scroll_editor();
        }
    }

    fn on_overlay_key(&mut self, chord: KeyChord, fx: &mut Vec<Effect>) {
        let Some(overlay) = self.overlay.clone() else {
            return;
        };
        let action = self.keymap.lookup(Context::Global, &chord);
        match overlay {
            Overlay::Help { scroll } => match chord.key {
                Key::Up | Key::Char('k') => {
                    self.overlay = Some(Overlay::Help {
                        scroll: scroll.saturating_sub(1),
                    })
                }
                Key::Down | Key::Char('j') => {
                    self.overlay = Some(Overlay::Help { scroll: scroll + 1 })
                }
                Key::PageDown => {
                    self.overlay = Some(Overlay::Help {
                        scroll: scroll + 10,
                    })
                }
                Key::PageUp => {
                    self.overlay = Some(Overlay::Help {
                        scroll: scroll.saturating_sub(10),
                    })
                }
                _ if action == Some(Action::Quit) => self.perform(Action::Quit, fx),
                _ => self.overlay = None,
            },
            Overlay::Palette { query, selected } => {
                let matches = self.palette_matches(&query);
                match chord.key {
                    Key::Esc => self.overlay = None,
                    Key::Enter => {
                        self.overlay = None;
                        if let Some(a) = matches.get(selected) {
                            self.perform(*a, fx);
                        }
                    }
                    Key::Up => {
                        self.overlay = Some(Overlay::Palette {
                            query,
                            selected: selected.saturating_sub(1),
                        })
                    }
                    Key::Down => {
                        let selected = (selected + 1).min(matches.len().saturating_sub(1));
                        self.overlay = Some(Overlay::Palette { query, selected })
                    }
                    Key::Backspace => {
                        let mut query = query;
                        query.pop();
                        self.overlay = Some(Overlay::Palette { query, selected: 0 })
                    }
                    Key::Char(c) if chord.typed_char().is_some() => {
                        let mut query = query;
                        query.push(c);
                        self.overlay = Some(Overlay::Palette { query, selected: 0 })
                    }
                    _ if action == Some(Action::CommandPalette) => self.overlay = None,
                    _ => {}
                }
            }
            Overlay::ConfirmQuit => match chord.key {
                Key::Char('y') | Key::Char('d') => {
                    self.overlay = None;
                    self.quit = true;
                    fx.push(Effect::Quit);
                }
                Key::Char('s') => {
                    self.overlay = None;
                    self.perform(Action::Save, fx);
                    self.info("saved; press ^Q again to quit".to_owned());
                }
                _ => self.overlay = None,
            },
            Overlay::Backends { selected } => match chord.key {
                Key::Up | Key::Char('k') => {
                    self.overlay = Some(Overlay::Backends {
                        selected: selected.saturating_sub(1),
                    })
                }
                Key::Down | Key::Char('j') => {
                    self.overlay = Some(Overlay::Backends {
                        selected: (selected + 1).min(self.backends.len().saturating_sub(1)),
                    })
                }
                Key::Char(' ') => {
                    if let Some(name) = self.backends.get(selected).cloned() {
                        if let Some(i) = self.chosen_backends.iter().position(|b| *b == name) {
                            self.chosen_backends.remove(i);
                        } else {
                            self.chosen_backends.push(name);
                        }
                    }
                }
                Key::Enter | Key::Esc => {
                    self.overlay = None;
                    let names = self.run_backends().join(", ");
                    self.info(format!(
                        "runs use: {names} · {} sample(s) each",
                        self.samples
                    ));
                    self.request_preview(fx, true);
                }
                _ => {}
            },
            Overlay::Input { purpose, text } => match chord.key {
                Key::Esc => self.overlay = None,
                Key::Enter => {
                    self.overlay = None;
                    match purpose {
                        InputPurpose::Search => {
                            self.search = text;
                            self.find(false);
                        }
                        InputPurpose::Label { version } => {
                            let label = text.trim().to_owned();
                            if !label.is_empty() {
                                fx.push(Effect::SetLabel {
                                    prompt: self.history.prompt.clone(),
                                    label,
                                    version,
                                });
                            }
                        }
                    }
                }
                Key::Backspace => {
                    let mut text = text;
                    text.pop();
                    self.overlay = Some(Overlay::Input { purpose, text });
                }
                Key::Char(c) if chord.typed_char().is_some() => {
                    let mut text = text;
                    text.push(c);
                    if purpose == InputPurpose::Search {
                        // Incremental: jump to the first match as the query grows.
                        self.search = text.clone();
                        self.find(true);
                    }
                    self.overlay = Some(Overlay::Input { purpose, text });
                }
                _ => {}
            },
        }
    }

    fn find(&mut self, include_cursor: bool) {
        let query = self.search.clone();
        let found = self
            .doc
            .as_mut()
            .is_some_and(|d| d.editor_mut().find_next(&query, include_cursor));
        if !found && !query.is_empty() {
            self.status = Some((Level::Error, format!("not found: {query}")));
        }
        self.scroll_editor();
    }

    /// Performs an action: from a key, the palette or a click.
    pub fn perform(&mut self, action: Action, fx: &mut Vec<Effect>) {
        match action {
            Action::Quit => {
                if self.doc.as_ref().is_some_and(Document::dirty) {
                    self.overlay = Some(Overlay::ConfirmQuit);
                } else {
                    self.quit = true;
                    if let Some(r) = self.run.as_ref().filter(|r| !r.finished) {
                        fx.push(Effect::CancelRun(r.id));
                    }
                    fx.push(Effect::Quit);
                }
            }
            Action::Help => {
                self.overlay = match self.overlay {
                    Some(Overlay::Help { .. }) => None,
                    _ => Some(Overlay::Help { scroll: 0 }),
                }
            }
            Action::CommandPalette => {
                self.overlay = Some(Overlay::Palette {
                    query: String::new(),
                    selected: 0,
                })
            }
            Action::Save => match &self.doc {
                Some(doc) => {
                    fx.push(Effect::Save {
                        file_name: doc.file_name.clone(),
                        prompt: doc.prompt.text(),
                        tests: doc.tests_text(),
                    });
                    self.info(format!("saving {}…", doc.file_name));
                }
                None => self.info("no prompt open".to_owned()),
            },
            Action::Run | Action::RunAll => self.start_run(action == Action::RunAll, fx),
            Action::Cancel => {
                if let Some(r) = self.run.as_mut().filter(|r| !r.finished) {
                    r.finished = true;
                    for c in &mut r.cells {
                        if matches!(c.status, CellStatus::Waiting | CellStatus::Streaming) {
                            c.status = CellStatus::Cancelled;
                        }
                    }
                    fx.push(Effect::CancelRun(r.id));
                    self.info("run cancelled".to_owned());
                } else if self.view != View::Main {
                    self.view = View::Main;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                    self.tree_selected = 0;
                } else {
                    self.pending_open = None;
                    self.status = None;
                }
            }
            Action::FocusNext | Action::FocusPrev => {
                self.view = View::Main;
                let i = PANES.iter().position(|p| *p == self.focus).unwrap_or(0);
                let n = PANES.len();
                let next = if action == Action::FocusNext {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.focus = PANES[next];
            }
            Action::FocusTree => self.focus_pane(Pane::Tree),
            Action::FocusEditor => self.focus_pane(Pane::Editor),
            Action::FocusPreview => self.focus_pane(Pane::Preview),
            Action::FocusCases => self.focus_pane(Pane::Cases),
            Action::FocusOutputs => self.focus_pane(Pane::Outputs),
            Action::ViewMain => self.view = View::Main,
            Action::ViewCompare => {
                if self.compare.is_some() || self.compare_outputs() {
                    self.view = View::Compare;
                } else if self.doc.is_some() {
                    // Nothing run yet: compare the working files with the latest version.
                    self.compare_working_with_latest(fx);
                } else {
                    self.info("nothing to compare yet".to_owned());
                }
            }
            Action::ViewHistory => {
                if let Some(doc) = &self.doc {
                    let prompt = doc.name().to_owned();
                    if self.history.prompt != prompt {
                        self.history = HistoryState {
                            prompt: prompt.clone(),
                            ..HistoryState::default()
                        };
                    }
                    self.history.loading = true;
                    self.view = View::History;
                    fx.push(Effect::LoadHistory(prompt));
                } else {
                    self.info("open a prompt first".to_owned());
                }
            }
            Action::ViewModels => {
                self.view = View::Models;
                self.load_models(fx);
            }
            Action::ToggleScope => {
                self.models.scope = match self.models.scope {
                    ModelsScope::Prompt => ModelsScope::Library,
                    ModelsScope::Library => ModelsScope::Prompt,
                };
                self.models.scroll = 0;
                self.view = View::Models;
                self.load_models(fx);
            }
            Action::RunMissing => self.run_missing(fx),
            Action::ToggleHistogram => {
                self.models.histogram = match self.models.histogram {
                    Histogram::Latency => Histogram::Cost,
                    Histogram::Cost => Histogram::Latency,
                };
            }
            Action::ExternalEditor => match &self.doc {
                Some(doc) if doc.dirty() => {
                    self.status = Some((
                        Level::Error,
                        "unsaved changes: save (^S) before opening $EDITOR".to_owned(),
                    ))
                }
                Some(doc) => fx.push(Effect::ExternalEditor {
                    file_name: doc.file_name.clone(),
                    buffer: doc.active,
                }),
                None => {}
            },
            Action::ToggleTestsFile => {
                if let Some(doc) = &mut self.doc {
                    doc.active = match doc.active {
                        Buffer::Prompt => Buffer::Tests,
                        Buffer::Tests => Buffer::Prompt,
                    };
                    let missing = (doc.active == Buffer::Tests
                        && !doc.tests_exists
                        && doc.tests.text().is_empty())
                    .then(|| {
                        format!(
                            "{} does not exist yet; ^S creates it",
                            doc.tests_file_name()
                        )
                    });
                    if let Some(message) = missing {
                        self.info(message);
                    }
                    self.view = View::Main;
                    self.focus = Pane::Editor;
                    self.scroll_editor();
                }
            }
            Action::ChooseBackends => {
                self.overlay = Some(Overlay::Backends { selected: 0 });
            }
            Action::NextTheme => {
                if !self.themes.is_empty() {
                    let i = self
                        .themes
                        .iter()
                        .position(|t| *t == self.theme)
                        .map_or(0, |i| i + 1);
                    let name = self.themes[i % self.themes.len()].clone();
                    fx.push(Effect::SetTheme(name));
                }
            }
            Action::Undo | Action::Redo => {
                if let Some(doc) = &mut self.doc {
                    let e = doc.editor_mut();
                    let did = if action == Action::Undo {
                        e.undo()
                    } else {
                        e.redo()
                    };
                    if did {
                        self.edited(fx);
                    }
                }
            }
            Action::Search => {
                self.overlay = Some(Overlay::Input {
                    purpose: InputPurpose::Search,
                    text: String::new(),
                });
            }
            Action::SearchNext => self.find(false),
            Action::ToggleWrap => {
                self.wrap = !self.wrap;
                self.scroll_editor();
            }
            Action::Up | Action::Down | Action::PageUp | Action::PageDown => {
                self.move_selection(action, fx)
            }
            Action::Select => self.open_selected(fx),
            Action::AddCase => self.add_case(fx),
            Action::DuplicateCase => self.duplicate_case(fx),
            Action::EditCase => self.edit_case(),
            Action::CompareOutputs => {
                if self.compare_outputs() {
                    self.view = View::Compare;
                } else {
                    self.info("compare needs two outputs of this case (two backends with ^B, or 2 samples with +) or a run before this one".to_owned());
                }
            }
            Action::MoreSamples => {
                self.samples = (self.samples + 1).min(MAX_SAMPLES);
                self.info(format!("{} sample(s) per backend", self.samples));
            }
            Action::FewerSamples => {
                self.samples = self.samples.saturating_sub(1).max(1);
                self.info(format!("{} sample(s) per backend", self.samples));
            }
            Action::NextChange | Action::PrevChange => {
                if let Some(c) = &mut self.compare {
                    let next = if action == Action::NextChange {
                        c.changes.iter().copied().find(|&p| p > c.scroll)
                    } else {
                        c.changes.iter().rev().copied().find(|&p| p < c.scroll)
                    };
                    match next {
                        Some(p) => c.scroll = p,
                        None => self.info("no more changes".to_owned()),
                    }
                }
            }
            Action::ToggleInline => {
                if let Some(c) = &mut self.compare {
                    c.inline = !c.inline;
                }
            }
            Action::Mark => {
                let i = self.history.selected;
                if i < self.history.rows.len() {
                    self.history.marked = if self.history.marked == Some(i) {
                        None
                    } else {
                        Some(i)
                    };
                }
            }
            Action::CompareVersions => self.compare_versions(fx),
            Action::Restore => {
                if let Some(row) = self.history.rows.get(self.history.selected) {
                    fx.push(Effect::LoadVersionForRestore {
                        id: row.id.clone(),
                        short: row.short.clone(),
                    });
                }
            }
            Action::SetLabel => {
                if let Some(row) = self.history.rows.get(self.history.selected) {
                    self.overlay = Some(Overlay::Input {
                        purpose: InputPurpose::Label {
                            version: row.id.clone(),
                        },
                        text: String::new(),
                    });
                }
            }
        }
    }

    fn focus_pane(&mut self, pane: Pane) {
        self.view = View::Main;
        self.focus = pane;
    }

    fn move_selection(&mut self, action: Action, fx: &mut Vec<Effect>) {
        let step: isize = match action {
            Action::Up => -1,
            Action::Down => 1,
            Action::PageUp => -10,
            _ => 10,
        };
        let moved = |value: usize, len: usize| -> usize {
            let max = len.saturating_sub(1) as isize;
            (value as isize + step).clamp(0, max.max(0)) as usize
        };
        match self.context() {
            Context::Tree => {
                let len = self.visible_prompts().len();
                self.tree_selected = moved(self.tree_selected, len);
            }
            Context::Cases => {
                // Row 0 is the sample; rows 1.. are the cases.
                let current = self.case_selected.map_or(0, |i| i + 1);
                let next = moved(current, self.cases.len() + 1);
                self.case_selected = next.checked_sub(1);
                self.case_chosen_sample = self.case_selected.is_none();
                self.request_preview(fx, true);
            }
            Context::Preview => self.preview.scroll = moved(self.preview.scroll, usize::MAX / 2),
            Context::Outputs => {
                if let Some(r) = &mut self.run {
                    r.scroll = moved(r.scroll, usize::MAX / 2);
                }
            }
            Context::Compare => {
                if let Some(c) = &mut self.compare {
                    c.scroll = moved(c.scroll, c.rows.len());
                }
            }
            Context::History => {
                self.history.selected = moved(self.history.selected, self.history.rows.len());
            }
            Context::Models => {
                let rows = self
                    .models
                    .data
                    .as_ref()
                    .map_or(0, |d| d.charts.pass_rate.groups.len());
                self.models.scroll = moved(self.models.scroll, rows);
            }
            Context::Editor | Context::Global => {}
        }
    }

    fn open_selected(&mut self, fx: &mut Vec<Effect>) {
        let Some(file) = self
            .visible_prompts()
            .get(self.tree_selected)
            .map(|p| p.file_name.clone())
        else {
            return;
        };
        if let Some(doc) = &self.doc {
            if doc.file_name == file {
                self.focus = Pane::Editor;
                return;
            }
            if doc.dirty() && self.pending_open.as_deref() != Some(file.as_str()) {
                self.pending_open = Some(file);
                self.status = Some((
                    Level::Error,
                    "unsaved changes: ^S saves them, Enter again discards them".to_owned(),
                ));
                return;
            }
        }
        self.pending_open = None;
        if let Some(r) = self.run.as_ref().filter(|r| !r.finished) {
            fx.push(Effect::CancelRun(r.id));
        }
        fx.push(Effect::LoadDocument(file));
    }

    fn start_run(&mut self, all: bool, fx: &mut Vec<Effect>) {
        if self.doc.is_none() {
            self.info("open a prompt first".to_owned());
            return;
        }
        if let Some(p) = self
            .preview
            .result
            .problem
            .as_ref()
            .filter(|_| !self.preview.pending)
        {
            self.status = Some((Level::Error, format!("cannot run: {}", p.message)));
            return;
        }
        let cases: Vec<Option<usize>> = if all && !self.cases.is_empty() {
            self.cases.iter().map(|c| Some(c.index)).collect()
        } else {
            vec![self.selected_case_key()]
        };
        let backends = self.run_backends();
        self.start_cells(&cases, &backends, fx);
    }

    /// Starts a run of `cases` × `backends` × the samples setting; the caller has checked
    /// that a prompt is open and renders.
    fn start_cells(&mut self, cases: &[Option<usize>], backends: &[String], fx: &mut Vec<Effect>) {
        let Some(doc) = &self.doc else {
            return;
        };
        if let Some(r) = self.run.as_ref().filter(|r| !r.finished) {
            fx.push(Effect::CancelRun(r.id));
        }
        let mut specs = Vec::new();
        for case in cases {
            for backend in backends {
                for sample in 0..self.samples {
                    specs.push(CellSpec {
                        case: *case,
                        backend: backend.clone(),
                        sample,
                    });
                }
            }
        }
        self.next_run += 1;
        let id = self.next_run;
        self.previous_run = self.run.take();
        self.run = Some(RunState {
            id,
            cells: specs
                .iter()
                .map(|s| Cell {
                    case: s.case,
                    backend: s.backend.clone(),
                    sample: s.sample,
                    text: String::new(),
                    status: CellStatus::Waiting,
                    done: None,
                })
                .collect(),
            samples: self.samples,
            finished: false,
            version: None,
            scroll: 0,
        });
        fx.push(Effect::StartRun {
            run: id,
            file_name: doc.file_name.clone(),
            prompt: doc.prompt.text(),
            tests: doc.tests_text(),
            cells: specs,
        });
        self.info(format!(
            "running {} output(s) on {}… Esc cancels",
            self.run.as_ref().map_or(0, |r| r.cells.len()),
            backends.join(", ")
        ));
    }

    /// The Models view's columns: the backends chosen with ^B, else every configured one.
    pub fn models_backends(&self) -> Vec<String> {
        if self.chosen_backends.is_empty() {
            self.backends.clone()
        } else {
            self.chosen_backends.clone()
        }
    }

    /// Asks the worker for the comparison of the current scope; the answer replaces the data.
    fn load_models(&mut self, fx: &mut Vec<Effect>) {
        let prompts = match (self.models.scope, &self.doc) {
            (ModelsScope::Prompt, Some(doc)) => vec![doc.file_name.clone()],
            (ModelsScope::Prompt, None) => {
                self.info("open a prompt first, or s for the whole library".to_owned());
                return;
            }
            (ModelsScope::Library, _) => Vec::new(),
        };
        self.models.prompt = self
            .doc
            .as_ref()
            .map(|d| d.name().to_owned())
            .unwrap_or_default();
        self.models.backends = self.models_backends();
        self.models.samples = self.samples;
        self.models.seq += 1;
        self.models.loading = true;
        fx.push(Effect::LoadModels {
            seq: self.models.seq,
            prompts,
            backends: self.models.backends.clone(),
            samples: self.samples,
        });
    }

    /// Runs every case of the open prompt on the compared backends that lack a stored run of
    /// its current version; the view reloads when the run finishes.
    fn run_missing(&mut self, fx: &mut Vec<Effect>) {
        let Some(doc) = &self.doc else {
            self.info("open a prompt first".to_owned());
            return;
        };
        let name = doc.name().to_owned();
        if doc.dirty() {
            // The comparison reads the saved version; a run of unsaved text would not count.
            self.status = Some((
                Level::Error,
                "unsaved changes: ^S saves them first (the comparison reads the saved version)"
                    .to_owned(),
            ));
            return;
        }
        if self.models.run.is_some() && self.is_running() {
            self.info("already running; Esc cancels".to_owned());
            return;
        }
        // What is missing is known only for the prompt and backends last loaded.
        let stale = (self.models.scope == ModelsScope::Prompt && self.models.prompt != name)
            || self.models.backends != self.models_backends();
        if stale {
            self.view = View::Models;
            self.load_models(fx);
        }
        if stale || self.models.loading || self.models.data.is_none() {
            self.info("the comparison is loading; r again runs what it lacks".to_owned());
            return;
        }
        if let Some(p) = self
            .preview
            .result
            .problem
            .as_ref()
            .filter(|_| !self.preview.pending)
        {
            self.status = Some((Level::Error, format!("cannot run: {}", p.message)));
            return;
        }
        let missing = self.models.missing_for(&name);
        if missing.is_empty() {
            self.info(format!(
                "{name}: every compared backend has a stored run of this version"
            ));
            return;
        }
        if self.cases.is_empty() {
            self.info(format!("{name} has no test cases to run"));
            return;
        }
        let cases: Vec<Option<usize>> = self.cases.iter().map(|c| Some(c.index)).collect();
        self.start_cells(&cases, &missing, fx);
        self.models.run = self.run.as_ref().map(|r| r.id);
    }

    /// Compares the first two outputs of the selected case or, with one output, that output
    /// with the previous run's answer to the same case on the same backend; false when there is
    /// nothing to compare.
    fn compare_outputs(&mut self) -> bool {
        let samples = self.run.as_ref().map_or(1, |r| r.samples);
        let cells = self.visible_cells();
        if let (Some(a), Some(b)) = (cells.first(), cells.get(1)) {
            self.compare = Some(CompareState::of_texts(
                &a.title(samples),
                &a.text,
                &b.title(samples),
                &b.text,
            ));
            return true;
        }
        let Some(current) = cells.first() else {
            return false;
        };
        let previous = self.previous_run.as_ref().and_then(|r| {
            r.cells.iter().find(|c| {
                c.case == current.case && c.backend == current.backend && c.sample == current.sample
            })
        });
        let Some(previous) = previous else {
            return false;
        };
        self.compare = Some(CompareState::of_texts(
            &format!("previous run {}", previous.title(samples)),
            &previous.text,
            &format!("this run {}", current.title(samples)),
            &current.text,
        ));
        true
    }

    fn working_files(&self) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        if let Some(doc) = &self.doc {
            files.insert(format!("prompts/{}", doc.file_name), doc.prompt.text());
            if let Some(tests) = doc.tests_text() {
                files.insert(format!("prompts/{}", doc.tests_file_name()), tests);
            }
        }
        files
    }

    fn compare_working_with_latest(&mut self, fx: &mut Vec<Effect>) {
        let Some(doc) = &self.doc else {
            return;
        };
        fx.push(Effect::LoadVersions {
            prompt: doc.name().to_owned(),
            left: VersionRef::Stored {
                id: String::new(),
                short: "latest".to_owned(),
            },
            right: VersionRef::Working,
            working: self.working_files(),
        });
    }

    fn compare_versions(&mut self, fx: &mut Vec<Effect>) {
        let Some(selected) = self.history.rows.get(self.history.selected) else {
            return;
        };
        let stored = |r: &HistoryRow| VersionRef::Stored {
            id: r.id.clone(),
            short: r.short.clone(),
        };
        let (left, right) = match self.history.marked.and_then(|m| self.history.rows.get(m)) {
            // Older on the left: rows are newest first.
            Some(marked) if self.history.marked > Some(self.history.selected) => {
                (stored(marked), stored(selected))
            }
            Some(marked) => (stored(selected), stored(marked)),
            None => (stored(selected), VersionRef::Working),
        };
        fx.push(Effect::LoadVersions {
            prompt: self.history.prompt.clone(),
            left,
            right,
            working: self.working_files(),
        });
    }

    fn add_case(&mut self, fx: &mut Vec<Effect>) {
        let inputs = self.preview.result.inputs.clone();
        let n = self.cases.len() + 1;
        let Some(doc) = &mut self.doc else {
            return;
        };
        let mut block = format!("- description: case {n}\n  vars:\n");
        if inputs.is_empty() {
            block.push_str("    name: \"\"\n");
        }
        for input in &inputs {
            block.push_str(&format!("    {input}: \"\"\n"));
        }
        let mut text = doc.tests.text();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let indent_map = text.lines().any(|l| l.starts_with("tests:"));
        let block = if indent_map {
            block.lines().map(|l| format!("  {l}\n")).collect()
        } else {
            block
        };
        let first_line = text.lines().count();
        text.push_str(&block);
        doc.tests.replace_all(&text);
        doc.tests.set_cursor(first_line + 2, usize::MAX);
        doc.active = Buffer::Tests;
        self.focus = Pane::Editor;
        self.view = View::Main;
        self.case_selected = Some(n - 1);
        self.info("added a case: fill in its variables; ^S saves".to_owned());
        self.edited(fx);
    }

    /// Line range (0-based, end exclusive) of the selected case's block in the tests buffer.
    fn case_block(&self, i: usize) -> Option<(usize, usize)> {
        let doc = self.doc.as_ref()?;
        let case = self.cases.get(i)?;
        let lines = doc.tests.lines();
        let start = case.line.checked_sub(1)?;
        if start >= lines.len() {
            return None;
        }
        let indent = lines[start].len() - lines[start].trim_start().len();
        let end = (start + 1..lines.len())
            .find(|&l| {
                let line = &lines[l];
                let this = line.len() - line.trim_start().len();
                !line.trim().is_empty()
                    && (this < indent || (this == indent && line.trim_start().starts_with("- ")))
            })
            .unwrap_or(lines.len());
        Some((start, end))
    }

    fn duplicate_case(&mut self, fx: &mut Vec<Effect>) {
        let Some(i) = self.case_selected else {
            self.info("select a case to duplicate".to_owned());
            return;
        };
        let Some((start, end)) = self.case_block(i) else {
            return;
        };
        let Some(doc) = &mut self.doc else {
            return;
        };
        let mut lines: Vec<String> = doc.tests.lines().to_vec();
        let mut copy: Vec<String> = lines[start..end].to_vec();
        while copy.last().is_some_and(|l| l.trim().is_empty()) {
            copy.pop();
        }
        for line in &mut copy {
            if line
                .trim_start()
                .trim_start_matches("- ")
                .starts_with("description:")
            {
                let trimmed = line.trim_end().to_owned();
                *line = match trimmed.chars().last() {
                    // A quoted description: the suffix goes inside the quotes.
                    Some(q @ ('"' | '\'')) => {
                        let mut base = trimmed;
                        base.pop();
                        format!("{base} (copy){q}")
                    }
                    _ => format!("{trimmed} (copy)"),
                };
                break;
            }
        }
        let insert_at = end.min(lines.len());
        let n = copy.len();
        for (k, line) in copy.into_iter().enumerate() {
            lines.insert(insert_at + k, line);
        }
        doc.tests.replace_all(&lines.join("\n"));
        doc.tests.set_cursor(insert_at, 0);
        doc.active = Buffer::Tests;
        self.focus = Pane::Editor;
        self.case_selected = Some(i + 1);
        self.info(format!("duplicated the case ({n} lines); ^S saves"));
        self.edited(fx);
    }

    fn edit_case(&mut self) {
        let Some(case) = self.case_selected.and_then(|i| self.cases.get(i)) else {
            self.info("the sample variables live in the prompt's front matter".to_owned());
            if let Some(doc) = &mut self.doc {
                doc.active = Buffer::Prompt;
                self.focus = Pane::Editor;
            }
            return;
        };
        let line = case.line;
        if let Some(doc) = &mut self.doc {
            doc.active = Buffer::Tests;
            // Put the cursor on the first variable, below `vars:` when there is one.
            // The buffer may have changed since the cases were parsed: stay inside it.
            let vars = doc
                .tests
                .lines()
                .get(line.saturating_sub(1)..)
                .unwrap_or_default()
                .iter()
                .take(20)
                .position(|l| l.trim_start().starts_with("vars:"))
                .map_or(line.saturating_sub(1), |p| line.saturating_sub(1) + p + 1);
            doc.tests.set_cursor(vars, usize::MAX);
            self.focus = Pane::Editor;
            self.view = View::Main;
            self.scroll_editor();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Mouse.

    fn on_mouse(&mut self, mouse: Mouse, fx: &mut Vec<Effect>) {
        if self.overlay.is_some() {
            if mouse.kind == MouseKind::Down {
                self.overlay = None;
            }
            return;
        }
        let panes = self.panes();
        if mouse.kind == MouseKind::Down && panes.header.contains(mouse.col, mouse.row) {
            for (i, tab) in layout::tab_areas(panes.header).iter().enumerate() {
                if tab.contains(mouse.col, mouse.row) {
                    let action = [
                        Action::ViewMain,
                        Action::ViewCompare,
                        Action::ViewHistory,
                        Action::ViewModels,
                    ][i];
                    self.perform(action, fx);
                }
            }
            return;
        }
        if self.view != View::Main {
            match mouse.kind {
                MouseKind::ScrollUp => self.move_selection(Action::Up, fx),
                MouseKind::ScrollDown => self.move_selection(Action::Down, fx),
                MouseKind::Down if self.view == View::History => {
                    let inner = panes.body.inner();
                    // The list starts below the table header and the chart.
                    let first = inner.y + 1;
                    if mouse.row >= first {
                        let i = usize::from(mouse.row - first);
                        if i < self.history.rows.len() {
                            self.history.selected = i;
                        }
                    }
                }
                MouseKind::Down => {}
            }
            return;
        }
        let hit = [
            (Pane::Tree, panes.tree),
            (Pane::Editor, panes.editor),
            (Pane::Preview, panes.preview),
            (Pane::Cases, panes.cases),
            (Pane::Outputs, panes.outputs),
        ]
        .into_iter()
        .find(|(_, a)| a.contains(mouse.col, mouse.row));
        let Some((pane, area)) = hit else {
            return;
        };
        match mouse.kind {
            MouseKind::ScrollUp | MouseKind::ScrollDown => {
                let previous = self.focus;
                self.focus = pane;
                if pane == Pane::Editor {
                    if let Some(doc) = &mut self.doc {
                        let e = doc.editor_mut();
                        if mouse.kind == MouseKind::ScrollUp {
                            e.scroll = e.scroll.saturating_sub(3);
                        } else {
                            e.scroll = (e.scroll + 3).min(e.line_count().saturating_sub(1));
                        }
                    }
                } else {
                    let action = if mouse.kind == MouseKind::ScrollUp {
                        Action::Up
                    } else {
                        Action::Down
                    };
                    self.move_selection(action, fx);
                }
                self.focus = previous;
            }
            MouseKind::Down => {
                self.focus = pane;
                let inner = area.inner();
                let row = usize::from(mouse.row.saturating_sub(inner.y));
                match pane {
                    Pane::Tree => {
                        let scroll = list_scroll(self.tree_selected, usize::from(inner.h));
                        let i = scroll + row;
                        if i < self.visible_prompts().len() {
                            let again = self.last_click == Some((mouse.col, mouse.row))
                                || self.tree_selected == i;
                            self.tree_selected = i;
                            if again {
                                self.open_selected(fx);
                                self.focus = Pane::Tree;
                            }
                        }
                    }
                    Pane::Cases => {
                        if row <= self.cases.len() && mouse.row >= inner.y {
                            self.case_selected = row.checked_sub(1);
                            self.case_chosen_sample = self.case_selected.is_none();
                            self.request_preview(fx, true);
                        }
                    }
                    Pane::Editor => {
                        let wrap = self.wrap;
                        if let Some(doc) = &mut self.doc {
                            let gutter = gutter_width(doc.editor().line_count());
                            let width = usize::from(inner.w).saturating_sub(gutter).max(1);
                            let col = usize::from(mouse.col.saturating_sub(inner.x))
                                .saturating_sub(gutter);
                            let e = doc.editor_mut();
                            let (line, offset) = visual_to_logical(e, row, width, wrap);
                            e.set_cursor(line, offset * width + col);
                        }
                    }
                    Pane::Preview | Pane::Outputs => {}
                }
                self.last_click = Some((mouse.col, mouse.row));
            }
        }
    }
}

/// Whether every char of `needle` appears in `hay` in order.
pub fn subsequence(needle: &str, hay: &str) -> bool {
    let mut hay = hay.chars();
    needle.chars().all(|c| hay.any(|h| h == c))
}

/// Width of the line-number gutter (digits and one space).
pub fn gutter_width(lines: usize) -> usize {
    lines.max(1).to_string().len().max(2) + 2
}

/// First row shown of a list of `height` rows so that `selected` is visible.
pub fn list_scroll(selected: usize, height: usize) -> usize {
    if height == 0 {
        return selected;
    }
    (selected + 1).saturating_sub(height)
}

/// The logical line and wrap row under a visual row of the editor.
fn visual_to_logical(e: &Editor, row: usize, width: usize, wrap: bool) -> (usize, usize) {
    let mut remaining = row;
    for line in e.scroll..e.line_count() {
        let rows = if wrap {
            super::editor::wrapped_rows(e.lines()[line].chars().count(), width)
        } else {
            1
        };
        if remaining < rows {
            return (line, remaining);
        }
        remaining -= rows;
    }
    (e.line_count().saturating_sub(1), 0)
}

/// Rough token estimate for API backends whose tokenizer is not local: ~4 characters a token.
pub fn estimate_tokens(chars: usize) -> usize {
    chars.div_ceil(4)
}
