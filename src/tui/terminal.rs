//! The terminal edge: raw mode and the alternate screen, the event loop, `$EDITOR`.
//!
//! One `tokio::select!` waits on crossterm's `EventStream`, the workers' channel and, only when
//! something changed, a frame deadline: input draws at once, streamed tokens coalesce into at
//! most one frame per [`FRAME`], and an idle workbench draws nothing. While the TUI runs,
//! stderr points at `.promptdeck/tui.log`, so nothing a library or a model fetch prints can
//! scribble over the screen; a panic restores the terminal before its message is printed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream, KeyCode, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::{Backend as TermBackend, CrosstermBackend};
use tokio::sync::mpsc;

use super::app::{App, Buffer, Effect, Mouse, MouseKind, Msg, Setup};
use super::keymap::{Key, KeyChord, Keymap};
use super::theme::{self, Theme};
use super::worker::{Worker, tests_file_name};
use crate::cli::{CliError, Exit};
use crate::project::Project;

/// The shortest time between two frames drawn for streamed output.
pub const FRAME: Duration = Duration::from_millis(16);

/// `promptdeck tui` options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub theme: Option<String>,
}

/// Reads keymap overrides: `~/.config/promptdeck/keymap.toml`, then `[keys]` of promptdeck.toml.
pub fn load_keymap(project: &Project) -> Result<Keymap, CliError> {
    let mut keymap = Keymap::default_keymap();
    if let Some(dirs) = directories::ProjectDirs::from("", "", "promptdeck") {
        let user = dirs.config_dir().join("keymap.toml");
        if let Ok(text) = std::fs::read_to_string(&user) {
            keymap
                .overlay_text(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", user.display())))?;
        }
    }
    if !project.config.keys.is_empty() {
        keymap
            .overlay(&project.config.keys)
            .map_err(|e| CliError::Usage(format!("promptdeck.toml [keys]: {e}")))?;
    }
    Ok(keymap)
}

pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Loads a theme, honouring NO_COLOR.
pub fn load_theme(project: &Project, name: &str) -> Result<Theme, String> {
    let theme = theme::load(name, Some(&project.root.join("themes"))).map_err(|e| e.to_string())?;
    Ok(if no_color() {
        theme.without_colour()
    } else {
        theme
    })
}

/// The app as it starts on a project: no IO but listing the prompt files.
pub fn setup(
    project: &Project,
    keymap: Keymap,
    theme: &str,
    width: u16,
    height: u16,
) -> Result<Setup, CliError> {
    let prompts = project.list_prompts()?;
    Ok(Setup {
        keymap,
        project_name: project
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        backends: project.config.backends.keys().cloned().collect(),
        default_backend: project.config.default_backend.clone(),
        themes: theme::available(Some(&project.root.join("themes"))),
        theme: theme.to_owned(),
        no_color: no_color(),
        prompts,
        width,
        height,
    })
}

/// The terminal's stderr while [`StderrToLog`] points fd 2 at the log (-1 otherwise), so the
/// panic hook can print where the user sees it.
static SAVED_STDERR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Points stderr at a log file for the life of the value.
struct StderrToLog {
    saved: libc::c_int,
}

impl StderrToLog {
    fn start(log: &Path) -> Option<StderrToLog> {
        use std::os::fd::AsRawFd;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).ok()?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .ok()?;
        // SAFETY: dup/dup2 on descriptors this process owns; the file stays open until dup2
        // has made fd 2 a second reference to it.
        unsafe {
            let saved = libc::dup(2);
            if saved < 0 {
                return None;
            }
            if libc::dup2(file.as_raw_fd(), 2) < 0 {
                libc::close(saved);
                return None;
            }
            SAVED_STDERR.store(saved, std::sync::atomic::Ordering::SeqCst);
            Some(StderrToLog { saved })
        }
    }

    fn pause(&self) {
        // SAFETY: `saved` is a descriptor this value owns.
        unsafe {
            libc::dup2(self.saved, 2);
        }
    }
}

impl Drop for StderrToLog {
    fn drop(&mut self) {
        SAVED_STDERR.store(-1, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: restores the descriptor saved in `start` and closes our copy.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
    }
}

fn enter_terminal() -> io::Result<()> {
    enable_raw_mode()?;
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )
}

