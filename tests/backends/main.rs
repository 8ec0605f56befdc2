//! Wire-protocol tests of every backend against loopback servers speaking each provider's
//! format byte for byte.

mod anthropic;
mod common;
mod gemini;
mod openai;
mod server;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use promptdeck::backend::{BackendConfig, ChatRequest, Kind, Message, Role};

/// Sets a test's own key variable (each test uses a distinct name, so parallel tests do not
/// race on one variable).
pub fn set_key(var: &str, value: &str) {
    // SAFETY: every test writes only its own, uniquely named variable, and nothing in this
    // process reads the environment through libc concurrently (addresses are IP literals).
    unsafe { std::env::set_var(var, value) };
}

pub fn config(kind: Kind, url: &str, key_var: &str) -> BackendConfig {
    let mut c = BackendConfig::new("test", kind, "test-model");
    c.base_url = Some(url.to_string());
    c.api_key_env = Some(key_var.to_string());
    c.backoff_base = Duration::from_millis(10);
    c.timeout = Duration::from_secs(5);
    c
}

pub fn request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, text),
        ],
        ..Default::default()
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pd-backend-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
