//! Key chords, the named actions they trigger, and the declarative keymap that joins them.
//!
//! PURE: no terminal types. The terminal loop converts crossterm's key events into
//! [`KeyChord`]s; everything else (the state machine, the help overlay, the command palette, the
//! README's table) reads this one table, so a binding shown anywhere is the binding in force.
//! The default keymap is `keymap.toml` beside this file, embedded at build time.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The embedded default keymap.
pub const DEFAULT_KEYMAP: &str = include_str!("keymap.toml");

/// A named key without modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
}

/// A key with its modifiers, normalised so that equal presses compare equal: a character
/// carries its own case and never `shift`; `ctrl` combinations use the lower-case letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyChord {
    pub key: Key,
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
}

impl KeyChord {
    /// A chord, normalised.
    pub fn new(key: Key, ctrl: bool, alt: bool, shift: bool) -> KeyChord {
        let (key, shift) = match key {
            Key::Char(c) if ctrl && c.is_ascii_uppercase() => {
                (Key::Char(c.to_ascii_lowercase()), true)
            }
            Key::Char(_) if !ctrl => (key, false),
            Key::BackTab => (Key::BackTab, false),
            Key::Tab if shift => (Key::BackTab, false),
            _ => (key, shift),
        };
        KeyChord {
            key,
            ctrl,
            alt,
            shift,
        }
    }

    pub fn plain(key: Key) -> KeyChord {
        KeyChord::new(key, false, false, false)
    }

    pub fn ctrl(c: char) -> KeyChord {
        KeyChord::new(Key::Char(c), true, false, false)
    }

    /// A printable character typed without ctrl or alt.
    pub fn typed_char(&self) -> Option<char> {
        match self.key {
            Key::Char(c) if !self.ctrl && !self.alt => Some(c),
            _ => None,
        }
    }

    /// Parses `ctrl-s`, `alt-enter`, `f1`, `?`, `space`, `shift-up`.
    pub fn parse(text: &str) -> Result<KeyChord, KeymapError> {
        let bad = || KeymapError::BadKey(text.to_owned());
        let (mut ctrl, mut alt, mut shift) = (false, false, false);
        let mut rest = text;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 1 {
                if let Some(r) = lower.strip_prefix("ctrl-") {
                    ctrl = true;
                    rest = &rest[rest.len() - r.len()..];
                    continue;
                }
                if let Some(r) = lower.strip_prefix("alt-") {
                    alt = true;
                    rest = &rest[rest.len() - r.len()..];
                    continue;
                }
                if let Some(r) = lower.strip_prefix("shift-") {
                    shift = true;
                    rest = &rest[rest.len() - r.len()..];
                    continue;
                }
            }
            break;
        }
        let mut chars = rest.chars();
        let key = match (chars.next(), chars.next()) {
            (Some(c), None) => Key::Char(c),
            (None, _) => return Err(bad()),
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" => Key::Enter,
                "esc" | "escape" => Key::Esc,
                "tab" => Key::Tab,
                "backtab" => Key::BackTab,
                "backspace" => Key::Backspace,
                "delete" | "del" => Key::Delete,
                "up" => Key::Up,
                "down" => Key::Down,
                "left" => Key::Left,
                "right" => Key::Right,
                "home" => Key::Home,
                "end" => Key::End,
                "pageup" => Key::PageUp,
                "pagedown" => Key::PageDown,
                "space" => Key::Char(' '),
                other => match other.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
                    Some(n @ 1..=12) => Key::F(n),
                    _ => return Err(bad()),
                },
            },
        };
        Ok(KeyChord::new(key, ctrl, alt, shift))
    }
}