fn leave_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Converts a crossterm event; `None` for events the app ignores.
pub fn to_msg(event: Event) -> Option<Msg> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => {
            let k = match key.code {
                KeyCode::Char(c) => Key::Char(c),
                KeyCode::F(n) => Key::F(n),
                KeyCode::Enter => Key::Enter,
                KeyCode::Esc => Key::Esc,
                KeyCode::Tab => Key::Tab,
                KeyCode::BackTab => Key::BackTab,
                KeyCode::Backspace => Key::Backspace,
                KeyCode::Delete => Key::Delete,
                KeyCode::Up => Key::Up,
                KeyCode::Down => Key::Down,
                KeyCode::Left => Key::Left,
                KeyCode::Right => Key::Right,
                KeyCode::Home => Key::Home,
                KeyCode::End => Key::End,
                KeyCode::PageUp => Key::PageUp,
                KeyCode::PageDown => Key::PageDown,
                _ => return None,
            };
            let m = key.modifiers;
            Some(Msg::Key(KeyChord::new(
                k,
                m.contains(KeyModifiers::CONTROL),
                m.contains(KeyModifiers::ALT),
                m.contains(KeyModifiers::SHIFT),
            )))
        }
        Event::Paste(text) => Some(Msg::Paste(text)),
        Event::Resize(w, h) => Some(Msg::Resize(w, h)),
        Event::Mouse(m) => {
            let kind = match m.kind {
                MouseEventKind::Down(MouseButton::Left) => MouseKind::Down,
                MouseEventKind::ScrollUp => MouseKind::ScrollUp,
                MouseEventKind::ScrollDown => MouseKind::ScrollDown,
                _ => return None,
            };
            Some(Msg::Mouse(Mouse {
                kind,
                col: m.column,
                row: m.row,
            }))
        }
        _ => None,
    }
}

/// Runs the workbench on a project until the user quits.
pub fn run(project: Project, options: &Options) -> Result<Exit, CliError> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "the workbench needs a terminal; use a subcommand (`promptdeck --help`) in scripts"
                .to_owned(),
        ));
    }
    crate::backend::install_crypto_provider();
    let keymap = load_keymap(&project)?;
    let theme_name = options
        .theme
        .clone()
        .or_else(|| project.config.theme.clone())
        .unwrap_or_else(|| theme::DEFAULT_THEME.to_owned());
    let theme = load_theme(&project, &theme_name).map_err(CliError::Usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?;

    let log = project.root.join(".promptdeck").join("tui.log");
    let redirect = StderrToLog::start(&log);
    let default_hook = Arc::new(std::panic::take_hook());
    {
        let hook = Arc::clone(&default_hook);
        std::panic::set_hook(Box::new(move |info| {
            leave_terminal();
            let saved = SAVED_STDERR.load(std::sync::atomic::Ordering::SeqCst);
            if saved >= 0 {
                // SAFETY: `saved` is the terminal's stderr, kept open by `StderrToLog`.
                unsafe {
                    libc::dup2(saved, 2);
                }
            }
            hook(info);
        }));
    }
    enter_terminal().map_err(|e| CliError::Io(format!("cannot set up the terminal: {e}")))?;
    let result = runtime.block_on(event_loop(project, keymap, theme, redirect.as_ref()));
    leave_terminal();
    drop(redirect);
    // Dropping the runtime waits for blocking tasks; a model thread may be mid-token.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result.map(|()| Exit::Ok)
}

