//! Opens the fixture's HTML report in headless Chromium (Debian's `chromium` package), as the
//! issue's "done when" asks: the page must parse and render without console errors, its SVG
//! must hold one polygon per backend and one bar per histogram bin per backend, and a
//! screenshot is written for review. Skipped, with a note, where no Chromium is installed; set
//! `PROMPTDECK_REQUIRE_BROWSER=1` (CI) to make a missing browser a failure instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use promptdeck::compare::{
    CompareOptions, HtmlOptions, compare, fixture::sample_results, render_html,
};

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs a command, killing it after `limit` (a headless browser can hang on a broken setup).
fn run(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let id = child.id();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            // Only the child we started, by its id.
            let _ = Command::new("kill").arg(id.to_string()).status();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    waiter
        .join()
        .expect("waiter thread")
        .expect("chromium output")
}

fn chromium(browser: &Path, profile: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    run(cmd, Duration::from_secs(90))
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(browser) = find_chromium() else {
        assert!(
            std::env::var_os("PROMPTDECK_REQUIRE_BROWSER").is_none(),
            "PROMPTDECK_REQUIRE_BROWSER is set but no chromium was found"
        );
        eprintln!("skipped: no chromium on PATH (set CHROMIUM=/path/to/chromium)");
        return;
    };
    let report = compare(&sample_results(), &CompareOptions::default());
    let html = render_html(&report, &HtmlOptions::default());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let page = dir.join("report.html");
    std::fs::write(&page, &html).expect("write report");
    let url = format!("file://{}", page.display());
    let profile = dir.join("profile");

    // The DOM after parsing: counts come from what the browser built, not from our string.
    let dom = chromium(&browser, &profile, &["--dump-dom", &url]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "chromium failed: {stderr}");
    assert!(
        !stderr.contains("CONSOLE"),
        "console messages while loading the report: {stderr}"
    );
    let count = |needle: &str| dom_text.matches(needle).count();
    assert_eq!(count(r#"class="radar-backend""#), report.backends.len());
    let bins = report.latency_histogram.bins() + report.cost_histogram.bins();
    assert_eq!(count(r#"class="bar""#), bins * report.backends.len());

    let shot = dir.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &browser,
        &profile,
        &[
            "--window-size=1000,2600",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot: {}", shot.display());
}
