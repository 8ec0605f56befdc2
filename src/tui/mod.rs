//! The workbench TUI: `promptdeck` with no arguments, or `promptdeck tui`.
//!
//! One owner of state and drawing, as in ../shared/DESIGN.md:
//! - [`app`] is the PURE state machine (`App::handle(Msg) -> Vec<Effect>`), with [`editor`],
//!   [`highlight`], [`keymap`] and [`layout`] as its pure helpers;
//! - [`view`] draws an `&App` with a [`theme`], never naming a colour;
//! - [`worker`] performs effects off the UI loop through the same core as the CLI
//!   (`library::render_case`, `cli::run::open_backend` + `Backend::stream`, `store::Store`);
//! - [`terminal`] owns the terminal: raw mode, the alternate screen, the event loop.

pub mod app;
pub mod editor;
pub mod highlight;
pub mod keymap;
pub mod layout;
pub mod terminal;
pub mod theme;
pub mod view;
pub mod worker;

#[cfg(test)]
mod tests;