async fn event_loop(
    project: Project,
    keymap: Keymap,
    mut theme: Theme,
    redirect: Option<&StderrToLog>,
) -> Result<(), CliError> {
    let io_err = |e: io::Error| CliError::Io(format!("terminal: {e}"));
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout())).map_err(io_err)?;
    let size = terminal.size().map_err(io_err)?;
    let project = Arc::new(project);
    let setup = setup(&project, keymap, &theme.name, size.width, size.height)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut worker = Worker::new(Arc::clone(&project), tx.clone());
    let (mut app, effects) = App::new(setup);
    terminal.clear().map_err(io_err)?;
    draw(&mut terminal, &app, &theme)?;
    let mut events = EventStream::new();
    let mut pending = effects;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        // Effects the loop performs itself change what is on screen: draw after them.
        let mut redraw = false;
        for effect in std::mem::take(&mut pending) {
            redraw |= matches!(effect, Effect::SetTheme(_) | Effect::ExternalEditor { .. });
            match effect {
                Effect::Quit => {}
                Effect::SetTheme(name) => match load_theme(&project, &name) {
                    Ok(t) => {
                        theme = t;
                        pending.extend(app.handle(Msg::ThemeApplied(name)));
                    }
                    Err(e) => pending.extend(app.handle(Msg::Failed(e))),
                },
                Effect::ExternalEditor { file_name, buffer } => {
                    drop(events);
                    let msg = external_editor(&project, &file_name, buffer, redirect);
                    terminal.clear().map_err(io_err)?;
                    events = EventStream::new();
                    pending.extend(app.handle(msg));
                }
                other => worker.perform(other),
            }
        }
        if app.quit {
            return Ok(());
        }
        if redraw {
            // The effects' own messages may have asked for more work.
            for effect in std::mem::take(&mut pending) {
                worker.perform(effect);
            }
            draw(&mut terminal, &app, &theme)?;
        }
        let mut input = false;
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    if let Some(msg) = to_msg(event) {
                        pending = app.handle(msg);
                        input = true;
                    }
                }
                Some(Err(e)) => return Err(io_err(e)),
                None => return Ok(()),
            },
            Some(msg) = rx.recv() => {
                pending = app.handle(msg);
                // Drain what else arrived, so a burst of tokens costs one frame.
                while let Ok(msg) = rx.try_recv() {
                    pending.extend(app.handle(msg));
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + FRAME);
            },
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                deadline = None;
                draw(&mut terminal, &app, &theme)?;
            },
        }
        if input {
            deadline = None;
            draw(&mut terminal, &app, &theme)?;
        }
    }
}

/// Draws one frame of the app.
pub fn draw<B: TermBackend>(
    terminal: &mut Terminal<B>,
    app: &App,
    theme: &Theme,
) -> Result<(), CliError> {
    terminal
        .draw(|frame| super::view::draw(frame, app, theme))
        .map(|_| ())
        .map_err(|e| CliError::Io(format!("terminal: {e}")))
}

/// Suspends the TUI, runs `$VISUAL`/`$EDITOR` (default `vi`) on the file, resumes, and reads the
/// files back.
fn external_editor(
    project: &Project,
    file_name: &str,
    buffer: Buffer,
    redirect: Option<&StderrToLog>,
) -> Msg {
    let prompts = project.prompts_dir();
    let path: PathBuf = match buffer {
        Buffer::Prompt => prompts.join(file_name),
        Buffer::Tests => prompts.join(tests_file_name(file_name)),
    };
    let editor = std::env::var("VISUAL")
        .ok()
        .or_else(|| std::env::var("EDITOR").ok())
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    leave_terminal();
    if let Some(r) = redirect {
        r.pause();
    }
    // Through the shell, so EDITOR may carry arguments (`code --wait`).
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status();
    let _ = io::stdout().flush();
    if let Some(r) = redirect {
        // Re-point stderr at the log: start() again keeps the saved terminal descriptor.
        let log = project.root.join(".promptdeck").join("tui.log");
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            use std::os::fd::AsRawFd;
            // SAFETY: fd 2 and an open file this function owns.
            unsafe {
                libc::dup2(file.as_raw_fd(), 2);
            }
        }
        let _ = r;
    }
    if let Err(e) = enter_terminal() {
        return Msg::Failed(format!("cannot restore the terminal: {e}"));
    }
    if let Err(e) = status {
        return Msg::Failed(format!("cannot run {editor}: {e}"));
    }
    let read = |p: &Path| crate::user_file::read_text(p).ok();
    let tests_path = prompts.join(tests_file_name(file_name));
    match read(&prompts.join(file_name)) {
        Some(prompt) => Msg::ExternalEditDone {
            file_name: file_name.to_owned(),
            prompt,
            tests: read(&tests_path),
        },
        None => Msg::Failed(format!("cannot read {} after editing", path.display())),
    }
}
