//! `agent apply`: a patch in any format the agent reads, applied to a directory all or nothing.

use std::io::{Read, Write};

use anyhow::Context;

use super::UsageError;
use crate::cli::ApplyArgs;
use crate::patch;

/// `agent apply`: apply a patch to a directory atomically, or with `--dry-run` only report. Returns the
/// process exit code: 0 applied, 1 refused.
pub fn apply(args: ApplyArgs) -> anyhow::Result<u8> {
    let text = if args.patch == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the patch from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.patch)
            .map_err(|e| UsageError(format!("cannot read patch file {}: {e}", args.patch)))?
    };
    if !args.repo.is_dir() {
        return Err(
            UsageError(format!("--repo {} is not a directory", args.repo.display())).into(),
        );
    }
    let refused = |reason: String| {
        eprintln!("refused: {reason}\nnothing was changed");
        Ok(1)
    };
    let (format, files) = match patch::parse_any(&text) {
        Ok(parsed) => parsed,
        Err(e) => return refused(e.to_string()),
    };
    // The checkout and the patch may both be hostile (a tracked link to `.git` or out of the tree):
    // every read and write goes through the same confined layer as the agent's own tools.
    let fs = match crate::hostfs::Beneath::open(&args.repo) {
        Ok(fs) => fs,
        Err(e) => return Err(UsageError(format!("--repo: {e}")).into()),
    };
    let changes = match patch::plan(&files, &fs) {
        Ok(changes) => changes,
        Err(e) => return refused(e.to_string()),
    };
    let hunks: usize = files.iter().map(|f| f.hunks.len()).sum();
    let mut out = std::io::stdout().lock();
    if args.check {
        for change in &changes {
            writeln!(out, "would be {}", change.describe_with(": "))?;
        }
        writeln!(
            out,
            "the patch ({format:?}, {} file(s), {hunks} hunk(s)) applies cleanly",
            files.len()
        )?;
        return Ok(0);
    }
    let writes: Vec<_> = changes
        .iter()
        .map(|c| (c.path.clone(), c.content.clone()))
        .collect();
    if let Err(e) = patch::write_all_or_nothing(&fs, &writes) {
        return refused(format!(
            "writing failed ({e}); files already written were restored"
        ));
    }
    for change in &changes {
        writeln!(out, "{}", change.describe_with(": "))?;
    }
    Ok(0)
}
