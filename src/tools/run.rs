//! `run {command}`: a shell command in the worktree, through the sandbox, time-limited, output capped.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Tool, ToolContext, ToolError, ToolOutput};
use crate::sandbox::CommandSpec;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Shell command line, run with `sh -c` in the repository root.
    #[schemars(length(max = 4000))]
    pub command: String,
}

pub struct Run;

impl Tool for Run {
    type Args = Args;
    const NAME: &'static str = "run";
    const DESCRIPTION: &'static str =
        "Run a shell command in the repository root (e.g. build or test) and see its exit status and output. Commands are time-limited; no input is given.";

    fn run(ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        if args.command.trim().is_empty() {
            return Err(ToolError::Failed("the command is empty".into()));
        }
        let spec = CommandSpec {
            command: args.command.clone(),
            cwd: ctx.root.to_path_buf(),
            timeout: ctx.command_timeout,
            env: ctx.command_env.to_vec(),
            output_limit: ctx.output_limit,
        };
        let outcome = ctx
            .sandbox
            .run(&spec)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let mut out = format!("$ {}\n{}\n", args.command, outcome.ending());
        out.push_str(&crate::text::steady_output(&outcome.output, ctx.root));
        if outcome.truncated {
            out.push_str(
                "\n[the output was too long and its middle was cut; to see a part of it, run the command again \
                 piped through `grep PATTERN`, `head -n N` or `tail -n N`]",
            );
        }
        Ok(ToolOutput::Text(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests_support::ctx_in;

    #[test]
    fn runs_in_the_worktree() {
        let (dir, sandbox) = ctx_in(&[("marker.txt", "here")]);
        let ctx = sandbox.ctx(dir.path());
        let ToolOutput::Text(out) = Run::run(
            &ctx,
            Args {
                command: "cat marker.txt; exit 4".into(),
            },
        )
        .unwrap() else {
            panic!()
        };
        assert!(out.contains("exit 4") && out.ends_with("here"), "{out}");
    }
}
