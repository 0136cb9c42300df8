//! `apply_patch {patch}`: edit files through a unified diff, all files or none.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{beneath, Tool, ToolContext, ToolError, ToolOutput};
use crate::patch::{
    apply_hunks_noted, headerless, parse_any, plan, write_all_or_nothing, Hunk, PatchError,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The edit, as a unified diff (`--- a/PATH`, `+++ b/PATH`, `@@` hunks of ` ` context, `-` removed and `+` added lines; `--- /dev/null` creates a file), a `*** Begin Patch` envelope, or SEARCH/REPLACE blocks. At most 8000 characters: split bigger edits.
    #[schemars(length(min = 1, max = 8000))]
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
        match apply_text(ctx, &args.patch) {
            // Small models copy the `N| ` line numbers of read_file into their patches: a patch
            // that does not apply is tried once more without them.
            Err(error) => match crate::text::patch_without_display_numbers(&args.patch) {
                Some(stripped) => match apply_text(ctx, &stripped) {
                    Ok(ToolOutput::Text(text)) => Ok(ToolOutput::Text(format!(
                        "{text}\n(applied without the `N| ` line numbers copied from read_file: leave them out)"
                    ))),
                    Ok(other) => Ok(other),
                    Err(_) => Err(error),
                },
                None => Err(error),
            },
            done => done,
        }
    }
}

