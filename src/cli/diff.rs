//! `promptdeck diff A B`: two states of a prompt unit (versions, labels, runs or `working`) as a
//! unified diff with word-level highlights, or as JSON hunks. The diff model is the pure
//! [`crate::diff`] module that the TUI reuses.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use super::versions::{resolve, working_unit};
use super::{CliError, ColorChoice, Exit, OutputFormat};
use crate::project::Project;
use crate::refs::{self, Resolved};
use crate::store::Store;

pub struct DiffArgs<'a> {
    pub a: &'a str,
    pub b: &'a str,
    pub color: ColorChoice,
    pub format: OutputFormat,
    pub context: usize,
}

/// Whether to colour: `always` and `never` win; `auto` colours a terminal unless NO_COLOR is set.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

pub fn run(project: &Project, cwd: &Path, args: &DiffArgs<'_>) -> Result<Exit, CliError> {
    let (prompt, old, new, old_label, new_label) = {
        let store = project.open_store()?;
        let a = resolve(project, cwd, &store, args.a)?;
        let b = resolve(project, cwd, &store, args.b)?;
        let prompt = refs::prompt_of(&a).or_else(|| refs::prompt_of(&b)).map(str::to_owned).ok_or_else(|| {
            CliError::Usage("both sides are `working`: name the prompt on one side, e.g. `cot/math@latest working`".to_owned())
        })?;
        for side in [&a, &b] {
            if let Some(other) = refs::prompt_of(side) {
                if other != prompt {
                    return Err(CliError::Usage(format!(
                        "{} and {} are versions of different prompts ({prompt} and {other})",
                        args.a, args.b
                    )));
                }
            }
        }
        let old = side_files(&store, &a)?;
        let new = side_files(&store, &b)?;
        (
            prompt,
            old,
            new,
            label(&store, &a, args.a),
            label(&store, &b, args.b),
        )
        // The store closes here: reading the working tree below needs no lock.
    };
    let or_working =
        |files: Option<BTreeMap<String, String>>| -> Result<BTreeMap<String, String>, CliError> {
            match files {
                Some(files) => Ok(files),
                None => Ok(working_unit(project, cwd, &prompt)?.files),
            }
        };
    let old = or_working(old)?;
    let new = or_working(new)?;
    let diffs = crate::diff::diff_file_sets(&old, &new, args.context);
    match args.format {
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&diffs).map_err(|e| CliError::Io(e.to_string()))?
            );
        }
        OutputFormat::Text => {
            if diffs.is_empty() {
                eprintln!("no differences between {old_label} and {new_label}");
            } else {
                print!(
                    "{}",
                    crate::diff::render_unified(
                        &diffs,
                        &old_label,
                        &new_label,
                        use_color(args.color)
                    )
                );
            }
        }
    }
    Ok(Exit::Ok)
}

fn side_files(
    store: &dyn Store,
    side: &Resolved,
) -> Result<Option<BTreeMap<String, String>>, CliError> {
    match side {
        Resolved::Working(_) => Ok(None),
        other => refs::files_of(store, other)?.map(Some).ok_or_else(|| {
            CliError::Usage("the run's version is missing from the store".to_owned())
        }),
    }
}

fn label(store: &dyn Store, side: &Resolved, typed: &str) -> String {
    match side {
        Resolved::Working(_) => "working".to_owned(),
        Resolved::Version(v) => format!("{typed} {}", store.short_id(&v.id)),
        Resolved::Run(r) => format!(
            "run {} {}",
            store.short_run_id(r.id),
            store.short_id(&r.version)
        ),
    }
}
