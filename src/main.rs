//! Startup order only: parse the command line, dispatch, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use promptdeck::cli::{self, Cli, CliError, Exit};
use promptdeck::project::ProjectError;

fn main() -> ExitCode {
    restore_default_sigpipe();
    // SAFETY: first thing in main, before any thread exists. candle sizes its quantized-matmul
    // pool once per process from the environment; its busy-waiting collapses when a second
    // thread competes with other work, so the default is promptdeck's measured choice
    // (CANDLE_NUM_THREADS, when set, still wins).
    unsafe {
        promptdeck::local::configure_process_threads(promptdeck::local::engine::CANDLE_THREADS)
    };
    let cli = Cli::parse();
    let cwd = std::env::current_dir().unwrap_or_default();
    match cli::dispatch(cli) {
        Ok(exit) => exit.into(),
        Err(CliError::Diagnostics(diagnostics)) => {
            cli::print_diagnostics(&diagnostics, &cwd);
            Exit::InputError.into()
        }
        // A located problem in promptdeck.toml prints like every other file error. Through
        // anyhow it read "error: FILE:1:1: error: MESSAGE: MESSAGE" (the source chain repeats it).
        Err(CliError::Project(ProjectError::Config(diagnostic))) => {
            cli::print_diagnostics(&[diagnostic], &cwd);
            Exit::InputError.into()
        }
        Err(CliError::Project(ProjectError::File(error))) => {
            cli::print_diagnostics(&[error.to_diagnostic()], &cwd);
            Exit::InputError.into()
        }
        Err(err) => {
            eprintln!("error: {:#}", anyhow::Error::from(err));
            Exit::InputError.into()
        }
    }
}

/// Rust ignores SIGPIPE, which turns `promptdeck show ... | head` into a panic on the first write
/// after `head` exits. A command-line tool should simply stop, as `cat` does.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler
    // for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
