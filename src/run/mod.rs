//! Runs: planning a matrix of prompt × case × backend × sample (`plan`, PURE), scoring one
//! sample (`score`, PURE), and executing a plan concurrently with results stored as they finish
//! (`exec`, async). `promptdeck run`, `promptdeck test`, `promptdeck bench harness` and (later)
//! the TUI all go through `exec::execute`, so there is one run path.

pub mod exec;
pub mod plan;
pub mod score;

pub use exec::{
    BackendHandle, Cancel, CaseJob, Event, Executed, Outcome, PreparedCase, PreparedUnit,
    RunInputs, Sink, TechniqueContext, execute, execute_plain,
};
pub use plan::{Job, Plan, PlanError, UnitSpec, Verdict, aggregate, plan, required_passes};
