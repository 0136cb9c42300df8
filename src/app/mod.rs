//! The commands' wiring, one module per command: everything that touches the user's terminal or
//! environment lives here or in `report`. `run` (with `resume` and `replay`, which start the same run
//! in another way) is in [`run`], a folder of its phases; `log`, `apply`, `sandbox exec`, `doctor`,
//! `eval` and `tools` each in a file of their own; `completions` and `man` in [`manual`].

mod apply;
mod config;
mod doctor;
mod eval;
mod log;
mod manual;
mod mcp;
mod run;
mod sandbox;
mod serve;
mod tools;

pub use apply::apply;
pub use config::{config, for_run as configured_run};
pub use doctor::doctor;
pub use eval::eval;
pub use log::log;
pub use manual::{completions, man};
pub use mcp::mcp;
pub use run::{replay, resume, run};
pub use sandbox::sandbox_exec;
pub use serve::serve;
pub use tools::tools;

/// A mistake in how the command was called; exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
