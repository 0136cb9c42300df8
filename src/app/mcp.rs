//! `agent mcp`: this agent as an MCP server on stdio (rmcp), so that an MCP client (Claude Desktop,
//! Codex, Cursor, Continue, Zed, ...) can hand it a task and get back a verified branch.
//!
//! Three tools: `run` (a task on a repository → the task branch, its commits and the summary),
//! `apply` (a patch to a folder, all or nothing, or only checked) and `log` (the recorded runs, or one
//! run's trajectory). Each call runs this same binary as a child process (`agent run --json`,
//! `agent apply`, `agent log`), so a call gets exactly the command line's behaviour: the same
//! sandbox, config files and checks, and a failing call cannot take the server down. Clients choose
//! only the task, the repository, the check and the budget: never the model or the sandbox (those
//! come from the user's config). stdout is the protocol channel: nothing else is ever printed on it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// Most bytes of a child's output a tool result carries (a run's log can be long).
const MAX_RESULT: usize = 100_000;

/// `agent mcp`.
pub fn mcp() -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let service = AgentMcp::new()
            .serve(rmcp::transport::stdio())
            .await
            .context("the MCP client did not complete the handshake on stdin/stdout")?;
        service.waiting().await.context("the MCP session failed")?;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Arguments of the `run` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// The task in plain words (what `agent run TASK` takes).
    pub task: String,
    /// The git repository to work on: an absolute path. It is never modified except for the new
    /// branch `agent/<slug>`.
    pub repo: String,
    /// The command that verifies the work (e.g. `cargo test`); default: detected from the repository.
    #[serde(default)]
    pub check: Option<String>,
    /// Only propose the patch (returned in the result); create no branch.
    #[serde(default)]
    pub dry_run: bool,
    /// Most model turns; default from the config, else 40.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub max_turns: Option<u64>,
}

/// Arguments of the `apply` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    /// The patch: a unified diff, a `*** Begin Patch` envelope, or SEARCH/REPLACE blocks.
    pub patch: String,
    /// The folder the patch's paths are relative to: an absolute path; no path may leave it.
    pub repo: String,
    /// Only report whether it would apply; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Arguments of the `log` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// A run id, a unique prefix of one, or `last`; without it, the recorded runs are listed.
    #[serde(default)]
    pub run: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentMcp {
    tool_router: ToolRouter<Self>,
}

impl Default for AgentMcp {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl AgentMcp {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Work on a task in a git repository: plan, edit through diffs, verify each step with the repository's tests in a sandbox, and commit each verified step to a new branch agent/<slug>. The user's checkout is never touched. Returns the outcome, the branch, its commits and a summary (with dry_run: the proposed patch). Takes minutes."
    )]
    async fn run(&self, params: Parameters<RunParams>) -> Result<CallToolResult, McpError> {
        let params = params.0;
        let repo = absolute(&params.repo)?;
        let mut args: Vec<String> = vec!["run".into(), "--json".into(), "--repo".into()];
        args.push(repo.display().to_string());
        if let Some(check) = params.check.filter(|c| !c.trim().is_empty()) {
            args.extend(["--check".into(), check]);
        }
        if params.dry_run {
            args.push("--dry-run".into());
        }
        if let Some(n) = params.max_turns {
            args.extend(["--max-turns".into(), n.to_string()]);
        }
        // After `--`, a task that starts with a dash is still the task.
        args.extend(["--".into(), params.task]);
        let done = child(&args, None).await?;
        Ok(run_result(&done))
    }

    #[tool(
        description = "Apply a patch (unified diff, *** Begin Patch envelope, or SEARCH/REPLACE blocks) to a folder, all files or none, tolerating the drift models produce; with dry_run only report whether it applies. No path may leave the folder."
    )]
    async fn apply(&self, params: Parameters<ApplyParams>) -> Result<CallToolResult, McpError> {
        let params = params.0;
        let repo = absolute(&params.repo)?;
        let mut args: Vec<String> = vec!["apply".into(), "--repo".into()];
        args.push(repo.display().to_string());
        if params.dry_run {
            args.push("--dry-run".into());
        }
        args.push("-".into());
        let done = child(&args, Some(params.patch)).await?;
        Ok(text_result(&done))
    }

    #[tool(
        description = "Show the agent's recorded runs (without run), or one run's trajectory: plan, steps, tool calls, checks, commits and outcome."
    )]
    async fn log(&self, params: Parameters<LogParams>) -> Result<CallToolResult, McpError> {
        let mut args: Vec<String> = vec!["--color".into(), "never".into(), "log".into()];
        if let Some(run) = params.0.run {
            args.extend(["--".into(), run]);
        }
        let done = child(&args, None).await?;
        Ok(text_result(&done))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for AgentMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agent", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "A software-development agent: `run` works on a task in a git repository and returns a \
                 branch of verified commits; `apply` applies a patch atomically; `log` shows recorded runs.",
            )
    }
}

