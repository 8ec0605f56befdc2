//! Version history commands: `commit`, `history`, `show`, `restore`, `label`, `runs`, `export`
//! and `import`. They open the project's store for the length of one command, so a TUI or a
//! `promptdeck test` in another terminal is only ever blocked for that long.

use std::io::{BufReader, IsTerminal, Write};
use std::path::Path;

use serde_json::json;

use super::{CliError, Exit, OutputFormat, plural, print_diagnostics};
use crate::diagnostic::Severity;
use crate::library;
use crate::project::Project;
use crate::refs::{self, Resolved};
use crate::store::{self, CommitOutcome, SledStore, Store, UnitFiles, Version};

/// Who is recorded as the author of versions and label moves: `$PROMPTDECK_AUTHOR`, else git's
/// `user.name`, else the login name.
pub fn author(project: &Project) -> String {
    if let Some(name) = std::env::var("PROMPTDECK_AUTHOR")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        return name;
    }
    let git = std::process::Command::new("git")
        .args(["config", "user.name"])
        .current_dir(&project.root)
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(out) = git {
        let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !name.is_empty() {
            return name;
        }
    }
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `2026-11-28 17:20` from unix millis.
pub fn short_time(ms: store::Millis) -> String {
    let full = store::format_rfc3339(ms);
    full.get(..16).map_or(full.clone(), |s| s.replace('T', " "))
}

fn prompt_name(project: &Project, cwd: &Path, spec: &str) -> Result<String, CliError> {
    let file = project.resolve_prompt(spec, cwd).map_err(CliError::Usage)?;
    Ok(file.trim_end_matches(".prompty").to_owned())
}

/// Maps what a user typed before `@` to a prompt name; unknown names pass through so the
/// store can say that it has no such prompt.
fn name_resolver<'a>(project: &'a Project, cwd: &'a Path) -> impl Fn(&str) -> Option<String> + 'a {
    move |spec| {
        project
            .resolve_prompt(spec, cwd)
            .ok()
            .map(|f| f.trim_end_matches(".prompty").to_owned())
    }
}

pub fn resolve(
    project: &Project,
    cwd: &Path,
    store: &dyn Store,
    text: &str,
) -> Result<Resolved, CliError> {
    refs::resolve(store, text, &name_resolver(project, cwd))
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// Snapshots the working files of a prompt unit; prints warnings for problems that did not stop it.
pub fn working_unit(project: &Project, cwd: &Path, spec: &str) -> Result<UnitFiles, CliError> {
    let file = project.resolve_prompt(spec, cwd).map_err(CliError::Usage)?;
    let (unit, diagnostics) = library::unit_files(project, &file).map_err(CliError::Diagnostics)?;
    print_diagnostics(&diagnostics, cwd);
    Ok(unit)
}

pub fn commit(
    project: &Project,
    cwd: &Path,
    spec: &str,
    message: Option<&str>,
) -> Result<Exit, CliError> {
    let file = project.resolve_prompt(spec, cwd).map_err(CliError::Usage)?;
    let (unit, diagnostics) = library::unit_files(project, &file).map_err(CliError::Diagnostics)?;
    print_diagnostics(&diagnostics, cwd);
    // A version is what `run` and `test` will execute: one whose template does not render
    // (a syntax error, an endless loop, an include outside the library) is refused here rather
    // than stored. The workbench's save still commits work in progress, where a user expects
    // Ctrl-S never to lose an edit.
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        eprintln!(
            "nothing committed: {} in {}; fix {} first",
            plural(errors, "error"),
            unit.prompt,
            if errors == 1 { "it" } else { "them" }
        );
        return Ok(Exit::InputError);
    }
    let store = project.open_store()?;
    let outcome = store.commit(&unit, message.unwrap_or(""), &author(project))?;
    let short = store.short_id(outcome.id());
    match outcome {
        CommitOutcome::Created(_) => {
            let files = unit.files.keys().cloned().collect::<Vec<_>>().join(", ");
            println!("committed {} version {short} ({files})", unit.prompt);
        }
        CommitOutcome::Existing(_) => {
            println!("{} is unchanged: already version {short}", unit.prompt)
        }
    }
    Ok(Exit::Ok)
}

