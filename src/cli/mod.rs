//! The command line: clap definitions, and the glue from parsed arguments to the core.
//!
//! Results go to stdout; progress, warnings and errors go to stderr. Exit codes everywhere:
//! 0 ok, 1 tests failed, 2 usage, config or input error.

pub mod bench;
pub mod bench_harness;
pub mod check;
pub mod compare;
pub mod diff;
pub mod import_promptfoo;
pub mod init;
pub mod local;
pub mod matrix;
pub mod render;
pub mod run;
pub mod serve;
pub mod test;
pub mod versions;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diagnostic::Diagnostic;
use crate::project::{Project, ProjectError};

/// Exit status of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    TestsFailed = 1,
    InputError = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Problems in the user's files, already formatted as diagnostics.
    #[error("{} error(s) in input files", .0.iter().filter(|d| d.is_error()).count())]
    Diagnostics(Vec<Diagnostic>),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        Exit::InputError
    }
}

const AFTER_HELP: &str = "\
Examples:
  promptdeck init my-prompts            create a project with an example prompt
  promptdeck check                      validate every prompt and tests file
  promptdeck render cot/math --case apples
  promptdeck commit cot/math -m \"tighter answer line\"
  promptdeck history cot/math
  promptdeck diff cot/math@prod working
  promptdeck test --baseline-file tests/baseline.json --junit junit.xml
  promptdeck compare classify/zero-shot --backend local,gpt-4o-mini --html report.html
  promptdeck completions bash > ~/.local/share/bash-completion/completions/promptdeck

Exit codes: 0 ok, 1 tests failed, 2 usage, config or input error.";

/// A terminal workbench for prompt engineering: edit, render, check and test LLM prompts.
#[derive(Debug, Parser)]
#[command(name = "promptdeck", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Project directory (default: the nearest directory upwards holding promptdeck.toml).
    #[arg(long, global = true, value_name = "DIR", env = "PROMPTDECK_PROJECT")]
    pub project: Option<PathBuf>,

    /// What to do; without one, the workbench TUI opens on the project.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the workbench: edit, preview, run, compare and browse history (also: no subcommand).
    #[command(after_help = "Examples:
  promptdeck                        the workbench on the project around the current directory
  promptdeck tui --theme light      with another theme (dark, light, high-contrast, catppuccin-mocha, tokyonight)
  NO_COLOR=1 promptdeck tui         without colours

F1 inside lists every key binding; keys are configurable under [keys] in promptdeck.toml.")]
    Tui {
        /// A theme from themes/ (default: `defaults.theme`, then dark).
        #[arg(long)]
        theme: Option<String>,
    },
    /// Create promptdeck.toml, an example prompt and a .gitignore entry (never overwrites).
    #[command(after_help = "Examples:\n  promptdeck init\n  promptdeck init path/to/project")]
    Init {
        /// Where to create the project (default: the current directory).
        dir: Option<PathBuf>,
    },
    /// Render a prompt for one test case and print the messages a model would receive.
    #[command(after_help = "Examples:
  promptdeck render cot/math                       render with the prompt's `sample` variables
  promptdeck render cot/math --case apples         render the test case described \"apples\"
  promptdeck render prompts/cot/math.prompty --case-index 2 --format json
  promptdeck render classify/zero-shot --var text='Great service!'
  promptdeck render cot/math --case apples --backend local --format model   the text the model reads")]
    Render(RenderArgs),
    /// Parse every prompt and tests file, render every case, and report all problems.
    #[command(after_help = "Examples:
  promptdeck check                       the whole prompts/ folder
  promptdeck check prompts/cot           one folder
  promptdeck check cot/math.prompty      one prompt and its tests

Problems are printed as `file:line:col: error: message`; exit 0 when clean, 2 otherwise.")]
    Check {
        /// Files or folders under prompts/ (default: all of prompts/).
        paths: Vec<PathBuf>,
    },
    /// Run one case of a prompt on a backend, streaming the answer to stdout; the run is stored.
    #[command(after_help = "Examples:
  promptdeck run cot/math --case apples                 on the prompt's backend (default: local)
  promptdeck run cot/math --case-index 2 --backend gpt-4o-mini --temperature 0.7 --seed 7
  promptdeck run hello --var question='Why is the sky blue?' > answer.txt
  promptdeck run cot/math --all-cases --backend local,gpt-4o-mini --samples 3
  promptdeck run cot/math --all-cases --format json > results.json
  promptdeck run cot/self-consistency --case 'age puzzle'     5 samples and a majority vote
  promptdeck run react/tools --case percentage                 a ReAct loop; the trace goes to stderr

