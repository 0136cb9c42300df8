//! agent: a self-hosted, autonomous software-development agent.
//!
//! Data flows one way: task → model turns → tool calls → edits/commands → verification → commit →
//! report. `agent` holds the loop; `model`, `tools`, `patch`, `sandbox` and `vcs` are the leaves it
//! drives; `protocol` is the vocabulary the loop emits and `report` shows (neither imports the other);
//! `text` and `dirs` are small leaves every layer may use (text helpers; the host folders the agent
//! keeps its files in); `app` wires them together for the CLI.

pub mod agent;
pub mod app;
pub mod ci;
pub mod cli;
pub mod config;
pub mod dirs;
pub mod eval;
pub mod hostfs;
pub mod model;
pub mod patch;
pub mod protocol;
pub mod report;
pub mod runs;
pub mod sandbox;
pub mod serve;
pub mod text;
pub mod tools;
pub mod vcs;
