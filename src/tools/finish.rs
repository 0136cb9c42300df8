//! `finish {summary}`: the model declares the task done. The agent still runs the check before it
//! believes it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Tool, ToolContext, ToolError, ToolOutput};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// What was done, in a sentence or two.
    #[schemars(length(min = 1, max = 300))]
    pub summary: String,
}

pub struct Finish;

impl Tool for Finish {
    type Args = Args;
    const NAME: &'static str = "finish";
    const DESCRIPTION: &'static str =
        "Declare the task complete once the changes are made. The check command runs first; if it fails you get its output and continue.";

    fn run(_ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::Finish(args.summary))
    }
}
