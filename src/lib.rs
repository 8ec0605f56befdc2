//! promptdeck: a terminal workbench for prompt engineering.
//!
//! The pure core (`prompt`, `suite`, `yaml`, `diagnostic`) turns files into validated data and
//! rendered messages; `project` and `user_file` are the IO edge that reads a user's project; `cli`
//! wires commands to both. See docs/ARCHITECTURE.md for the module map and data flow.

pub mod backend;
pub mod cli;
pub mod compare;
pub mod diagnostic;
pub mod diff;
pub mod execution;
pub mod import;
pub mod library;
pub mod local;
pub mod project;
pub mod prompt;
pub mod refs;
pub mod report;
pub mod run;
pub mod store;
pub mod suite;
pub mod tui;
pub mod user_file;
pub mod yaml;
