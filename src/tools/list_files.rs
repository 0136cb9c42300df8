//! `list_files {path?}`: the repository's files under a directory, honouring .gitignore.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{confine, display_path, Tool, ToolContext, ToolError, ToolOutput};

/// Most paths listed per call.
const MAX_ENTRIES: usize = 1000;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Directory relative to the repository root; the root when omitted.
    #[serde(default)]
    pub path: Option<String>,
}

pub struct ListFiles;

impl Tool for ListFiles {
    type Args = Args;
    const NAME: &'static str = "list_files";
    const DESCRIPTION: &'static str =
        "List the files under a directory of the repository (recursively, skipping what .gitignore ignores).";

    fn run(ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        let raw = args.path.as_deref().unwrap_or(".");
        let dir = confine(ctx.root, raw)?;
        if !dir.exists() {
            return Err(ToolError::Failed(format!("{raw} does not exist")));
        }
        let root = ctx
            .root
            .canonicalize()
            .unwrap_or_else(|_| ctx.root.to_path_buf());
        let mut paths = Vec::new();
        let mut more = 0usize;
        for entry in walker(&dir).build().flatten() {
            if entry.file_type().is_some_and(|t| t.is_dir()) {
                continue;
            }
            if paths.len() < MAX_ENTRIES {
                paths.push(display_path(&root, entry.path()));
            } else {
                more += 1;
            }
        }
        paths.sort();
        let mut out = paths.join("\n");
        if paths.is_empty() {
            out = format!("no files under {raw}");
        }
        if more > 0 {
            out.push_str(&format!(
                "\n[{more} more files not shown; list a subdirectory]"
            ));
        }
        Ok(ToolOutput::Text(out))
    }
}

/// A walker over the repository that honours .gitignore even outside a git checkout and skips `.git`.
pub fn walker(dir: &std::path::Path) -> ignore::WalkBuilder {
    let mut builder = ignore::WalkBuilder::new(dir);
    builder
        .hidden(false)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git");
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests_support::ctx_in;

    #[test]
    fn lists_files_honouring_gitignore() {
        let (dir, sandbox) = ctx_in(&[
            (".gitignore", "target/\n"),
            ("src/lib.rs", ""),
            ("target/x", ""),
            (".git/config", ""),
        ]);
        let ctx = sandbox.ctx(dir.path());
        let ToolOutput::Text(out) = ListFiles::run(&ctx, Args { path: None }).unwrap() else {
            panic!()
        };
        assert_eq!(out, ".gitignore\nsrc/lib.rs");
        let ToolOutput::Text(out) = ListFiles::run(
            &ctx,
            Args {
                path: Some("src".into()),
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(out, "src/lib.rs");
    }
}
