//! `apply_patch {patch}`: edit files through a unified diff, all files or none.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{beneath, Tool, ToolContext, ToolError, ToolOutput};
use crate::hostfs::Beneath;
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
    /// What the three formats open with: a removed or added line (`--- a/PATH` included), a hunk
    /// header, an envelope line, a `diff`/`Index:` header, or a SEARCH block, with or without its
    /// path on the line before.
    const BODY_OPENS: Option<&'static str> =
        Some(r"-|\+|@@|\*\*\* |<<<<<<<|diff |Index: |[^\s`][^\n]*\n[ \t]*<<<<<<<");

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
            None => return replace_the_file_it_rewrites(ctx, patch),
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

/// Visit the repository's text files (path, shown path, content), within the bounds above.
fn for_each_text_file(fs: &Beneath, mut visit: impl FnMut(&Path, String, String)) {
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
        visit(rel, shown, text);
    }
}

/// Hunks that name no file go to the one file of the repository they apply to; where they fit none
/// or several, nothing changes and the model is told to name the file.
fn apply_to_the_one_file_it_fits(
    ctx: &ToolContext<'_>,
    hunks: &[Hunk],
) -> Result<ToolOutput, ToolError> {
    let fs = beneath(ctx.root)?;
    let mut fits = Vec::new();
    for_each_text_file(&fs, |rel, shown, text| {
        if let Ok(applied) = apply_hunks_noted(&shown, &text, hunks, true) {
            let same = applied.text == text;
            fits.push((rel.to_path_buf(), shown, applied, same));
        }
    });
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

/// How alike a whole file sent as a patch must be to the file it replaces (the share of lines the
/// two have in common), and how much more alike than any other file.
const WHOLE_FILE_LIKENESS: f32 = 0.6;
const WHOLE_FILE_MARGIN: f32 = 0.15;

/// Small models send the whole corrected file where a diff belongs (no `---`/`+++`, no `@@`, no
/// `-`/`+` lines). When it is clearly a new version of one file of the repository (most of its
/// lines shared with that file, far more than with any other), that file is replaced, and the model
/// is told what happened; otherwise nothing changes and the error says how to write a patch.
fn replace_the_file_it_rewrites(
    ctx: &ToolContext<'_>,
    text: &str,
) -> Result<ToolOutput, ToolError> {
    let empty = || Err(patch_error(PatchError::Empty));
    if text.lines().count() < 2 {
        return empty();
    }
    let fs = beneath(ctx.root)?;
    let mut ranked: Vec<(f32, PathBuf, String, bool)> = Vec::new();
    for_each_text_file(&fs, |rel, shown, old| {
        let likeness = similar::TextDiff::from_lines(old.as_str(), text).ratio();
        ranked.push((likeness, rel.to_path_buf(), shown, old == text));
    });
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (best, second) = match ranked.as_slice() {
        [best, rest @ ..] => (best, rest.first().map_or(0.0, |r| r.0)),
        [] => return empty(),
    };
    let (likeness, path, shown, same) = best;
    if *likeness < WHOLE_FILE_LIKENESS || likeness - second < WHOLE_FILE_MARGIN {
        return empty();
    }
    if *same {
        return Err(ToolError::Failed(format!(
            "{NO_CHANGE} (the patch is the whole of {shown}, as it already is)"
        )));
    }
    write_all_or_nothing(&fs, &[(path.clone(), Some(text.as_bytes().to_vec()))]).map_err(|e| {
        ToolError::Failed(format!(
            "writing the patched file failed, nothing was changed: {e}"
        ))
    })?;
    Ok(ToolOutput::Text(format!(
        "replaced {shown} ({} lines): the patch was not a diff but a whole file, {:.0}% like {shown} and like no other file; next time send a unified diff, or the whole file with write_file",
        text.lines().count(),
        likeness * 100.0
    )))
}

fn patch_error(e: PatchError) -> ToolError {
    ToolError::Failed(format!("patch not applied, no file was changed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests_support::ctx_in;

    #[test]
    fn a_whole_file_sent_as_a_patch_replaces_the_one_file_it_rewrites() {
        let calc = "def add(a, b):\n    \"\"\"Sum.\"\"\"\n    return a - b\n\n\ndef label(n):\n    return f\"total: {n}\"\n";
        let test = "import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n";
        let fixed = calc.replace("a - b", "a + b");
        let (dir, sandbox) = ctx_in(&[("calc.py", calc), ("test_calc.py", test)]);
        let ctx = sandbox.ctx(dir.path());
        let out = ApplyPatch::run(
            &ctx,
            Args {
                patch: fixed.clone(),
            },
        )
        .unwrap();
        let ToolOutput::Text(text) = out else {
            panic!("{out:?}")
        };
        assert!(
            text.contains("replaced calc.py") && text.contains("not a diff"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("calc.py")).unwrap(),
            fixed
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("test_calc.py")).unwrap(),
            test
        );
        // The same again changes nothing and says so.
        let err = ApplyPatch::run(&ctx, Args { patch: fixed })
            .unwrap_err()
            .to_string();
        assert!(err.contains("changes nothing"), "{err}");

        // Two files it could be, or none: nothing is written.
        let (dir, sandbox) = ctx_in(&[("a.py", calc), ("b.py", calc)]);
        let ctx = sandbox.ctx(dir.path());
        let err = ApplyPatch::run(
            &ctx,
            Args {
                patch: calc.replace("a - b", "a + b"),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("holds no file changes"), "{err}");
        let err = ApplyPatch::run(
            &ctx,
            Args {
                patch: "print('hello')\nprint('world')\n".into(),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("holds no file changes"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.py")).unwrap(),
            calc
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b.py")).unwrap(),
            calc
        );
    }

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
    fn a_whole_file_never_replaces_git_metadata_or_a_file_outside() {
        // The only files it is like: .git/config, and a file outside reached through a link.
        let config =
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://example.com/r.git\n";
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, config).unwrap();
        let (dir, sandbox) = ctx_in(&[(".git/config", config), ("a.txt", "x\n")]);
        std::os::unix::fs::symlink(&secret, dir.path().join("link.txt")).unwrap();
        let ctx = sandbox.ctx(dir.path());
        let hostile = config.replace("example.com", "attacker.example");
        let err = ApplyPatch::run(&ctx, Args { patch: hostile }).unwrap_err();
        assert!(err.to_string().contains("holds no file changes"), "{err}");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), config);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".git/config")).unwrap(),
            config
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
