//! The command line: clap definitions, and the glue from parsed arguments to the core.
//!
//! Results go to stdout; progress, warnings and errors go to stderr. Exit codes everywhere:
//! 0 ok, 1 tests failed, 2 usage, config or input error.

pub mod check;
pub mod init;
pub mod render;

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
  promptdeck completions bash > ~/.local/share/bash-completion/completions/promptdeck

Exit codes: 0 ok, 1 tests failed, 2 usage, config or input error.";

/// A terminal workbench for prompt engineering: edit, render, check and test LLM prompts.
#[derive(Debug, Parser)]
#[command(name = "promptdeck", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Project directory (default: the nearest directory upwards holding promptdeck.toml).
    #[arg(long, global = true, value_name = "DIR", env = "PROMPTDECK_PROJECT")]
    pub project: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
  promptdeck render classify/zero-shot --var text='Great service!'")]
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
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  promptdeck completions bash > ~/.local/share/bash-completion/completions/promptdeck\n  promptdeck completions zsh > \"${fpath[1]}/_promptdeck\"\n  promptdeck completions fish > ~/.config/fish/completions/promptdeck.fish"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// Messages separated by role markers, as in a prompt body.
    Text,
    /// `{"messages":[{"role","content"}],"parameters":{...},"backend":"..."}`.
    Json,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A .prompty file, or its name under prompts/ (`cot/math`).
    pub prompt: String,
    /// The test case to render, by its description.
    #[arg(long, conflicts_with = "case_index")]
    pub case: Option<String>,
    /// The test case to render, by its 1-based position in the tests file.
    #[arg(long, value_name = "N")]
    pub case_index: Option<usize>,
    /// Set a variable; repeat for several. Inputs declared as number, boolean, array or object
    /// take JSON (`--var n=3`, `--var 'items=["a","b"]'`).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    #[arg(long, value_enum, default_value_t = RenderFormat::Text)]
    pub format: RenderFormat,
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> Result<Exit, CliError> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::Io(format!("cannot read the current directory: {e}")))?;
    match cli.command {
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
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "promptdeck", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
    }
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