pub fn history(
    project: &Project,
    cwd: &Path,
    spec: &str,
    format: OutputFormat,
) -> Result<Exit, CliError> {
    let prompt = match prompt_name(project, cwd, spec) {
        Ok(prompt) => prompt,
        // A metaprompt's generated prompts (`<prompt>.generated`) exist only in the store.
        Err(_) if spec.ends_with(crate::execution::GENERATED_SUFFIX) => spec.to_owned(),
        Err(e) => return Err(e),
    };
    let store = project.open_store()?;
    let entries = store.history(&prompt)?;
    let mut rows = Vec::new();
    for entry in &entries {
        let latest_run = store
            .runs_for_version(&entry.version.id)?
            .into_iter()
            .next();
        let results = match &latest_run {
            Some(run) => store.results(run.id)?,
            None => Vec::new(),
        };
        let judged = results.iter().filter(|r| r.passed.is_some()).count();
        let passed = results.iter().filter(|r| r.passed == Some(true)).count();
        rows.push((entry, latest_run, passed, judged));
    }
    match format {
        OutputFormat::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|(entry, run, passed, judged)| {
                    let v = &entry.version;
                    json!({
                        "id": v.id,
                        "short_id": store.short_id(&v.id),
                        "prompt": v.prompt,
                        "parent": v.parent,
                        "created_at": store::format_rfc3339(v.created_at),
                        "author": v.author,
                        "message": v.message,
                        "labels": entry.labels,
                        "latest_run": run.as_ref().map(|r| json!({
                            "id": r.id.to_string(),
                            "status": r.status.to_string(),
                            "passed": passed,
                            "judged": judged,
                            "pass_rate": if *judged > 0 { Some(*passed as f64 / *judged as f64) } else { None },
                        })),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).map_err(|e| CliError::Io(e.to_string()))?
            );
        }
        OutputFormat::Text => {
            if rows.is_empty() {
                eprintln!(
                    "{prompt} has no versions yet; `promptdeck commit {prompt}` makes the first"
                );
            }
            for (entry, run, passed, judged) in &rows {
                let v = &entry.version;
                let labels = if entry.labels.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", entry.labels.join(", "))
                };
                let pass = match run {
                    Some(_) if *judged > 0 => {
                        format!(
                            "  pass {passed}/{judged} ({:.0}%)",
                            100.0 * *passed as f64 / *judged as f64
                        )
                    }
                    Some(r) => format!("  run {}", r.status),
                    None => String::new(),
                };
                let message = if v.message.is_empty() {
                    "(no message)"
                } else {
                    v.message.as_str()
                };
                println!(
                    "{}{labels}  {}  {}  {message}{pass}",
                    store.short_id(&v.id),
                    short_time(v.created_at),
                    v.author
                );
            }
        }
    }
    Ok(Exit::Ok)
}

fn print_version(store: &SledStore, v: &Version) {
    println!("version {} ({})", v.id, v.prompt);
    if let Some(parent) = &v.parent {
        println!("parent  {}", store.short_id(parent));
    }
    println!("author  {}", v.author);
    println!("date    {}", store::format_rfc3339(v.created_at));
    if !v.message.is_empty() {
        println!("message {}", v.message);
    }
    for (path, content) in &v.files {
        println!("\n==> {path} <==");
        print!("{content}");
        if !content.ends_with('\n') {
            println!();
        }
    }
}

pub fn show(
    project: &Project,
    cwd: &Path,
    reference: &str,
    format: OutputFormat,
) -> Result<Exit, CliError> {
    let store = project.open_store()?;
    let resolved = resolve(project, cwd, &store, reference)?;
    match (resolved, format) {
        (Resolved::Working(_), _) => Err(CliError::Usage(
            "`show working` is your editor's job; show takes a version, label or run".to_owned(),
        )),
        (Resolved::Version(v), OutputFormat::Text) => {
            print_version(&store, &v);
            Ok(Exit::Ok)
        }
        (Resolved::Version(v), OutputFormat::Json) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| CliError::Io(e.to_string()))?
            );
            Ok(Exit::Ok)
        }
        (Resolved::Run(run), format) => {
            let results = store.results(run.id)?;
            if format == OutputFormat::Json {
                let out = json!({ "run": run, "results": results });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out).map_err(|e| CliError::Io(e.to_string()))?
                );
                return Ok(Exit::Ok);
            }
            println!(
                "run {} of {} version {}",
                run.id,
                run.prompt,
                store.short_id(&run.version)
            );
            println!("backend {} ({})", run.backend, run.model);
            println!("status  {}", run.status);
            println!("started {}", store::format_rfc3339(run.started_at));
            if let Some(end) = run.ended_at {
                println!("ended   {}", store::format_rfc3339(end));
            }
            for r in &results {
                let verdict = match r.passed {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "-",
                };
                let cached = if r.cached { " (cached)" } else { "" };
                println!(
                    "\n--- case {} \"{}\" sample {}: {verdict}  {} ms  {}+{} tokens  ${:.6}{cached}",
                    r.case,
                    r.case_name,
                    r.sample,
                    r.latency_ms,
                    r.usage.input,
                    r.usage.output,
                    r.cost
                );
                if let Some(error) = &r.error {
                    println!("error: {error}");
                }
                println!("{}", r.output);
            }
            Ok(Exit::Ok)
        }
    }
}

