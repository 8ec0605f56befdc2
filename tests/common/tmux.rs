//! The real binary in a real terminal: a tmux session driven with send-keys and read with
//! capture-pane.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Panics with `why` and how to install tmux when it cannot run here.
pub fn assert_available(why: &str) {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{why}");
}

/// `tmux`, talking to the server on `socket` (`-L`) or to the default one.
pub fn command(socket: Option<&str>) -> Command {
    let mut command = Command::new("tmux");
    if let Some(socket) = socket {
        command.args(["-L", socket]);
    }
    command
}

/// A detached tmux session, killed on drop.
pub struct Session {
    pub name: String,
    socket: Option<String>,
    /// The pause after each key press: an Esc followed at once by a key reads as Alt+key.
    pub key_pause: Duration,
    /// How often `wait_for` reads the screen.
    pub poll: Duration,
}

impl Session {
    /// Starts session `name` of `width` x `height` in `root`, running `shell`.
    pub fn start(
        socket: Option<&str>,
        name: String,
        root: &Path,
        shell: &str,
        (width, height): (u16, u16),
    ) -> Session {
        let status = command(socket)
            .args(["new-session", "-d", "-s", &name, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg("-c")
            .arg(root)
            .arg(shell)
            .status()
            .expect("run tmux new-session (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        Session {
            name,
            socket: socket.map(str::to_owned),
            key_pause: Duration::from_millis(60),
            poll: Duration::from_millis(100),
        }
    }

    /// Runs tmux with `args` on this session's server; its stdout.
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = command(self.socket.as_deref())
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses each key in turn.
    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            let status = command(self.socket.as_deref())
                .args(["send-keys", "-t", &self.name, key])
                .status()
                .expect("tmux send-keys");
            assert!(status.success(), "tmux send-keys {key}");
            std::thread::sleep(self.key_pause);
        }
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        let status = command(self.socket.as_deref())
            .args(["send-keys", "-t", &self.name, "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success(), "tmux send-keys -l {text:?}");
        std::thread::sleep(self.key_pause);
    }

    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// A tmux format (`#{pane_pid}`, ...) expanded for this session.
    pub fn display(&self, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", &self.name, format])
            .trim()
            .to_owned()
    }

    /// Waits until every needle is on the screen; panics with the screen otherwise.
    pub fn wait_for(&self, needles: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for {needles:?}; the screen:\n{screen}"
            );
            std::thread::sleep(self.poll);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The session is gone already when its process was killed.
        let _ = command(self.socket.as_deref())
            .args(["kill-session", "-t", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}
