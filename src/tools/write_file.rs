//! `write_file {path, content}`: create a file, or replace one whole. Edits to existing files should go
//! through `apply_patch`, which shows the model exactly what changed.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{beneath, fs_error, Tool, ToolContext, ToolError, ToolOutput};
use crate::hostfs::Kind;

/// Largest file the model may write in one call.
const MAX_CONTENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// File path relative to the repository root; parent directories are created.
    #[schemars(length(max = 500))]
    pub path: String,
    /// The complete new content of the file (at most 8000 characters; grow bigger files with apply_patch).
    #[schemars(length(max = 8000))]
    pub content: String,
}

pub struct WriteFile;

impl Tool for WriteFile {
    type Args = Args;
    const NAME: &'static str = "write_file";
    const DESCRIPTION: &'static str =
        "Create a new file with the given content, or replace an existing file entirely. Prefer apply_patch for changes to existing files.";

    fn run(ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        let rel = crate::hostfs::relative(&args.path).map_err(fs_error)?;
        if args.content.len() > MAX_CONTENT_BYTES {
            return Err(ToolError::Failed(format!(
                "content for {} is {} bytes, more than the {MAX_CONTENT_BYTES}-byte limit",
                args.path,
                args.content.len()
            )));
        }
        let fs = beneath(ctx.root)?;
        let existed = match fs.kind(&rel) {
            Ok(Some(Kind::Dir)) => {
                return Err(ToolError::Failed(format!("{} is a directory", args.path)))
            }
            Ok(found) => found.is_some(),
            // A dangling or outside link at the name is replaced; a refused path is refused below.
            Err(_) => true,
        };
        fs.write(&rel, args.content.as_bytes()).map_err(fs_error)?;
        let verb = if existed { "replaced" } else { "created" };
        Ok(ToolOutput::Text(format!(
            "{verb} {} ({} lines)",
            args.path,
            args.content.lines().count()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests_support::ctx_in;

    #[test]
    fn creates_nested_files_and_refuses_escapes() {
        let (dir, sandbox) = ctx_in(&[]);
        let ctx = sandbox.ctx(dir.path());
        let out = WriteFile::run(
            &ctx,
            Args {
                path: "a/b/c.txt".into(),
                content: "x\ny\n".into(),
            },
        )
        .unwrap();
        assert_eq!(out, ToolOutput::Text("created a/b/c.txt (2 lines)".into()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b/c.txt")).unwrap(),
            "x\ny\n"
        );
        assert!(WriteFile::run(
            &ctx,
            Args {
                path: "../evil".into(),
                content: String::new()
            }
        )
        .is_err());
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }
}