pub fn restore(
    project: &Project,
    cwd: &Path,
    reference: &str,
    force: bool,
) -> Result<Exit, CliError> {
    let store = project.open_store()?;
    let version = match resolve(project, cwd, &store, reference)? {
        Resolved::Version(v) => *v,
        Resolved::Run(run) => store.get_version(&run.version)?.ok_or_else(|| {
            CliError::Usage(format!(
                "run {} refers to a version the store does not have",
                run.id
            ))
        })?,
        Resolved::Working(_) => {
            return Err(CliError::Usage(
                "restore takes a version, label or run, not `working`".to_owned(),
            ));
        }
    };
    let file = format!("{}.prompty", version.prompt);
    let current = if project.prompts_dir().join(&file).exists() {
        Some(
            library::unit_files(project, &file)
                .map_err(CliError::Diagnostics)?
                .0,
        )
    } else {
        None
    };
    if let Some(current) = &current {
        let id = store::hash::version_id(current);
        if id == version.id {
            println!(
                "{} is already at version {}",
                version.prompt,
                store.short_id(&version.id)
            );
            return Ok(Exit::Ok);
        }
        if !force && store.get_version(&id)?.is_none() {
            return Err(CliError::Usage(format!(
                "{} has uncommitted changes; commit them first (`promptdeck commit {}`) or pass --force to overwrite them",
                version.prompt, version.prompt
            )));
        }
    }
    let mut written = 0;
    for (path, content) in &version.files {
        let normalized = crate::prompt::normalize_name(path)
            .map_err(|e| CliError::Usage(format!("version holds a bad path: {e}")))?;
        let target = project.root.join(&normalized);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::Io(format!("{}: {e}", parent.display())))?;
        }
        write_atomically(&target, content.as_bytes())?;
        written += 1;
    }
    // A tests file the version did not have would otherwise be silently run against it.
    let tests = format!(
        "{}/{}{}",
        crate::project::PROMPTS_DIR,
        version.prompt,
        crate::prompt::TESTS_SUFFIX
    );
    if !version.files.contains_key(&tests) && project.root.join(&tests).exists() {
        std::fs::remove_file(project.root.join(&tests))
            .map_err(|e| CliError::Io(format!("{tests}: {e}")))?;
        println!("removed {tests} (the version has no tests file)");
    }
    println!(
        "restored {} to version {} ({written} files)",
        version.prompt,
        store.short_id(&version.id)
    );
    Ok(Exit::Ok)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Io(format!("{}: {e}", target.display()));
    let dir = target.parent().unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{file_name}.promptdeck-tmp-{}",
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(io)
}

pub fn label_set(
    project: &Project,
    cwd: &Path,
    name: &str,
    reference: &str,
) -> Result<Exit, CliError> {
    let store = project.open_store()?;
    let version = match resolve(project, cwd, &store, reference)? {
        Resolved::Version(v) => *v,
        Resolved::Run(run) => store.get_version(&run.version)?.ok_or_else(|| {
            CliError::Usage(format!("run {} refers to a missing version", run.id))
        })?,
        Resolved::Working(_) => {
            return Err(CliError::Usage(
                "a label points at a version; commit the working tree first".to_owned(),
            ));
        }
    };
    let entry = store.set_label(&version.prompt, name, &version.id, &author(project))?;
    let was = entry
        .from
        .as_ref()
        .map(|f| format!(" (was {})", store.short_id(f)))
        .unwrap_or_default();
    println!(
        "{}@{name} -> {}{was}",
        version.prompt,
        store.short_id(&version.id)
    );
    Ok(Exit::Ok)
}

pub fn label_list(project: &Project, cwd: &Path, prompt: Option<&str>) -> Result<Exit, CliError> {
    let prompt = prompt.map(|p| prompt_name(project, cwd, p)).transpose()?;
    let store = project.open_store()?;
    for label in store.list_labels(prompt.as_deref())? {
        println!(
            "{}@{}  {}  {}  {}",
            label.prompt,
            label.label,
            store.short_id(&label.version),
            short_time(label.at),
            label.by
        );
    }
    Ok(Exit::Ok)
}