impl fmt::Display for KeyChord {
    /// Short, as in the status bar and help: `^S`, `F1`, `Alt-R`, `Esc`, `Space`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("^")?;
        }
        if self.alt {
            f.write_str("Alt-")?;
        }
        if self.shift {
            f.write_str("Shift-")?;
        }
        match self.key {
            Key::Char(' ') => f.write_str("Space"),
            Key::Char(c) if self.ctrl => write!(f, "{}", c.to_ascii_uppercase()),
            Key::Char(c) => write!(f, "{c}"),
            Key::F(n) => write!(f, "F{n}"),
            Key::Enter => f.write_str("Enter"),
            Key::Esc => f.write_str("Esc"),
            Key::Tab => f.write_str("Tab"),
            Key::BackTab => f.write_str("Shift-Tab"),
            Key::Backspace => f.write_str("Backspace"),
            Key::Delete => f.write_str("Del"),
            Key::Up => f.write_str("Up"),
            Key::Down => f.write_str("Down"),
            Key::Left => f.write_str("Left"),
            Key::Right => f.write_str("Right"),
            Key::Home => f.write_str("Home"),
            Key::End => f.write_str("End"),
            Key::PageUp => f.write_str("PgUp"),
            Key::PageDown => f.write_str("PgDn"),
        }
    }
}

macro_rules! actions {
    ($($variant:ident => $name:literal, $help:literal;)*) => {
        /// Everything a key, the command palette or a mouse click can ask for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            /// Every action, in the order help and the palette list them.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The name used in keymap files.
            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name,)* }
            }

            /// One line for help and the command palette.
            pub fn help(self) -> &'static str {
                match self { $(Action::$variant => $help,)* }
            }
        }
    };
}

actions! {
    Quit => "quit", "Quit (asks when there are unsaved changes)";
    Help => "help", "Show or hide this help";
    CommandPalette => "command_palette", "Open the command palette";
    Save => "save", "Save the file and commit a version";
    Run => "run", "Run the selected case on the chosen backends";
    RunAll => "run_all", "Run every case on the chosen backends";
    Cancel => "cancel", "Cancel the run, close an overlay or clear the filter";
    FocusNext => "focus_next", "Focus the next pane";
    FocusPrev => "focus_prev", "Focus the previous pane";
    FocusTree => "focus_tree", "Focus the prompt tree";
    FocusEditor => "focus_editor", "Focus the editor";
    FocusPreview => "focus_preview", "Focus the preview";
    FocusCases => "focus_cases", "Focus the cases";
    FocusOutputs => "focus_outputs", "Focus the outputs";
    ViewMain => "view_main", "Main screen";
    ViewCompare => "view_compare", "Compare view (two outputs or versions)";
    ViewHistory => "view_history", "History of the selected prompt";
    ViewModels => "view_models", "Compare models: radar and bar charts from stored runs";
    ExternalEditor => "external_editor", "Open the file in $EDITOR";
    ToggleTestsFile => "toggle_tests_file", "Switch the editor between the prompt and its tests file";
    ChooseBackends => "choose_backends", "Choose the backends to run on";
    NextTheme => "next_theme", "Switch to the next theme";
    Undo => "undo", "Undo";
    Redo => "redo", "Redo";
    Search => "search", "Search in the file";
    SearchNext => "search_next", "Next search match";
    ToggleWrap => "toggle_wrap", "Soft wrap on or off";
    Up => "up", "Move up";
    Down => "down", "Move down";
    PageUp => "page_up", "Page up";
    PageDown => "page_down", "Page down";
    Select => "select", "Open the selected prompt";
    AddCase => "add_case", "Add a test case";
    DuplicateCase => "duplicate_case", "Duplicate the selected case";
    EditCase => "edit_case", "Edit the selected case's variables";
    CompareOutputs => "compare_outputs", "Compare the first two outputs of the case";
    MoreSamples => "more_samples", "One more sample per backend";
    FewerSamples => "fewer_samples", "One sample fewer per backend";
    NextChange => "next_change", "Jump to the next change";
    PrevChange => "prev_change", "Jump to the previous change";
    ToggleInline => "toggle_inline", "Side by side or inline";
    Mark => "mark", "Mark a version to compare";
    CompareVersions => "compare_versions", "Compare the marked version (or the working files) with the selected one";
    Restore => "restore", "Restore the selected version into the editor";
    SetLabel => "set_label", "Set a label on the selected version";
    RunMissing => "run_missing", "Run the open prompt's cases on the backends without a stored run";
    ToggleScope => "toggle_scope", "Compare on the open prompt or the whole library";
    ToggleHistogram => "toggle_histogram", "Latency or cost histogram";
}

