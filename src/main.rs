//! `agent`: parse the command line, run the command, map errors to exit codes (2 for usage and
//! configuration errors, 1 for everything else).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use agent::app::{self, UsageError};
use agent::cli::{Cli, Command};

fn colors(on: bool) {
    console::set_colors_enabled(on);
    console::set_colors_enabled_stderr(on);
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `auto` leaves it to console, which looks at the terminal, NO_COLOR, CLICOLOR and CLICOLOR_FORCE.
    match cli.color {
        clap::ColorChoice::Always => colors(true),
        clap::ColorChoice::Never => colors(false),
        clap::ColorChoice::Auto => {}
    }
    let result = match cli.command {
        Command::Run(args) => match matches.subcommand_matches("run") {
            Some(run) => app::configured_run(*args, run).and_then(app::run),
            None => app::run(*args),
        },
        Command::Resume(args) => app::resume(args),
        Command::Replay(args) => app::replay(args),
        Command::Log(args) => app::log(args),
        Command::Eval(args) => app::eval(args),
        Command::Apply(args) => app::apply(args),
        Command::Tools(args) => app::tools(args),
        Command::Sandbox(agent::cli::SandboxCommand::Exec(args)) => app::sandbox_exec(args),
        Command::Doctor => app::doctor(),
        Command::Completions(args) => app::completions(args),
        Command::Man(args) => app::man(args),
        Command::Config(command) => app::config(command),
        Command::Mcp => app::mcp(),
        Command::Serve(args) => app::serve(args),
        Command::SandboxHelper {
            writable,
            network,
            proxy,
            command,
        } => {
            return ExitCode::from(agent::sandbox::confine::helper_main(
                &writable,
                network,
                proxy.as_deref(),
                &command,
            ));
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // Errors can quote file names and command output: keep their bytes from steering the terminal.
            eprintln!(
                "error: {}",
                agent::report::terminal_safe(&format!("{error:#}"))
            );
            let usage = error.chain().any(|cause| {
                cause.is::<UsageError>() || cause.is::<agent::model::SpecError>() || {
                    matches!(
                        cause.downcast_ref::<agent::vcs::VcsError>(),
                        Some(
                            agent::vcs::VcsError::NotARepo(_) | agent::vcs::VcsError::NoCommits(_)
                        )
                    )
                }
            });
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
