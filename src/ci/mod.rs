//! CI mode: a task from a GitHub event, and a draft pull request for the verified work.
//!
//! `event.rs` reads the event JSON GitHub writes to `$GITHUB_EVENT_PATH`; `github.rs` talks to the few
//! REST endpoints a draft pull request needs. The PR's text is in `report::pr`; pushing is in `vcs`.
//! Nothing here runs the agent.

pub mod event;
pub mod github;

pub use event::{CiTask, EventError};
