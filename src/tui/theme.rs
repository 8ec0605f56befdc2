//! Colour themes: `themes/NAME.toml` files with a `[palette]` of named colours and a `[ui]` table
//! of semantic slots, optionally inheriting another theme (the shape of helix's theme files).
//!
//! Widgets ask for a [`Slot`] (`error`, `diff_added`, ...), never for a colour, so a theme is
//! the only place colours are named. The shipped themes are embedded in the binary; a project
//! may add or override themes in its own `themes/` folder. With `NO_COLOR` set, every slot
//! keeps its modifiers (bold, reversed, ...) and loses its colours.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// The themes shipped with promptdeck, embedded so an installed binary has them.
pub const SHIPPED: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    (
        "catppuccin-mocha",
        include_str!("../../themes/catppuccin-mocha.toml"),
    ),
    ("tokyonight", include_str!("../../themes/tokyonight.toml")),
];

pub const DEFAULT_THEME: &str = "dark";

macro_rules! slots {
    ($($variant:ident => $name:literal,)*) => {
        /// What a widget wants to draw.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Slot { $($variant,)* }

        impl Slot {
            pub const ALL: &'static [Slot] = &[$(Slot::$variant,)*];
            pub fn name(self) -> &'static str {
                match self { $(Slot::$variant => $name,)* }
            }
        }
    };
}

slots! {
    Text => "text",
    TextDim => "text_dim",
    Background => "background",
    Border => "border",
    BorderFocused => "border_focused",
    Title => "title",
    TitleFocused => "title_focused",
    Header => "header",
    Tab => "tab",
    TabActive => "tab_active",
    Status => "status",
    StatusError => "status_error",
    KeyHint => "key_hint",
    Selection => "selection",
    Cursor => "cursor",
    LineNumber => "line_number",
    LineNumberError => "line_number_error",
    Error => "error",
    Warning => "warning",
    Pass => "pass",
    Fail => "fail",
    Unsaved => "unsaved",
    JinjaTag => "jinja_tag",
    JinjaExpr => "jinja_expr",
    JinjaComment => "jinja_comment",
    RoleMarker => "role_marker",
    FrontMatter => "front_matter",
    FrontMatterFence => "front_matter_fence",
    YamlKey => "yaml_key",
    DiffAdded => "diff_added",
    DiffRemoved => "diff_removed",
    DiffAddedWord => "diff_added_word",
    DiffRemovedWord => "diff_removed_word",
    DiffHeader => "diff_header",
    SearchMatch => "search_match",
    Streaming => "streaming",
    Overlay => "overlay",
    Chart => "chart",
    Label => "label",
    Series1 => "series_1",
    Series2 => "series_2",
    Series3 => "series_3",
    Series4 => "series_4",
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThemeError {
    #[error("theme {theme}: {message}")]
    Invalid { theme: String, message: String },
    #[error("no theme `{0}` (themes: {1})")]
    Unknown(String, String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    inherits: Option<String>,
    #[serde(default)]
    palette: BTreeMap<String, String>,
    #[serde(default)]
    ui: BTreeMap<String, RawStyle>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawStyle {
    Colour(String),
    Full {
        fg: Option<String>,
        bg: Option<String>,
        #[serde(default)]
        modifiers: Vec<String>,
    },
}

/// A resolved theme.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    styles: BTreeMap<Slot, Style>,
}

impl Theme {
    /// The style of a slot (the terminal's default where a theme leaves it out).
    pub fn style(&self, slot: Slot) -> Style {
        self.styles.get(&slot).copied().unwrap_or_default()
    }

    /// Colours removed, modifiers kept: what NO_COLOR asks for.
    pub fn without_colour(&self) -> Theme {
        Theme {
            name: self.name.clone(),
            styles: self
                .styles
                .iter()
                .map(|(slot, style)| {
                    let plain = Style {
                        add_modifier: style.add_modifier,
                        ..Style::default()
                    };
                    (*slot, plain)
                })
                .chain(
                    // Without colour, selection and the cursor must still be visible.
                    [
                        (
                            Slot::Selection,
                            Style::default().add_modifier(Modifier::REVERSED),
                        ),
                        (
                            Slot::Cursor,
                            Style::default().add_modifier(Modifier::REVERSED),
                        ),
                        (
                            Slot::TabActive,
                            Style::default().add_modifier(Modifier::REVERSED),
                        ),
                        (
                            Slot::SearchMatch,
                            Style::default().add_modifier(Modifier::UNDERLINED),
                        ),
                    ],
                )
                .collect(),
        }
    }

    /// Slots a theme file leaves undefined (after inheritance).
    pub fn missing(&self) -> Vec<Slot> {
        Slot::ALL
            .iter()
            .copied()
            .filter(|s| !self.styles.contains_key(s))
            .collect()
    }
}

/// The names of the shipped themes and those in `project_themes` (a project's `themes/`).
pub fn available(project_themes: Option<&Path>) -> Vec<String> {
    let mut names: Vec<String> = SHIPPED.iter().map(|(n, _)| (*n).to_owned()).collect();
    if let Some(dir) = project_themes {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                        if !names.iter().any(|n| n == stem) {
                            names.push(stem.to_owned());
                        }
                    }
                }
            }
        }
    }
    names
}