One case on one backend streams its answer to stdout; several cases, backends or samples run
concurrently within each backend's limits with a progress bar on stderr, and print each answer
(or, with --format json, every result) when done. Results are stored as they finish; Ctrl-C
keeps the finished ones and marks the run interrupted. Run id, timings, tokens, cost and a
technique's votes, trace or generated prompt go to stderr. Model-graded assertions use the judge
backend ([defaults] judge).")]
    Run(RunCommand),
    /// Run every test case, compare with the baseline, write reports; exit 1 on failures.
    #[command(after_help = test::AFTER_HELP)]
    Test(test::TestArgs),
    /// Compare backends on the prompts' suites: accuracy, consistency, robustness, speed, cost.
    #[command(after_help = compare::AFTER_HELP)]
    Compare(compare::CompareArgs),
    /// Convert a promptfoo config into promptdeck prompts, tests files and backends.
    #[command(name = "import-promptfoo", after_help = import_promptfoo::AFTER_HELP)]
    ImportPromptfoo {
        /// The promptfoo config (promptfooconfig.yaml).
        config: PathBuf,
        /// Where to write the project (default: the current folder).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Serve an OpenAI-compatible API (/v1/chat/completions, /v1/models) over a backend.
    #[command(after_help = "Examples:
  promptdeck serve                                  the embedded local model on 127.0.0.1:8080
  promptdeck serve --port 9000 --backend gpt-4o-mini
  curl -s localhost:8080/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'

Clients choose a configured backend by name in `model`; any other name gets the default.
Binds loopback unless --host says otherwise; there is no authentication.")]
    Serve {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on; 0 picks a free one (printed on stderr).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The backend served by default (default: `defaults.backend`).
        #[arg(long)]
        backend: Option<String>,
    },
    /// List configured backends and the local models found, with their details.
    #[command(after_help = "Examples:
  promptdeck models
  promptdeck models --format json
  promptdeck models --remote        also ask each API backend which models its key can use")]
    Models {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Query each API backend's model list (needs its key).
        #[arg(long)]
        remote: bool,
    },
    /// Show how the local model tokenizes a text: ids and pieces.
    #[command(after_help = "Examples:
  promptdeck tokenize 'Hello, world!'
  promptdeck tokenize --format json \"$(cat prompt.txt)\"")]
    Tokenize {
        text: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// A GGUF file (default: the embedded model).
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
    },
    /// Snapshot a prompt, its tests file and the partials it uses as an immutable version.
    #[command(
        after_help = "Examples:\n  promptdeck commit cot/math -m \"state the unit in the answer\"\n\nCommitting unchanged content creates nothing and names the existing version."
    )]
    Commit {
        /// A .prompty file, or its name under prompts/.
        prompt: String,
        /// What changed.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// List a prompt's versions, newest first, with labels and the pass rate of their latest run.
    #[command(
        after_help = "Examples:\n  promptdeck history cot/math\n  promptdeck history cot/math --format json"
    )]
    History {
        prompt: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Print a version's files (or a run's results).
    #[command(
        after_help = "REF is a version id prefix (7+ hex digits), PROMPT@LABEL, PROMPT@latest or a run id.\n\nExamples:\n  promptdeck show 3f2a1c9\n  promptdeck show cot/math@prod\n  promptdeck show cot/math@latest --format json"
    )]
    Show {
        reference: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Write a version's files back to the working tree.
    #[command(
        after_help = "Refuses to overwrite uncommitted changes unless --force.\n\nExamples:\n  promptdeck restore cot/math@prod\n  promptdeck restore 3f2a1c9 --force"
    )]
    Restore {
        reference: String,
        /// Overwrite uncommitted changes.
        #[arg(long)]
        force: bool,
    },
    /// Named pointers to versions: prod, staging, baseline, ...
    #[command(
        subcommand,
        after_help = "Examples:\n  promptdeck label set prod cot/math@latest\n  promptdeck label list\n  promptdeck label log prod"
    )]
    Label(LabelCommand),
    /// Compare two versions, labels, runs or the working tree.
    #[command(
        after_help = "A and B are version id prefixes, PROMPT@LABEL, PROMPT@latest, run ids, or `working`.\n\nExamples:\n  promptdeck diff cot/math@prod working\n  promptdeck diff 3f2a1c9 cot/math@latest --color always\n  promptdeck diff cot/math@baseline cot/math@prod --format json"
    )]
    Diff {
        a: String,
        b: String,
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
        color: ColorChoice,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Lines of context around each change.
        #[arg(long, default_value_t = 3)]
        context: usize,
    },
    /// List runs with their status and pass counts.
    #[command(
        after_help = "Examples:\n  promptdeck runs\n  promptdeck runs cot/math --format json"
    )]
    Runs {
        prompt: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Write all versions, labels, label logs and runs as JSON Lines (backup and migration).
    #[command(
        after_help = "Examples:\n  promptdeck export --out backup.jsonl\n  promptdeck export | gzip > backup.jsonl.gz"
    )]
    Export {
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Import an export; importing twice changes nothing, and a bad file imports nothing.
    #[command(
        after_help = "Examples:\n  promptdeck import backup.jsonl\n  gunzip -c backup.jsonl.gz | promptdeck import -"
    )]
    Import {
        /// The export file, or `-` for standard input.
        file: PathBuf,
    },
    /// Measure promptdeck's own speed.
    #[command(
        subcommand,
        after_help = "Examples:\n  promptdeck bench store\n  promptdeck bench harness --cases 2000 --concurrency 16\n  promptdeck bench tui"
    )]
    Bench(BenchCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  promptdeck completions bash > ~/.local/share/bash-completion/completions/promptdeck\n  promptdeck completions zsh > \"${fpath[1]}/_promptdeck\"\n  promptdeck completions fish > ~/.config/fish/completions/promptdeck.fish"
    )]
    Completions { shell: clap_complete::Shell },
}

