//! Startup order only: parse the command line, dispatch, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use promptdeck::cli::{self, Cli, CliError, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cwd = std::env::current_dir().unwrap_or_default();
    match cli::dispatch(cli) {
        Ok(exit) => exit.into(),
        Err(CliError::Diagnostics(diagnostics)) => {
            cli::print_diagnostics(&diagnostics, &cwd);
            Exit::InputError.into()
        }
        Err(err) => {
            eprintln!("error: {:#}", anyhow::Error::from(err));
            Exit::InputError.into()
        }
    }
}
