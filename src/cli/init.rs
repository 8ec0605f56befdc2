//! `promptdeck init [DIR]`: creates a project without ever overwriting what is there.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::project::{CONFIG_FILE, DATA_DIR, PROMPTS_DIR};

const CONFIG_TEMPLATE: &str = include_str!("init_files/promptdeck.toml");
const EXAMPLE_PROMPT: &str = include_str!("init_files/hello.prompty");
const EXAMPLE_TESTS: &str = include_str!("init_files/hello.tests.yaml");

/// What `init` did, for its report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InitReport {
    pub created: Vec<PathBuf>,
    pub gitignore_updated: bool,
}

pub fn run(dir: &Path) -> Result<InitReport, CliError> {
    let io = |path: &Path, e: std::io::Error| CliError::Io(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut report = InitReport::default();

    let config = dir.join(CONFIG_FILE);
    if !config.exists() {
        std::fs::write(&config, CONFIG_TEMPLATE).map_err(|e| io(&config, e))?;
        report.created.push(config);
    }
    let prompts = dir.join(PROMPTS_DIR);
    if !prompts.exists() {
        std::fs::create_dir_all(&prompts).map_err(|e| io(&prompts, e))?;
        for (name, text) in [
            ("hello.prompty", EXAMPLE_PROMPT),
            ("hello.tests.yaml", EXAMPLE_TESTS),
        ] {
            let path = prompts.join(name);
            std::fs::write(&path, text).map_err(|e| io(&path, e))?;
            report.created.push(path);
        }
    }
    let gitignore = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&gitignore) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&gitignore, e)),
    };
    let entry = format!("/{DATA_DIR}/");
    let ignored = existing.lines().any(|line| {
        let line = line.trim();
        line == entry
            || line == format!("{DATA_DIR}/")
            || line == DATA_DIR
            || line == format!("/{DATA_DIR}")
    });
    if !ignored {
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# promptdeck's local store and caches\n");
        text.push_str(&entry);
        text.push('\n');
        std::fs::write(&gitignore, text).map_err(|e| io(&gitignore, e))?;
        report.gitignore_updated = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_idempotent_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".gitignore"), "target").unwrap();
        let first = run(dir.path()).unwrap();
        assert_eq!(first.created.len(), 3);
        assert!(first.gitignore_updated);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".gitignore")).unwrap(),
            "target\n# promptdeck's local store and caches\n/.promptdeck/\n"
        );
        std::fs::write(dir.path().join(CONFIG_FILE), "# mine\n").unwrap();
        let second = run(dir.path()).unwrap();
        assert_eq!(second, InitReport::default());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap(),
            "# mine\n"
        );
    }

    #[test]
    fn the_template_config_is_valid() {
        crate::project::Config::parse(CONFIG_TEMPLATE, Path::new(CONFIG_FILE)).unwrap();
    }
}
