//! The tools a run offers besides the built-ins: the plugins found for it and the tools of the MCP
//! servers it starts, each reported (what is offered, what did not load, what each server may reach).

use std::sync::Arc;
use std::time::Duration;

use crate::cli::RunArgs;
use crate::protocol::{Event, Reporter};
use crate::tools::mcp::{self, Launch, ServerConfig};
use crate::tools::{plugin::Plugin, Toolbox};
use crate::vcs::Workspace;

/// How long an MCP server may live (its CPU time limit) when the run has no time limit.
const SERVER_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The run's toolbox: the built-ins, its plugins (none with `--no-plugins`) and its MCP servers'
/// tools (none with `--no-mcp`), the servers started.
pub(super) fn toolbox(
    args: &RunArgs,
    workspace: &Workspace,
    reporter: &mut dyn Reporter,
) -> Toolbox {
    Toolbox::with_plugins(plugins(args, workspace, reporter))
        .with_mcp(mcp_servers(args, workspace, reporter))
}

/// The plugin tools offered to the model; those that did not load, and those offered, are reported.
fn plugins(args: &RunArgs, workspace: &Workspace, reporter: &mut dyn Reporter) -> Vec<Plugin> {
    let found = super::super::tools::discover_for_run(workspace.user_repo_path(), args.no_plugins);
    for problem in &found.problems {
        note(reporter, format!("warning: {problem}"));
    }
    if !found.plugins.is_empty() {
        let offered: Vec<String> = found
            .plugins
            .iter()
            .map(|p| format!("{} ({})", p.name, p.access.label()))
            .collect();
        note(
            reporter,
            format!("plugin tools offered: {}", offered.join(", ")),
        );
    }
    found.plugins
}

/// Start the run's MCP servers in the worktree, each in a sandbox like the commands' (with the
/// network its entry grants); a server that does not start is a warning, not the end of the run.
fn mcp_servers(
    args: &RunArgs,
    workspace: &Workspace,
    reporter: &mut dyn Reporter,
) -> Vec<Arc<mcp::Server>> {
    if args.no_mcp || args.mcp_servers.is_empty() {
        return Vec::new();
    }
    let env = super::command_env(workspace.root(), workspace.user_repo_path());
    let launch = Launch {
        cwd: workspace.root(),
        env: &env,
        default_timeout: Duration::from_secs(args.command_timeout),
        lifetime: args
            .time_limit
            .map(Duration::from_secs)
            .unwrap_or(SERVER_LIFETIME),
    };
    let read_only = vec![workspace.borrowed_objects()];
    let sandbox_for = |config: &ServerConfig| {
        mcp::sandbox_for(
            args.sandbox,
            read_only.clone(),
            &args.sandbox_profile,
            config,
        )
    };
    let (servers, problems) = mcp::start_all(&args.mcp_servers, &sandbox_for, &launch);
    for problem in problems {
        note(reporter, format!("warning: {problem}"));
    }
    for server in &servers {
        let tools: Vec<&str> = server.tools.iter().map(|t| t.offered.as_str()).collect();
        note(
            reporter,
            format!(
                "MCP server {} ({}, call limit {} s): tools offered: {}",
                server.name,
                server.network,
                server.timeout.as_secs(),
                if tools.is_empty() {
                    "none".to_string()
                } else {
                    tools.join(", ")
                }
            ),
        );
    }
    servers
}

fn note(reporter: &mut dyn Reporter, message: String) {
    reporter.event(&Event::Note { message });
}