/// Parse `patch`, plan every file's new content, and write them all or none.
fn apply_text(ctx: &ToolContext<'_>, patch: &str) -> Result<ToolOutput, ToolError> {
    let files = match parse_any(patch) {
        Ok((_, files)) => files,
        Err(PatchError::Empty) => match headerless::parse(patch) {
            Some(hunks) => return apply_to_the_one_file_it_fits(ctx, &hunks),
            None => return Err(patch_error(PatchError::Empty)),
        },
        Err(e) => return Err(patch_error(e)),
    };
    let fs = beneath(ctx.root)?;
    let changes = plan(&files, &fs).map_err(|e| match e {
        // A refused path is a confinement refusal, not a matching problem: say so plainly.
        PatchError::Refused(reason) => ToolError::Failed(reason),
        other => patch_error(other),
    })?;
    if changes.iter().all(|c| c.action == "unchanged") {
        let shown: Vec<&str> = changes.iter().map(|c| c.shown.as_str()).collect();
        return Err(ToolError::Failed(format!(
            "{NO_CHANGE} ({})",
            shown.join(", ")
        )));
    }
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

/// What a patch that leaves every file as it was is told: small models send `-x` / `+x` pairs.
const NO_CHANGE: &str = "patch not applied: it changes nothing, its added lines are the same as the lines they replace; write the corrected lines after `+`";

/// Files a patch without a file name is tried against, at most, the largest tried, and the most
/// bytes read in all (a hostile repository's size must not make one call read without bound).
const MAX_FILES_TRIED: usize = 5000;
const MAX_FILE_BYTES: u64 = 1 << 20;
const MAX_BYTES_TRIED: u64 = 64 << 20;

/// Hunks that name no file go to the one file of the repository they apply to; where they fit none
/// or several, nothing changes and the model is told to name the file.
fn apply_to_the_one_file_it_fits(
    ctx: &ToolContext<'_>,
    hunks: &[Hunk],
) -> Result<ToolOutput, ToolError> {
    let fs = beneath(ctx.root)?;
    let mut fits = Vec::new();
    let mut budget = MAX_BYTES_TRIED;
    let files = super::list_files::walker(fs.root())
        .build()
        .flatten()
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .take(MAX_FILES_TRIED);
    for entry in files {
        if budget == 0 {
            break;
        }
        let Ok(rel) = entry.path().strip_prefix(fs.root()) else {
            continue;
        };
        let Ok(bytes) = fs.read(rel, MAX_FILE_BYTES.min(budget)) else {
            continue;
        };
        budget -= bytes.len() as u64;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let shown = rel.to_string_lossy().replace('\\', "/");
        if let Ok(applied) = apply_hunks_noted(&shown, &text, hunks, true) {
            let same = applied.text == text;
            fits.push((rel.to_path_buf(), shown, applied, same));
        }
    }
    fits.sort_by(|a, b| a.1.cmp(&b.1));
    let unnamed = "the patch names no file (no `--- a/PATH` and `+++ b/PATH` lines, no `*** Update File: PATH`)";
    match fits.as_slice() {
        [(_, shown, _, true)] => Err(ToolError::Failed(format!("{NO_CHANGE} ({shown})"))),
        [(path, shown, applied, false)] => {
            write_all_or_nothing(&fs, &[(path.clone(), Some(applied.text.clone().into_bytes()))])
                .map_err(|e| {
                    ToolError::Failed(format!(
                        "writing the patched file failed, nothing was changed: {e}"
                    ))
                })?;
            let mut out = format!("patched {shown} ({unnamed}; its lines fit {shown} only)");
            for note in &applied.notes {
                out.push_str(&format!("\nnote: {note}"));
            }
            Ok(ToolOutput::Text(out))
        }
        [] => Err(ToolError::Failed(format!(
            "patch not applied, no file was changed: {unnamed}, and its removed and context lines match no file; write a unified diff with the file's path, copying the lines from read_file"
        ))),
        several => Err(ToolError::Failed(format!(
            "patch not applied, no file was changed: {unnamed}, and its lines fit {} files ({}); write it as a unified diff with `--- a/PATH` and `+++ b/PATH`",
            several.len(),
            several
                .iter()
                .map(|(_, shown, _, _)| shown.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
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
    fn a_patch_naming_no_file_goes_to_the_one_file_it_fits_or_nowhere() {
        let (dir, sandbox) = ctx_in(&[
            ("calc.py", "def add(a, b):\n    return a - b\n"),
            ("other.py", "def sub(a, b):\n    return a - b\n"),
            ("notes.txt", "x\n"),
        ]);
        let ctx = sandbox.ctx(dir.path());
        let fits_one = "*** Begin Patch\n def add(a, b):\n-    return a - b\n+    return a + b\n*** End Patch\n";
        let ToolOutput::Text(out) = ApplyPatch::run(
            &ctx,
            Args {
                patch: fits_one.into(),
            },
        )
        .unwrap() else {
            panic!()
        };
        assert!(
            out.starts_with("patched calc.py (the patch names no file"),
            "{out}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("calc.py")).unwrap(),
            "def add(a, b):\n    return a + b\n"
        );
        // Lines that fit no file, or fit two: nothing changes, and the model is told to name the file.
        let before = std::fs::read_to_string(dir.path().join("other.py")).unwrap();
        for (patch, expected) in [
            ("-    return x\n+    return y\n", "match no file"),
            ("-def \n+fn \n", "match no file"),
        ] {
            let err = ApplyPatch::run(
                &ctx,
                Args {
                    patch: patch.into(),
                },
            )
            .unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
        std::fs::write(
            dir.path().join("calc.py"),
            "def add(a, b):\n    return a - b\n",
        )
        .unwrap();
        let err = ApplyPatch::run(
            &ctx,
            Args {
                patch: "-    return a - b\n+    return a * b\n".into(),
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("fit 2 files (calc.py, other.py)"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("other.py")).unwrap(),
            before
        );
    }

    #[test]
    fn a_patch_naming_no_file_never_reaches_git_metadata_or_a_file_outside() {
        // The only places its lines fit: .git/config, and a file outside reached through a link.
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, "token = abc\n").unwrap();
        let (dir, sandbox) = ctx_in(&[(".git/config", "token = abc\n"), ("a.txt", "x\n")]);
        std::os::unix::fs::symlink(&secret, dir.path().join("link.txt")).unwrap();
        let ctx = sandbox.ctx(dir.path());
        let err = ApplyPatch::run(
            &ctx,
            Args {
                patch: "-token = abc\n+token = stolen\n".into(),
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("match no file"), "{err}");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "token = abc\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".git/config")).unwrap(),
            "token = abc\n"
        );
    }

    #[test]
    fn a_patch_that_changes_nothing_is_refused_not_reported_as_applied() {
        // What Qwen2.5-Coder-1.5B sent five times over: the buggy line as both `-` and `+`.
        let (dir, sandbox) = ctx_in(&[("calc.py", "def add(a, b):\n    return a - b\n")]);
        let ctx = sandbox.ctx(dir.path());
        for patch in [
            "*** Begin Patch\n-1|     return a - b\n+1|     return a - b\n*** End Patch\n",
            "--- a/calc.py\n+++ b/calc.py\n@@\n-    return a - b\n+    return a - b\n",
        ] {
            let err = ApplyPatch::run(
                &ctx,
                Args {
                    patch: patch.into(),
                },
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("it changes nothing") && err.contains("calc.py"),
                "{err}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("calc.py")).unwrap(),
            "def add(a, b):\n    return a - b\n"
        );
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
