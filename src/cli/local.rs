//! `promptdeck models` and `promptdeck tokenize`: what a prompt engineer checks about models.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{CliError, Exit, OutputFormat};
use crate::local::inspect::Inspector;
use crate::local::models::{self, ModelSource};
use crate::project::{BackendKind, Project};

/// The GGUF file a local backend uses, fetched on first use.
pub fn local_model_path(
    project: Option<&Project>,
    backend: Option<&str>,
) -> Result<(PathBuf, ModelSource), CliError> {
    let configured = project.and_then(|p| {
        let name = backend.unwrap_or(&p.config.default_backend);
        p.config
            .backends
            .get(name)
            .filter(|b| b.kind == BackendKind::Local)
            .and_then(|b| b.model.as_ref())
            .map(|m| p.root.join(m))
    });
    models::ensure_default(configured.as_deref()).map_err(|e| CliError::Usage(e.to_string()))
}

pub fn tokenize(
    project: Option<&Project>,
    text: &str,
    format: OutputFormat,
    model: Option<&Path>,
) -> Result<Exit, CliError> {
    let path = match model {
        Some(path) => path.to_path_buf(),
        None => local_model_path(project, None)?.0,
    };
    let inspector =
        Inspector::open(&path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let tokens = inspector.tokenize(text).map_err(CliError::Usage)?;
    match format {
        OutputFormat::Json => {
            let list: Vec<_> = tokens
                .iter()
                .map(|(id, piece)| json!({"id": id, "piece": piece}))
                .collect();
            let out = json!({"model": path.file_name().map(|n| n.to_string_lossy()), "count": tokens.len(), "tokens": list});
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| CliError::Io(e.to_string()))?
            );
        }
        OutputFormat::Text => {
            for (id, piece) in &tokens {
                println!("{id:>7}  {piece:?}");
            }
            eprintln!("{} tokens", tokens.len());
        }
    }
    Ok(Exit::Ok)
}

pub fn models(project: &Project, format: OutputFormat, remote: bool) -> Result<Exit, CliError> {
    let mut backends = Vec::new();
    for (name, raw) in &project.config.backends {
        let mut entry = json!({"name": name, "kind": raw.kind.name(), "model": raw.model});
        if let Some(config) = project.api_backend_config(name).map_err(CliError::Usage)? {
            entry["base_url"] = json!(config.base_url());
            entry["api_key_env"] = json!(config.api_key_env());
            if remote {
                let listed = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| CliError::Io(e.to_string()))?
                    .block_on(async {
                        let backend = crate::backend::build(&config, None)?;
                        backend.list_models().await
                    });
                entry["remote_models"] = match listed {
                    Ok(models) => json!(models),
                    Err(e) => json!({"error": e.to_string()}),
                };
            }
        } else {
            entry["threads"] = json!(raw.threads);
            entry["exact"] = json!(raw.exact.unwrap_or(false));
        }
        backends.push(entry);
    }
    let mut local = Vec::new();
    let configured = project
        .config
        .backends
        .values()
        .filter(|b| b.kind == BackendKind::Local)
        .filter_map(|b| b.model.as_ref())
        .map(|m| project.root.join(m))
        .collect::<Vec<_>>();
    let mut candidates: Vec<(PathBuf, ModelSource)> = configured
        .into_iter()
        .map(|p| (p, ModelSource::Configured))
        .collect();
    if let Ok(Some(found)) = models::locate_default(None) {
        candidates.push(found);
    }
    candidates.extend(
        models::gguf_files_in_data_dir()
            .into_iter()
            .map(|p| (p, ModelSource::DataDir)),
    );
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|(path, _)| seen.insert(path.clone()));
    for (path, source) in candidates {
        match crate::local::GgufModel::open(&path) {
            Ok(gguf) => {
                let info = gguf.info.clone();
                local.push(json!({
                    "path": path,
                    "source": source.describe(),
                    "size_bytes": info.file_size,
                    "architecture": info.architecture.as_str(),
                    "quantization": info.quantization,
                    "parameters": info.parameter_count,
                    "context_length": info.context_length,
                    "chat_template": info.has_chat_template,
                    "weights_in_memory": weights_in_memory(&gguf),
                }));
            }
            Err(e) => local
                .push(json!({"path": path, "source": source.describe(), "error": e.to_string()})),
        }
    }
    if format == OutputFormat::Json {
        let out = json!({"backends": backends, "local_models": local});
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| CliError::Io(e.to_string()))?
        );
        return Ok(Exit::Ok);
    }
    println!("backends (promptdeck.toml):");
    for b in &backends {
        let model = b["model"].as_str().unwrap_or("(embedded default)");
        let default = if b["name"] == project.config.default_backend.as_str() {
            "  [default]"
        } else {
            ""
        };
        println!(
            "  {:<20} {:<10} {model}{default}",
            b["name"].as_str().unwrap_or(""),
            b["kind"].as_str().unwrap_or("")
        );
        if let Some(list) = b["remote_models"].as_array() {
            println!(
                "    available: {}",
                list.iter()
                    .filter_map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else if let Some(error) = b["remote_models"]["error"].as_str() {
            println!("    cannot list models: {error}");
        }
    }
    println!("local models:");
    if local.is_empty() {
        println!("  none found yet; the default model is fetched on first use");
    }
    for m in &local {
        if let Some(error) = m["error"].as_str() {
            println!("  {}  error: {error}", m["path"].as_str().unwrap_or(""));
            continue;
        }
        println!(
            "  {}\n    {}, {} parameters, {}, context {}, chat template: {}, {:.1} MB ({})\n    in memory: {}",
            m["path"].as_str().unwrap_or(""),
            m["architecture"].as_str().unwrap_or(""),
            m["parameters"],
            m["quantization"].as_str().unwrap_or(""),
            m["context_length"],
            if m["chat_template"] == true {
                "yes"
            } else {
                "no (ChatML fallback)"
            },
            m["size_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            m["source"].as_str().unwrap_or(""),
            m["weights_in_memory"].as_str().unwrap_or(""),
        );
    }
    Ok(Exit::Ok)
}

/// The engine and weight layout the local backend will use for a model, by `exact` setting.
fn weights_in_memory(gguf: &crate::local::GgufModel) -> String {
    use crate::local::WeightMode;
    match crate::local::engine::planned_weight_modes(gguf) {
        Ok((WeightMode::Native, _)) => {
            "native kernels (llama.cpp's CPU numerics), weights as stored; `exact` changes nothing".to_string()
        }
        Ok((WeightMode::RepackedQ8_0, _)) => {
            "candle, Q4_1 repacked to Q8_0 (default: faster, drifts from llama.cpp); `exact = true` keeps Q4_1 (slower, closer)".to_string()
        }
        Ok((default, _)) => default.describe().to_string(),
        Err(e) => format!("unknown: {e}"),
    }
}