/// Which prompt and case a command works on, and variables to set: shared by `render` and `run`.
#[derive(Debug, Args)]
pub struct CaseArgs {
    /// A .prompty file, or its name under prompts/ (`cot/math`).
    pub prompt: String,
    /// The test case, by its description (default: the prompt's `sample` variables).
    #[arg(long, conflicts_with = "case_index")]
    pub case: Option<String>,
    /// The test case, by its 1-based position in the tests file.
    #[arg(long, value_name = "N")]
    pub case_index: Option<usize>,
    /// Set a variable; repeat for several. Inputs declared as number, boolean, array or object
    /// take JSON (`--var n=3`, `--var 'items=["a","b"]'`).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunCommand {
    #[command(flatten)]
    pub target: CaseArgs,
    /// Backends from promptdeck.toml, comma-separated (default: the prompt's `model.backend`,
    /// then `defaults.backend`).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub backend: Vec<String>,
    /// Run every case of the prompt's tests file.
    #[arg(long, conflicts_with_all = ["case", "case_index"])]
    pub all_cases: bool,
    /// Run each case N times (independent samples; the cache keeps them apart).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub samples: u32,
    /// `json`: every result as JSON on stdout once the run ends, instead of streaming the answer.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Do not read or write the response cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Point NAME of REF's prompt at REF (appends to the label log).
    #[command(
        after_help = "Examples:\n  promptdeck label set prod cot/math@latest\n  promptdeck label set baseline 3f2a1c9"
    )]
    Set { name: String, reference: String },
    /// Current labels, of one prompt or all.
    List { prompt: Option<String> },
    /// Every move of a label: when, from, to, by whom.
    Log {
        name: String,
        prompt: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time `promptdeck test` itself: N cases × 3 assertions against an instant loopback server.
    #[command(
        after_help = "Example:\n  promptdeck bench harness --cases 2000 --concurrency 16\n\nPrints wall time, peak RSS (VmHWM) and results per second; every result is stored."
    )]
    Harness {
        #[arg(long, default_value_t = 2000)]
        cases: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: u32,
        /// Keep the generated project in DIR (default: a temporary folder, removed).
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Load time, prefill and decode tok/s, time to first token and peak memory of the local model.
    #[command(
        after_help = "Example:\n  promptdeck bench local --prompt-tokens 128 --tokens 64 --threads 2 --reference llama-cpp.json\n\n--reference takes the JSON written by benches/llama_cpp_bench.py (llama.cpp on the same model) and prints the speed ratios; docs/benchmarks.md has the method. --candle adds candle's two weight layouts for comparison (CANDLE_NUM_THREADS sets their matmul threads)."
    )]
    Local {
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        /// Threads of the engine's own pool (the native kernels run on it).
        #[arg(long)]
        threads: Option<usize>,
        /// A GGUF file (default: the embedded model).
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
        /// llama.cpp's numbers on the same model (JSON from benches/llama_cpp_bench.py).
        #[arg(long, value_name = "FILE")]
        reference: Option<PathBuf>,
        /// Also run the candle engine (Q4_1 repacked to Q8_0, and Q4_1 as stored).
        #[arg(long)]
        candle: bool,
    },
    /// Time the workbench: start to first frame on a store of N versions, and input to frame
    /// while a generation streams.
    #[command(after_help = "Example:\n  promptdeck bench tui --versions 10000 --tokens 2000")]
    Tui {
        #[arg(long, default_value_t = 10_000)]
        versions: usize,
        /// Tokens streamed while keys are timed.
        #[arg(long, default_value_t = 2_000)]
        tokens: usize,
    },
    /// Fill a scratch store and time history and show; report size against the raw payload.
    #[command(after_help = "Example:\n  promptdeck bench store --versions 10000 --outputs 100000")]
    Store {
        #[arg(long, default_value_t = 10_000)]
        versions: usize,
        #[arg(long, default_value_t = 100_000)]
        outputs: usize,
        #[arg(long, default_value_t = 100)]
        prompts: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is not set.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// Messages separated by role markers, as in a prompt body.
    Text,
    /// `{"messages":[{"role","content"}],"parameters":{...},"backend":"..."}`.
    Json,
    /// The exact text the local model reads: messages through the GGUF's chat template.
    Model,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub target: CaseArgs,
    /// The backend to render for (default: the prompt's `model.backend`, then `defaults.backend`).
    #[arg(long)]
    pub backend: Option<String>,
    #[arg(long, value_enum, default_value_t = RenderFormat::Text)]
    pub format: RenderFormat,
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> Result<Exit, CliError> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::Io(format!("cannot read the current directory: {e}")))?;
    let command = cli.command.unwrap_or(Command::Tui { theme: None });
    match command {
        Command::Init { dir } => {
            let dir = dir.map_or_else(|| cwd.clone(), |d| cwd.join(d));
            let report = init::run(&dir)?;
            if report.created.is_empty() && !report.gitignore_updated {
                println!(
                    "{} is already a promptdeck project; nothing to do.",
                    dir.display()
                );
            } else {
                for path in &report.created {
                    println!("created {}", relative(path, &cwd).display());
                }
                if report.gitignore_updated {
                    println!(
                        "added /.promptdeck/ to {}",
                        relative(&dir.join(".gitignore"), &cwd).display()
                    );
                }
                println!(
                    "Next: cd into the project and run `promptdeck check`, then `promptdeck render hello`."
                );
            }
            Ok(Exit::Ok)
        }
        Command::Render(args) => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            render::run(&project, &cwd, &args)
        }
        Command::Check { paths } => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            check::run(&project, &cwd, &paths)
        }
        Command::Serve {
            host,
            port,
            backend,
        } => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            serve::run(&project, &host, port, backend.as_deref())
        }
        Command::Models { format, remote } => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            local::models(&project, format, remote)
        }
        Command::Tokenize {
            text,
            format,
            model,
        } => {
            let project = Project::discover(&cwd, cli.project.as_deref()).ok();
            local::tokenize(
                project.as_ref(),
                &text,
                format,
                model.map(|m| cwd.join(m)).as_deref(),
            )
        }
        Command::Run(command) => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            run::run(&project, &cwd, &command)
        }
        Command::ImportPromptfoo { config, out } => {
            import_promptfoo::run(&cwd, &config, out.as_deref())
        }
        Command::Test(args) => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            test::run(&project, &cwd, &args)
        }
        Command::Compare(args) => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            compare::run(&project, &cwd, &args)
        }
        Command::Commit { prompt, message } => versions::commit(
            &Project::discover(&cwd, cli.project.as_deref())?,
            &cwd,
            &prompt,
            message.as_deref(),
        ),
        Command::History { prompt, format } => versions::history(
            &Project::discover(&cwd, cli.project.as_deref())?,
            &cwd,
            &prompt,
            format,
        ),
        Command::Show { reference, format } => versions::show(
            &Project::discover(&cwd, cli.project.as_deref())?,
            &cwd,
            &reference,
            format,
        ),
        Command::Restore { reference, force } => versions::restore(
            &Project::discover(&cwd, cli.project.as_deref())?,
            &cwd,
            &reference,
            force,
        ),
        Command::Label(command) => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            match command {
                LabelCommand::Set { name, reference } => {
                    versions::label_set(&project, &cwd, &name, &reference)
                }
                LabelCommand::List { prompt } => {
                    versions::label_list(&project, &cwd, prompt.as_deref())
                }
                LabelCommand::Log { name, prompt } => {
                    versions::label_log(&project, &cwd, &name, prompt.as_deref())
                }
            }
        }
        Command::Diff {
            a,
            b,
            color,
            format,
            context,
        } => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            diff::run(
                &project,
                &cwd,
                &diff::DiffArgs {
                    a: &a,
                    b: &b,
                    color,
                    format,
                    context,
                },
            )
        }
        Command::Runs { prompt, format } => versions::runs(
            &Project::discover(&cwd, cli.project.as_deref())?,
            &cwd,
            prompt.as_deref(),
            format,
        ),
        Command::Export { out } => {
            let out = out.map(|o| cwd.join(o));
            versions::export(
                &Project::discover(&cwd, cli.project.as_deref())?,
                out.as_deref(),
            )
        }
        Command::Import { file } => {
            let file = if file == Path::new("-") {
                file
            } else {
                cwd.join(file)
            };
            versions::import(&Project::discover(&cwd, cli.project.as_deref())?, &file)
        }
        Command::Bench(BenchCommand::Local {
            prompt_tokens,
            tokens,
            threads,
            model,
            reference,
            candle,
        }) => {
            let project = Project::discover(&cwd, cli.project.as_deref()).ok();
            let args = bench::LocalBenchArgs {
                prompt_tokens,
                tokens,
                threads,
                model: model.map(|m| cwd.join(m)),
                reference: reference.map(|r| cwd.join(r)),
                candle,
            };
            bench::local(project.as_ref(), &args)
        }
        Command::Bench(BenchCommand::Harness {
            cases,
            concurrency,
            keep,
        }) => bench_harness::harness(&bench_harness::HarnessArgs {
            cases,
            concurrency,
            keep: keep.map(|k| cwd.join(k)),
        }),
        Command::Tui { theme } => {
            let project = Project::discover(&cwd, cli.project.as_deref())?;
            crate::tui::terminal::run(project, &crate::tui::terminal::Options { theme })
        }
        Command::Bench(BenchCommand::Tui { versions, tokens }) => {
            bench::tui(&bench::TuiBenchArgs { versions, tokens })
        }
        Command::Bench(BenchCommand::Store {
            versions,
            outputs,
            prompts,
        }) => bench::store(&bench::StoreBenchArgs {
            versions,
            outputs,
            prompts,
        }),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "promptdeck", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
    }
}

/// `1 prompt`, `3 prompts`.
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Shows `path` relative to `base` when it lies below it.
pub fn relative(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

/// Prints diagnostics to stderr with paths relative to `cwd`.
pub fn print_diagnostics(diagnostics: &[Diagnostic], cwd: &Path) {
    for d in diagnostics {
        eprintln!("{}", d.clone().relative_to(cwd));
    }
}
