//! A disk cache of finished completions: one JSON file per request, named by its key.
//!
//! The key is a SHA-256 over everything that changes the answer (provider kind, base URL,
//! model, messages, parameters, extra body fields, sample index) and nothing secret: API keys,
//! headers and query values never enter it or the files. Files are written to a temporary name
//! and renamed, so a crash or a concurrent run never leaves a half-written entry under a key.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::config::Kind;
use super::error::BackendError;
use super::types::{ChatRequest, FinishReason, Usage};

/// Bumped when the key recipe or the entry format changes, so old entries are simply missed.
pub(crate) const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub model: String,
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// Sorts object keys at every level, so `extra` maps built in a different order hash the same.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k, canonical(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache key of a request; `model` is the model actually asked for.
    pub fn key(kind: Kind, base_url: &str, model: &str, req: &ChatRequest) -> String {
        let recipe = serde_json::json!({
            "format": FORMAT,
            "kind": kind.as_str(),
            "base_url": base_url,
            "model": model,
            "messages": req.messages,
            "parameters": req.parameters,
            "extra": Value::Object(req.extra.clone()),
            "sample_index": req.sample_index,
        });
        let bytes = canonical(recipe).to_string();
        let digest = Sha256::digest(bytes.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The entry for `key`; an unreadable or foreign-format file is a miss, and is overwritten
    /// by the next store.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        let bytes = tokio::fs::read(self.path(key)).await.ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.format == FORMAT).then_some(entry)
    }

    pub async fn put(&self, key: &str, entry: &Entry) -> Result<(), BackendError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let fail = |what: &str, e: std::io::Error| {
            BackendError::Cache(format!("{what} {}: {e}", self.dir.display()))
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| fail("cannot create", e))?;
        let bytes = serde_json::to_vec_pretty(entry)
            .map_err(|e| BackendError::Cache(format!("cannot encode entry: {e}")))?;
        let tmp = self.dir.join(format!(
            ".{key}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = tokio::fs::write(&tmp, &bytes).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(fail("cannot write into", e));
        }
        if let Err(e) = tokio::fs::rename(&tmp, self.path(key)).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(fail("cannot rename into", e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::types::{Message, Role};

    fn req() -> ChatRequest {
        ChatRequest {
            messages: vec![Message::new(Role::User, "hi")],
            ..Default::default()
        }
    }

    #[test]
    fn key_depends_on_what_changes_the_answer() {
        let base = Cache::key(Kind::OpenAi, "http://x", "m", &req());
        assert_eq!(base.len(), 64);
        assert_eq!(base, Cache::key(Kind::OpenAi, "http://x", "m", &req()));
        assert_ne!(base, Cache::key(Kind::Anthropic, "http://x", "m", &req()));
        assert_ne!(base, Cache::key(Kind::OpenAi, "http://y", "m", &req()));
        assert_ne!(base, Cache::key(Kind::OpenAi, "http://x", "n", &req()));
        let mut r = req();
        r.sample_index = 1;
        assert_ne!(base, Cache::key(Kind::OpenAi, "http://x", "m", &r));
        let mut r = req();
        r.parameters.temperature = Some(0.5);
        assert_ne!(base, Cache::key(Kind::OpenAi, "http://x", "m", &r));
        let mut r = req();
        r.no_cache = true;
        assert_eq!(base, Cache::key(Kind::OpenAi, "http://x", "m", &r));
    }

    #[test]
    fn extra_order_does_not_matter() {
        let mut a = req();
        a.extra.insert("x".into(), 1.into());
        a.extra.insert("y".into(), 2.into());
        let mut b = req();
        b.extra.insert("y".into(), 2.into());
        b.extra.insert("x".into(), 1.into());
        assert_eq!(
            Cache::key(Kind::OpenAi, "u", "m", &a),
            Cache::key(Kind::OpenAi, "u", "m", &b)
        );
    }
}
