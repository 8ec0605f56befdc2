//! Helpers shared by the integration tests: temporary projects and running the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod tmux;

pub struct TempProject {
    pub dir: tempfile::TempDir,
}

impl TempProject {
    /// An empty project: a default promptdeck.toml and an empty prompts/ folder.
    pub fn new() -> Self {
        Self::with_config("[defaults]\nbackend = \"local\"\n")
    }

    pub fn with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("promptdeck.toml"), config).expect("write config");
        std::fs::create_dir_all(dir.path().join("prompts")).expect("prompts dir");
        TempProject { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file relative to the project root, creating folders.
    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let full = self.root().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, content).expect("write");
        full
    }

    /// Runs promptdeck inside the project.
    pub fn run(&self, args: &[&str]) -> Run {
        run_in(self.root(), args)
    }
}

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_promptdeck"));
    command
        .env_remove("PROMPTDECK_PROJECT")
        .env("NO_COLOR", "1");
    command
}

/// The binary, seeing no installed model: `data` as promptdeck's data directory and `hub` as the
/// Hugging Face cache, no `$PROMPTDECK_MODEL`, no user-site Python packages.
pub fn binary_without_installed_models(data: &Path, hub: &Path) -> Command {
    let mut command = binary();
    command
        .env("PROMPTDECK_DATA_DIR", data)
        .env("HF_HOME", hub)
        .env("HF_HUB_CACHE", hub)
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("PROMPTDECK_MODEL")
        .env("PYTHONNOUSERSITE", "1");
    command
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let output = binary()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promptdeck");
    Run::from(output)
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The repository root, which is itself a promptdeck project holding the shipped library.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A multi-threaded tokio runtime for the loopback servers a test starts.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The geography prompt that the backend tests run (`ask`, one `city` input).
pub const ASK_PROMPT: &str = "---
name: ask
model:
  parameters:
    temperature: 0
    max_tokens: 64
inputs:
  city: {type: string}
sample:
  city: Paris
---
system:
You answer geography questions in one sentence.

user:
Which country is {{ city }} in?
";

/// The value paired with `key` (a provider's server, ...); panics when there is none.
pub fn paired<'a, K: PartialEq, V>(pairs: &'a [(K, V)], key: &K) -> &'a V {
    &pairs
        .iter()
        .find(|(k, _)| k == key)
        .expect("a value paired with the key")
        .1
}
