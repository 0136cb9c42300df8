//! `agent log`: list the recorded runs, or show one run's trajectory (readable, or as raw JSON lines).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::UsageError;
use crate::cli::LogArgs;
use crate::report::{first_line, Event, Reporter, TerminalReporter};
use crate::runs::{self, RunRecord};

pub fn log(args: LogArgs) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    let Some(run) = args.run else {
        let ids = runs::list_ids();
        if ids.is_empty() {
            writeln!(out, "no runs recorded in {}", runs::runs_dir().display())?;
            return Ok(0);
        }
        for id in ids {
            let dir = runs::runs_dir().join(&id);
            let task = RunRecord::load(&dir)
                .map(|r| first_line(r.task.trim_start_matches(['#', ' ']), 60))
                .unwrap_or_default();
            let outcome = runs::read_events(&dir)
                .ok()
                .and_then(|events| {
                    events.into_iter().rev().find_map(|e| match e {
                        Event::Finished { outcome, .. } => Some(format!("{outcome:?}")),
                        _ => None,
                    })
                })
                .unwrap_or_else(|| "unfinished".into());
            writeln!(out, "{id}  {outcome:<15}  {task}")?;
        }
        return Ok(0);
    };
    let dir = runs::find(&run).map_err(UsageError)?;
    if args.json {
        let text = std::fs::read_to_string(dir.join("events.jsonl"))
            .map_err(|e| UsageError(format!("cannot read the log of {run}: {e}")))?;
        out.write_all(text.as_bytes())?;
        return Ok(0);
    }
    drop(out);
    let events = runs::read_events(&dir).map_err(UsageError)?;
    if let Some(path) = args.html {
        return write_html(&dir, &events, &path);
    }
    let mut printer = TerminalReporter::printer();
    for event in &events {
        printer.event(event);
    }
    Ok(0)
}

/// `agent log RUN --html FILE`: the page, with each commit's diff read from the repository the run
/// worked on (commits no longer there are said to be gone). Written whole or not at all.
fn write_html(dir: &Path, events: &[Event], path: &Path) -> anyhow::Result<u8> {
    let repo = RunRecord::load(dir).ok().map(|r| r.repo);
    let mut diffs = BTreeMap::new();
    for event in events {
        if let (Event::Commit { commit, .. }, Some(repo)) = (event, &repo) {
            if let Ok(changes) = crate::vcs::commit_changes(repo, commit) {
                diffs.insert(commit.clone(), crate::report::diff::render(&changes, false));
            }
        }
    }
    let page = crate::report::html::render(events, &diffs);
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write into {}", parent.display()))?;
    file.write_all(page.as_bytes())?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {} ({} KB)", path.display(), page.len() / 1024 + 1);
    Ok(0)
}
