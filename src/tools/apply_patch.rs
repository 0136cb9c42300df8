//! `apply_patch {patch}`: edit files through a unified diff, all files or none.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{beneath, Tool, ToolContext, ToolError, ToolOutput};
use crate::patch::{parse_any, plan, write_all_or_nothing, PatchError};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The edit, as a unified diff (`--- a/PATH`, `+++ b/PATH`, `@@` hunks of ` ` context, `-` removed and `+` added lines; `--- /dev/null` creates a file), a `*** Begin Patch` envelope, or SEARCH/REPLACE blocks. At most 8000 characters: split bigger edits.
    #[schemars(length(max = 8000))]
    pub patch: String,
}

pub struct ApplyPatch;

impl Tool for ApplyPatch {
    type Args = Args;
    const NAME: &'static str = "apply_patch";
    const DESCRIPTION: &'static str =
        "Edit files with a patch: a unified diff, a `*** Begin Patch` envelope, or SEARCH/REPLACE blocks. Hunks are located by their context and removed lines (copy them from read_file without the `N| ` prefix); line numbers are only hints. Either every hunk of every file applies or nothing changes.";

    const BODY: Option<&'static str> = Some("patch");

    fn run(ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        let (_, files) = parse_any(&args.patch).map_err(patch_error)?;
        let fs = beneath(ctx.root)?;
        let changes = plan(&files, &fs).map_err(|e| match e {
            // A refused path is a confinement refusal, not a matching problem: say so plainly.
            PatchError::Refused(reason) => ToolError::Failed(reason),
            other => patch_error(other),
        })?;
        let writes: Vec<_> = changes
            .iter()
            .map(|c| (c.path.clone(), c.content.clone()))
            .collect();
        write_all_or_nothing(&fs, &writes).map_err(|e| {
            ToolError::Failed(format!(
                "writing the patched files failed, nothing was changed: {e}"
            ))
        })?;
        let summary: Vec<String> = changes.iter().map(|c| c.describe()).collect();
        Ok(ToolOutput::Text(summary.join("\n")))
    }
}

fn patch_error(e: PatchError) -> ToolError {
    ToolError::Failed(format!("patch not applied, no file was changed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests_support::ctx_in;

    #[test]
    fn applies_across_files_or_not_at_all() {
        let (dir, sandbox) = ctx_in(&[("a.txt", "one\ntwo\n"), ("b.txt", "three\n")]);
        let ctx = sandbox.ctx(dir.path());
        let bad =
            "--- a/a.txt\n+++ b/a.txt\n@@\n-one\n+ONE\n--- a/b.txt\n+++ b/b.txt\n@@\n-nope\n+x\n";
        let err = ApplyPatch::run(&ctx, Args { patch: bad.into() })
            .unwrap_err()
            .to_string();
        assert!(err.contains("hunk 1 of b.txt did not match"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "one\ntwo\n"
        );
        let good = "--- a/a.txt\n+++ b/a.txt\n@@\n-one\n+ONE\n--- /dev/null\n+++ b/c.txt\n@@ -0,0 +1 @@\n+new\n--- a/b.txt\n+++ /dev/null\n@@\n-three\n";
        let out = ApplyPatch::run(&ctx, Args { patch: good.into() }).unwrap();
        assert_eq!(
            out,
            ToolOutput::Text("patched a.txt\ncreated c.txt\ndeleted b.txt".into())
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "ONE\ntwo\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("c.txt")).unwrap(),
            "new\n"
        );
        assert!(!dir.path().join("b.txt").exists());
    }

    #[test]
    fn refuses_paths_outside() {
        let (dir, sandbox) = ctx_in(&[]);
        let ctx = sandbox.ctx(dir.path());
        let err = ApplyPatch::run(
            &ctx,
            Args {
                patch: "--- /dev/null\n+++ b/../../escape.txt\n@@\n+x\n".into(),
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