pub fn label_log(
    project: &Project,
    cwd: &Path,
    name: &str,
    prompt: Option<&str>,
) -> Result<Exit, CliError> {
    let prompt = prompt.map(|p| prompt_name(project, cwd, p)).transpose()?;
    let store = project.open_store()?;
    let entries = store.label_log(name, prompt.as_deref())?;
    if entries.is_empty() {
        eprintln!("label `{name}` has never been set");
    }
    for e in entries {
        let from = e
            .from
            .as_ref()
            .map_or_else(|| "(new)".to_owned(), |f| store.short_id(f));
        println!(
            "{}  {}@{}  {from} -> {}  by {}",
            short_time(e.at),
            e.prompt,
            e.label,
            store.short_id(&e.to),
            e.by
        );
    }
    Ok(Exit::Ok)
}

pub fn runs(
    project: &Project,
    cwd: &Path,
    prompt: Option<&str>,
    format: OutputFormat,
) -> Result<Exit, CliError> {
    let prompt = prompt.map(|p| prompt_name(project, cwd, p)).transpose()?;
    let store = project.open_store()?;
    let runs = store.list_runs(prompt.as_deref())?;
    let mut rows = Vec::new();
    for run in runs {
        let results = store.results(run.id)?;
        let judged = results.iter().filter(|r| r.passed.is_some()).count();
        let passed = results.iter().filter(|r| r.passed == Some(true)).count();
        // A cached answer reports what it cost when generated; only fresh ones were spent now.
        let cost: f64 = results.iter().filter(|r| !r.cached).map(|r| r.cost).sum();
        rows.push((run, results.len(), passed, judged, cost));
    }
    if format == OutputFormat::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(run, count, passed, judged, cost)| {
                json!({
                    "id": run.id.to_string(),
                    "prompt": run.prompt,
                    "version": run.version,
                    "backend": run.backend,
                    "model": run.model,
                    "status": run.status.to_string(),
                    "started_at": store::format_rfc3339(run.started_at),
                    "ended_at": run.ended_at.map(store::format_rfc3339),
                    "results": count,
                    "passed": passed,
                    "judged": judged,
                    "cost": cost,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| CliError::Io(e.to_string()))?
        );
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        eprintln!("no runs yet");
    }
    for (run, count, passed, judged, cost) in rows {
        println!(
            "{}  {}  {}  {}  {}/{}  {}  {count} results, {passed}/{judged} passed, ${cost:.6}",
            store.short_run_id(run.id),
            short_time(run.started_at),
            run.prompt,
            store.short_id(&run.version),
            run.backend,
            run.model,
            run.status
        );
    }
    Ok(Exit::Ok)
}

pub fn export(project: &Project, out: Option<&Path>) -> Result<Exit, CliError> {
    let store = project.open_store()?;
    let mut buffer = Vec::new();
    store.export(&mut buffer)?;
    match out {
        Some(path) => {
            write_atomically(path, &buffer)?;
            eprintln!(
                "exported {} lines to {}",
                buffer.iter().filter(|&&b| b == b'\n').count(),
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&buffer)
                .map_err(|e| CliError::Io(format!("stdout: {e}")))?;
        }
    }
    Ok(Exit::Ok)
}

pub fn import(project: &Project, path: &Path) -> Result<Exit, CliError> {
    let store = project.open_store()?;
    let summary = if path == Path::new("-") {
        if std::io::stdin().is_terminal() {
            return Err(CliError::Usage(
                "import - reads an export from standard input; pipe one in".to_owned(),
            ));
        }
        store.import(&mut BufReader::new(std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
        store.import(&mut BufReader::new(file))
    }
    .map_err(|e| match e {
        // A located diagnostic like every other file error (it was printed after a second
        // `error:` prefix: "error: FILE:3:1: error: ...").
        store::StoreError::Import { line, message } => {
            CliError::Diagnostics(vec![crate::diagnostic::Diagnostic::error(
                path,
                crate::diagnostic::Position::new(line, 1),
                format!("{message}; nothing was imported"),
            )])
        }
        other => other.into(),
    })?;
    println!(
        "imported {}, {}, {}, {}, {}",
        plural(summary.versions, "version"),
        plural(summary.labels, "label"),
        plural(summary.label_log, "label move"),
        plural(summary.runs, "run"),
        plural(summary.results, "result")
    );
    Ok(Exit::Ok)
}