/// Where a binding applies. `Global` bindings apply everywhere unless a context binds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    Global,
    Editor,
    Tree,
    Cases,
    Preview,
    Outputs,
    Compare,
    History,
    Models,
}

impl Context {
    pub const ALL: &'static [Context] = &[
        Context::Global,
        Context::Editor,
        Context::Tree,
        Context::Cases,
        Context::Preview,
        Context::Outputs,
        Context::Compare,
        Context::History,
        Context::Models,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::Editor => "editor",
            Context::Tree => "tree",
            Context::Cases => "cases",
            Context::Preview => "preview",
            Context::Outputs => "outputs",
            Context::Compare => "compare",
            Context::History => "history",
            Context::Models => "models",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    #[error("`{0}` is not a key (examples: ctrl-s, alt-r, f1, enter, ?)")]
    BadKey(String),
    #[error(
        "unknown context `{0}` (contexts: global, editor, tree, cases, preview, outputs, compare, history, models)"
    )]
    BadContext(String),
    #[error("unknown action `{action}` for key `{key}`; actions: {known}")]
    BadAction {
        key: String,
        action: String,
        known: String,
    },
    #[error("keymap is not valid TOML: {0}")]
    Toml(String),
}

/// Context -> key -> action, as written in a keymap file.
pub type RawKeymap = BTreeMap<String, BTreeMap<String, String>>;

/// The bindings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    bindings: BTreeMap<Context, BTreeMap<KeyChord, Action>>,
}

impl Keymap {
    /// The embedded default.
    pub fn default_keymap() -> Keymap {
        // The embedded file is tested by `default_keymap_parses`; an empty map is the only
        // fallback that cannot fail.
        Keymap::parse(DEFAULT_KEYMAP).unwrap_or(Keymap {
            bindings: BTreeMap::new(),
        })
    }

    /// A keymap file's text on its own.
    pub fn parse(text: &str) -> Result<Keymap, KeymapError> {
        let mut keymap = Keymap {
            bindings: BTreeMap::new(),
        };
        keymap.overlay_text(text)?;
        Ok(keymap)
    }

    /// Applies a keymap file's bindings over these.
    pub fn overlay_text(&mut self, text: &str) -> Result<(), KeymapError> {
        let raw: RawKeymap = toml::from_str(text).map_err(|e| KeymapError::Toml(e.to_string()))?;
        self.overlay(&raw)
    }

