//! `write_file {path, content}`: create a file, or replace one whole. Edits to existing files should go
//! through `apply_patch`, which shows the model exactly what changed.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{beneath, fs_error, Tool, ToolContext, ToolError, ToolOutput};
use crate::hostfs::Kind;
use crate::patch::listing::{whole_or_merged, Listing};

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
        "Create a new file with the given content, or replace an existing file entirely: the simplest edit of a short file (give all of it, changed lines and unchanged). For a long file prefer apply_patch.";

    const BODY: Option<&'static str> = Some("content");

    fn run(ctx: &ToolContext<'_>, mut args: Args) -> Result<ToolOutput, ToolError> {
        let rel = crate::hostfs::relative(&args.path).map_err(fs_error)?;
        // Small models copy read_file's `N| ` line numbers into the file they write back.
        let unnumbered = crate::text::without_display_numbers(&args.content);
        if let Some(text) = &unnumbered {
            args.content.clone_from(text);
        }
        if args.content.len() > MAX_CONTENT_BYTES {
            return Err(ToolError::Failed(format!(
                "content for {} is {} bytes, more than the {MAX_CONTENT_BYTES}-byte limit",
                args.path,
                args.content.len()
            )));
        }
        if is_patch_text(&args.content) && !is_patch_file(&args.path) {
            // A small model sent its patch for the file as the file's new content; writing it would
            // replace the code with the diff.
            return Err(ToolError::Failed(format!(
                "nothing written: the content for {} is a patch, not the file's text; send it to apply_patch, \
                 or give write_file the whole new file",
                args.path
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
        let old = match existed {
            true => fs
                .read_if_exists(&rel, MAX_CONTENT_BYTES as u64)
                .ok()
                .flatten(),
            false => None,
        };
        if old.as_deref() == Some(args.content.as_bytes()) {
            // Small models write the buggy file back as it was and call that the fix.
            return Err(ToolError::Failed(format!(
                "nothing written: {} already holds exactly this content; change the lines that need to change",
                args.path
            )));
        }
        // Small models also send only the function they changed: written as it is, that would
        // replace the whole file with one function of it.
        let mut merged_note = String::new();
        if let Some(old) = old.as_deref().and_then(|o| std::str::from_utf8(o).ok()) {
            match whole_or_merged(old, &args.content) {
                Listing::Whole(_) => {}
                Listing::Merged(text) => {
                    merged_note = format!(
                        "; the content ({} lines) held only some definitions of the file's {}, so they replaced \
                         the file's own of the same first line and the rest was kept",
                        args.content.lines().count(),
                        old.lines().count()
                    );
                    args.content = text;
                }
                Listing::Partial => {
                    return Err(ToolError::Failed(format!(
                        "nothing written: the content ({} lines) is only part of {} ({} lines) and matches no \
                         single definition in it; write_file replaces the whole file, so give every line of it, \
                         or change only some lines with apply_patch",
                        args.content.lines().count(),
                        args.path,
                        old.lines().count()
                    )))
                }
            }
        }
        fs.write(&rel, args.content.as_bytes()).map_err(fs_error)?;
        let verb = if existed { "replaced" } else { "created" };
        Ok(ToolOutput::Text(format!(
            "{verb} {} ({} lines){merged_note}{}",
            args.path,
            args.content.lines().count(),
            if unnumbered.is_some() {
                "; the `N| ` line numbers copied from read_file were left out: they are not part of the file"
            } else {
                ""
            }
        )))
    }
}

/// Text that is an edit of a file rather than a file: an envelope, or a unified diff from its first line.
fn is_patch_text(content: &str) -> bool {
    let start = content.trim_start();
    start.starts_with("*** Begin Patch")
        || (start.starts_with("--- ") && content.contains("\n+++ ") && content.contains("\n@@"))
}

fn is_patch_file(path: &str) -> bool {
    [".patch", ".diff"].iter().any(|ext| path.ends_with(ext))
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

    #[test]
    fn writing_back_what_a_file_holds_is_refused() {
        let (dir, sandbox) = ctx_in(&[("calc.py", "x = 1\n")]);
        let ctx = sandbox.ctx(dir.path());
        let same = Args {
            path: "calc.py".into(),
            content: "x = 1\n".into(),
        };
        let err = WriteFile::run(&ctx, same).unwrap_err().to_string();
        assert!(err.contains("already holds exactly this content"), "{err}");
        let changed = Args {
            path: "calc.py".into(),
            content: "x = 2\n".into(),
        };
        assert!(WriteFile::run(&ctx, changed).is_ok());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("calc.py")).unwrap(),
            "x = 2\n"
        );
    }

    #[test]
    fn one_function_sent_for_a_whole_file_replaces_that_function_and_a_stray_line_is_refused() {
        const DND: &str = "import random\n\n\ndef modifier(value):\n    return (value - 10) // 2\n\n\n\
            def roll():\n    dice = sorted(random.randint(1, 6) for _ in range(4))\n    return sum(dice[1:])\n\n\n\
            class Character:\n    def __init__(self):\n        self.strength = roll()\n        self.constitution = roll()\n\
            \x20       self.hitpoints = 11 + modifier(self.constitution)\n";
        let (dir, sandbox) = ctx_in(&[("dnd.py", DND)]);
        let ctx = sandbox.ctx(dir.path());
        // A line that is no definition of the file (as the 1.5B model sent in a real run): refused,
        // and the file is kept whole.
        let err = WriteFile::run(
            &ctx,
            Args {
                path: "dnd.py".into(),
                content: "obj['modifier'] = lambda value: math.floor((value - 10) / 2)\n".into(),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("only part of dnd.py (17 lines)") && err.contains("apply_patch"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dnd.py")).unwrap(),
            DND
        );
        // The fixed function alone: it replaces the file's own, and the rest stays.
        let out = WriteFile::run(
            &ctx,
            Args {
                path: "dnd.py".into(),
                content: "def modifier(value):\n    return (value - 10) // 2 + 0\n".into(),
            },
        )
        .unwrap();
        let ToolOutput::Text(text) = out else {
            panic!("not text")
        };
        assert!(text.contains("held only some definitions"), "{text}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dnd.py")).unwrap(),
            DND.replace("// 2\n", "// 2 + 0\n")
        );
    }

    #[test]
    fn a_patch_sent_as_a_files_content_is_refused_and_the_file_kept() {
        let (dir, sandbox) = ctx_in(&[("triangle.py", "def valid(s):\n    return True\n")]);
        let ctx = sandbox.ctx(dir.path());
        for content in [
            "*** Begin Patch\n--- triangle.py\n+++ triangle.py\n@@ -1,2 +1,2 @@\n-x\n+y\n*** End Patch\n",
            "--- a/triangle.py\n+++ b/triangle.py\n@@ -1,2 +1,2 @@\n-x\n+y\n",
        ] {
            let err = WriteFile::run(
                &ctx,
                Args {
                    path: "triangle.py".into(),
                    content: content.into(),
                },
            )
            .unwrap_err();
            assert!(err.to_string().contains("is a patch"), "{err}");
            assert_eq!(
                std::fs::read_to_string(dir.path().join("triangle.py")).unwrap(),
                "def valid(s):\n    return True\n"
            );
        }
        // A patch file is a file like any other.
        let diff = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        WriteFile::run(
            &ctx,
            Args {
                path: "fix.patch".into(),
                content: diff.into(),
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("fix.patch")).unwrap(),
            diff
        );
    }
}