/// Finds a theme's text: the project's `themes/NAME.toml` first, then the shipped one.
fn source(name: &str, project_themes: Option<&Path>) -> Option<String> {
    if let Some(dir) = project_themes {
        let safe = !name.contains(['/', '\\']) && !name.starts_with('.');
        if safe {
            if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.toml"))) {
                return Some(text);
            }
        }
    }
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| (*t).to_owned())
}

/// Loads a theme by name, following `inherits` (at most 8 deep).
pub fn load(name: &str, project_themes: Option<&Path>) -> Result<Theme, ThemeError> {
    let mut chain = Vec::new();
    let mut next = Some(name.to_owned());
    while let Some(current) = next {
        if chain.len() >= 8
            || chain
                .iter()
                .any(|(n, _): &(String, RawTheme)| *n == current)
        {
            return Err(ThemeError::Invalid {
                theme: name.to_owned(),
                message: "`inherits` forms a cycle or is deeper than 8".to_owned(),
            });
        }
        let text = source(&current, project_themes).ok_or_else(|| {
            ThemeError::Unknown(current.clone(), available(project_themes).join(", "))
        })?;
        let raw: RawTheme = toml::from_str(&text).map_err(|e| ThemeError::Invalid {
            theme: current.clone(),
            message: e.to_string(),
        })?;
        next = raw.inherits.clone();
        chain.push((current, raw));
    }
    // Parents first, so children override.
    let mut palette = BTreeMap::new();
    let mut ui = BTreeMap::new();
    for (_, raw) in chain.iter().rev() {
        palette.extend(raw.palette.clone());
        ui.extend(raw.ui.clone());
    }
    let mut styles = BTreeMap::new();
    for (slot_name, raw) in &ui {
        let slot = Slot::ALL
            .iter()
            .copied()
            .find(|s| s.name() == slot_name)
            .ok_or_else(|| ThemeError::Invalid {
                theme: name.to_owned(),
                message: format!(
                    "unknown slot `{slot_name}` (slots: {})",
                    Slot::ALL
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let style = resolve_style(raw, &palette).map_err(|message| ThemeError::Invalid {
            theme: name.to_owned(),
            message: format!("{slot_name}: {message}"),
        })?;
        styles.insert(slot, style);
    }
    Ok(Theme {
        name: name.to_owned(),
        styles,
    })
}

fn resolve_style(raw: &RawStyle, palette: &BTreeMap<String, String>) -> Result<Style, String> {
    match raw {
        RawStyle::Colour(c) => Ok(Style::default().fg(colour(c, palette)?)),
        RawStyle::Full { fg, bg, modifiers } => {
            let mut style = Style::default();
            if let Some(fg) = fg {
                style = style.fg(colour(fg, palette)?);
            }
            if let Some(bg) = bg {
                style = style.bg(colour(bg, palette)?);
            }
            for m in modifiers {
                style = style.add_modifier(modifier(m)?);
            }
            Ok(style)
        }
    }
}

/// A palette name, `#rrggbb`, or an ANSI colour name.
fn colour(text: &str, palette: &BTreeMap<String, String>) -> Result<Color, String> {
    let resolved = palette.get(text).map_or(text, String::as_str);
    if let Some(hex) = resolved.strip_prefix('#') {
        if hex.len() == 6 {
            if let Ok(v) = u32::from_str_radix(hex, 16) {
                return Ok(Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8));
            }
        }
        return Err(format!("`{resolved}` is not a #rrggbb colour"));
    }
    let named = match resolved
        .to_ascii_lowercase()
        .replace(['-', '_'], "")
        .as_str()
    {
        "reset" | "default" => Color::Reset,
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "darkgray" | "darkgrey" | "brightblack" => Color::DarkGray,
        "lightred" | "brightred" => Color::LightRed,
        "lightgreen" | "brightgreen" => Color::LightGreen,
        "lightyellow" | "brightyellow" => Color::LightYellow,
        "lightblue" | "brightblue" => Color::LightBlue,
        "lightmagenta" | "brightmagenta" => Color::LightMagenta,
        "lightcyan" | "brightcyan" => Color::LightCyan,
        "white" | "brightwhite" => Color::White,
        _ => {
            return Err(format!(
                "`{text}` is neither a palette name, #rrggbb nor an ANSI colour"
            ));
        }
    };
    Ok(named)
}

fn modifier(text: &str) -> Result<Modifier, String> {
    Ok(match text {
        "bold" => Modifier::BOLD,
        "dim" => Modifier::DIM,
        "italic" => Modifier::ITALIC,
        "underlined" => Modifier::UNDERLINED,
        "reversed" => Modifier::REVERSED,
        "crossed_out" => Modifier::CROSSED_OUT,
        "slow_blink" => Modifier::SLOW_BLINK,
        _ => return Err(format!("unknown modifier `{text}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_theme_parses_and_defines_every_slot() {
        for (name, _) in SHIPPED {
            let theme = load(name, None).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                theme.missing().is_empty(),
                "{name} lacks {:?}",
                theme.missing()
            );
        }
    }

    #[test]
    fn shipped_theme_files_are_the_themes_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("themes/")
            .flatten()
            .filter_map(|e| {
                e.path()
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .collect();
        on_disk.sort();
        let mut shipped: Vec<String> = SHIPPED.iter().map(|(n, _)| (*n).to_owned()).collect();
        shipped.sort();
        assert_eq!(on_disk, shipped);
    }

    #[test]
    fn inheritance_overrides_and_errors_are_named() {
        let dir = tempfile::tempdir().expect("temp");
        std::fs::write(
            dir.path().join("mine.toml"),
            "inherits = \"dark\"\n[palette]\nhot = \"#ff0000\"\n[ui]\nerror = { fg = \"hot\", modifiers = [\"bold\"] }\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("bad.toml"), "[ui]\nerror = \"nocolour\"\n").expect("write");
        std::fs::write(dir.path().join("loop.toml"), "inherits = \"loop\"\n").expect("write");
        let mine = load("mine", Some(dir.path())).expect("mine");
        assert_eq!(
            mine.style(Slot::Error),
            Style::default()
                .fg(Color::Rgb(255, 0, 0))
                .add_modifier(Modifier::BOLD)
        );
        assert!(mine.missing().is_empty());
        assert!(matches!(
            load("bad", Some(dir.path())),
            Err(ThemeError::Invalid { .. })
        ));
        assert!(matches!(
            load("loop", Some(dir.path())),
            Err(ThemeError::Invalid { .. })
        ));
        assert!(matches!(load("nope", None), Err(ThemeError::Unknown(..))));
        assert!(available(Some(dir.path())).contains(&"mine".to_owned()));
    }

    #[test]
    fn no_color_keeps_modifiers_only() {
        let theme = load("dark", None).expect("dark").without_colour();
        for slot in Slot::ALL {
            let s = theme.style(*slot);
            assert_eq!((s.fg, s.bg), (None, None), "{slot:?}");
        }
        assert!(
            theme
                .style(Slot::Selection)
                .add_modifier
                .contains(Modifier::REVERSED)
        );
    }
}