/// A client's path, which must be absolute: the server's own folder means nothing to the client.
fn absolute(path: &str) -> Result<PathBuf, McpError> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(McpError::invalid_params(
            format!("repo must be an absolute path, not {path:?}"),
            None,
        ));
    }
    Ok(path.to_path_buf())
}

/// A finished child process.
struct Done {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run this binary with `args` (and `input` on stdin); killed if the client cancels the call.
async fn child(args: &[String], input: Option<String>) -> Result<Done, McpError> {
    // /proc/self/exe keeps working if the binary is replaced while the server runs.
    let exe = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| McpError::internal_error(e.to_string(), None))?
    };
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| McpError::internal_error(format!("cannot start agent: {e}"), None))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| McpError::internal_error(format!("cannot pass the input: {e}"), None))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| McpError::internal_error(format!("agent failed: {e}"), None))?;
    Ok(Done {
        code: output.status.code().unwrap_or(1),
        stdout: capped(String::from_utf8_lossy(&output.stdout).into_owned()),
        stderr: capped(String::from_utf8_lossy(&output.stderr).into_owned()),
    })
}

fn capped(text: String) -> String {
    match crate::text::head(&text, MAX_RESULT) {
        (_, 0) => text,
        (kept, left) => format!("{kept}\n… {left} more bytes"),
    }
}

/// stdout (and stderr when there is any) as the result; an error result when the command failed.
fn text_result(done: &Done) -> CallToolResult {
    let mut text = done.stdout.clone();
    if !done.stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(done.stderr.trim_end());
    }
    let content = vec![ContentBlock::text(text)];
    if done.code == 0 {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    }
}

/// The run's `finished` event (with its run id and log) as a JSON summary; the stderr when the run
/// never started (a usage error).
fn run_result(done: &Done) -> CallToolResult {
    let events: Vec<serde_json::Value> = done
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let kind = |k: &str| events.iter().find(|e| e["event"] == k);
    let Some(finished) = kind("finished") else {
        return CallToolResult::error(vec![ContentBlock::text(format!(
            "the run did not finish (exit {}): {}",
            done.code,
            done.stderr.trim()
        ))]);
    };
    let started = kind("run_started");
    let summary = serde_json::json!({
        "run_id": started.map(|s| s["run_id"].clone()),
        "outcome": finished["outcome"],
        "exit_code": finished["exit_code"],
        "summary": finished["summary"],
        "branch": finished["branch"],
        "commits": finished["commits"],
        "patch": finished["patch"],
        "unverified_patch": finished["unverified_patch"],
        "turns": finished["turns"],
        "log": started.map(|s| s["log"].clone()),
        // What the run warned about on stderr (e.g. a repository config's refused keys).
        "warnings": done
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect::<Vec<_>>(),
    });
    let content = vec![ContentBlock::text(
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )];
    if done.code == 0 {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    }
}