    /// Applies bindings over these; `"none"` removes a binding.
    pub fn overlay(&mut self, raw: &RawKeymap) -> Result<(), KeymapError> {
        for (context_name, keys) in raw {
            let context = Context::ALL
                .iter()
                .copied()
                .find(|c| c.name() == context_name)
                .ok_or_else(|| KeymapError::BadContext(context_name.clone()))?;
            for (key, action_name) in keys {
                let chord = KeyChord::parse(key)?;
                let table = self.bindings.entry(context).or_default();
                if action_name == "none" {
                    table.remove(&chord);
                    continue;
                }
                let action = Action::ALL
                    .iter()
                    .copied()
                    .find(|a| a.name() == action_name)
                    .ok_or_else(|| KeymapError::BadAction {
                        key: key.clone(),
                        action: action_name.clone(),
                        known: Action::ALL
                            .iter()
                            .map(|a| a.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                table.insert(chord, action);
            }
        }
        Ok(())
    }

    /// The action of `chord` in `context`, falling back to the global table.
    pub fn lookup(&self, context: Context, chord: &KeyChord) -> Option<Action> {
        self.bindings
            .get(&context)
            .and_then(|t| t.get(chord))
            .or_else(|| self.bindings.get(&Context::Global)?.get(chord))
            .copied()
    }

    /// The action bound in `context` only (no global fallback).
    pub fn lookup_local(&self, context: Context, chord: &KeyChord) -> Option<Action> {
        self.bindings.get(&context)?.get(chord).copied()
    }

    /// The keys of an action in a context (global keys included), for hints.
    pub fn keys_for(&self, context: Context, action: Action) -> Vec<KeyChord> {
        let mut keys: Vec<KeyChord> = [context, Context::Global]
            .iter()
            .filter_map(|c| self.bindings.get(c))
            .flat_map(|t| t.iter().filter(|(_, a)| **a == action).map(|(k, _)| *k))
            .collect();
        keys.dedup();
        keys
    }

    /// The first key of an action, shown as text, or an empty string.
    pub fn hint(&self, context: Context, action: Action) -> String {
        self.keys_for(context, action)
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Every binding as (context, keys, action), grouped by action within each context: the
    /// rows of the help overlay and of the README's table.
    pub fn rows(&self) -> Vec<(Context, Vec<KeyChord>, Action)> {
        let mut rows = Vec::new();
        for context in Context::ALL {
            let Some(table) = self.bindings.get(context) else {
                continue;
            };
            let mut by_action: BTreeMap<Action, Vec<KeyChord>> = BTreeMap::new();
            for (key, action) in table {
                by_action.entry(*action).or_default().push(*key);
            }
            for (action, keys) in by_action {
                rows.push((*context, keys, action));
            }
        }
        rows
    }
}

impl Keymap {
    /// The bindings as a Markdown table, for the README (a test keeps the two equal).
    pub fn markdown_table(&self) -> String {
        let mut out = String::from("| where | keys | action |\n| --- | --- | --- |\n");
        for (context, keys, action) in self.rows() {
            let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            out.push_str(&format!(
                "| {} | {} | {} (`{}`) |\n",
                context.name(),
                keys.join(" "),
                action.help(),
                action.name()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keymap_parses() {
        let keymap = Keymap::parse(DEFAULT_KEYMAP).expect("default keymap");
        assert_eq!(
            keymap.lookup(Context::Editor, &KeyChord::ctrl('s')),
            Some(Action::Save)
        );
        assert_eq!(
            keymap.lookup(Context::Editor, &KeyChord::ctrl('z')),
            Some(Action::Undo)
        );
        assert_eq!(
            keymap.lookup(Context::Tree, &KeyChord::ctrl('z')),
            None,
            "editor keys stay in the editor"
        );
        assert_eq!(
            keymap.lookup(Context::History, &KeyChord::plain(Key::Char(' '))),
            Some(Action::Mark)
        );
    }

    #[test]
    fn every_action_is_reachable_from_the_palette_and_most_from_keys() {
        let keymap = Keymap::default_keymap();
        let bound: std::collections::BTreeSet<Action> =
            keymap.rows().into_iter().map(|(_, _, a)| a).collect();
        for action in Action::ALL {
            // Select is bound in the tree; every action has a name the palette lists.
            assert!(!action.name().is_empty() && !action.help().is_empty());
        }
        assert!(bound.len() >= Action::ALL.len() - 1, "{bound:?}");
    }

    #[test]
    fn chords_parse_and_display() {
        let cases = [
            ("ctrl-s", "^S"),
            ("alt-r", "Alt-r"),
            ("f1", "F1"),
            ("?", "?"),
            ("space", "Space"),
            ("shift-tab", "Shift-Tab"),
            ("PageDown", "PgDn"),
            ("ctrl-shift-z", "^Shift-Z"),
        ];
        for (text, shown) in cases {
            let chord = KeyChord::parse(text).expect(text);
            assert_eq!(chord.to_string(), shown, "{text}");
        }
        for bad in ["", "ctrl-", "f13", "hyper-x", "enterr"] {
            assert!(KeyChord::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_rebind_and_unbind() {
        let mut keymap = Keymap::default_keymap();
        keymap
            .overlay_text("[global]\n\"ctrl-r\" = \"none\"\n\"ctrl-x\" = \"run\"\n")
            .expect("override");
        assert_eq!(keymap.lookup(Context::Global, &KeyChord::ctrl('r')), None);
        assert_eq!(
            keymap.lookup(Context::Global, &KeyChord::ctrl('x')),
            Some(Action::Run)
        );
        assert!(matches!(
            keymap.overlay_text("[global]\n\"ctrl-x\" = \"rnu\"\n"),
            Err(KeymapError::BadAction { .. })
        ));
        assert!(matches!(
            keymap.overlay_text("[nowhere]\n\"x\" = \"run\"\n"),
            Err(KeymapError::BadContext(_))
        ));
    }
}
