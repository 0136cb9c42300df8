//! `apply_patch {patch}`: edit files through a unified diff, all files or none.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{confine, Tool, ToolContext, ToolError, ToolOutput};
use crate::patch::{apply_hunks, parse, write_all_or_nothing, PatchError};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// A unified diff: `--- a/PATH`, `+++ b/PATH`, then `@@` hunks of ` ` context, `-` removed and `+` added lines. Use `--- /dev/null` to create a file and `+++ /dev/null` to delete one.
    pub patch: String,
}

pub struct ApplyPatch;

impl Tool for ApplyPatch {
    type Args = Args;
    const NAME: &'static str = "apply_patch";
    const DESCRIPTION: &'static str =
        "Edit files with a unified diff. Hunks are located by their context and removed lines (copy them exactly from read_file, without the `N| ` prefix); line numbers are only hints. Either every hunk of every file applies or nothing changes.";

    fn run(ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        let files = parse(&args.patch).map_err(patch_error)?;
        let mut changes: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
        let mut summary = Vec::new();
        for file in &files {
            let old = file
                .old_path
                .as_deref()
                .map(|p| confine(ctx.root, p).map(|full| (p, full)))
                .transpose()?;
            let new = file
                .new_path
                .as_deref()
                .map(|p| confine(ctx.root, p).map(|full| (p, full)))
                .transpose()?;
            let original = match &old {
                Some((shown, full)) => Some(std::fs::read_to_string(full).map_err(|e| {
                    patch_error(PatchError::File {
                        path: shown.to_string(),
                        reason: format!(
                            "cannot read it ({e}); to create a file use `--- /dev/null`"
                        ),
                    })
                })?),
                None => None,
            };
            match (&old, &new) {
                (_, Some((shown, full))) => {
                    if original.is_none() && full.exists() {
                        return Err(patch_error(PatchError::File {
                            path: shown.to_string(),
                            reason: "already exists; patch it with `--- a/PATH` instead of `--- /dev/null`".into(),
                        }));
                    }
                    let content =
                        apply_hunks(shown, original.as_deref().unwrap_or(""), &file.hunks)
                            .map_err(patch_error)?;
                    if let Some((old_shown, old_full)) = old.as_ref().filter(|(_, f)| f != full) {
                        changes.push((old_full.clone(), None));
                        summary.push(format!("moved {old_shown} -> {shown}"));
                    } else {
                        summary.push(format!(
                            "{} {shown}",
                            if original.is_some() {
                                "patched"
                            } else {
                                "created"
                            }
                        ));
                    }
                    changes.push((full.clone(), Some(content.into_bytes())));
                }
                (Some((shown, full)), None) => {
                    changes.push((full.clone(), None));
                    summary.push(format!("deleted {shown}"));
                }
                (None, None) => {
                    return Err(patch_error(PatchError::Syntax {
                        line: 1,
                        reason: "a file header names /dev/null on both sides".into(),
                    }))
                }
            }
        }
        write_all_or_nothing(&changes).map_err(|e| {
            ToolError::Failed(format!(
                "writing the patched files failed, nothing was changed: {e}"
            ))
        })?;
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
        assert!(matches!(err, ToolError::PathRefused { .. }), "{err}");
    }
}
