//! `agent log`: list the recorded runs, or show one run's trajectory (readable, or as raw JSON lines).

use std::io::Write;

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
    let mut printer = TerminalReporter::printer();
    for event in &events {
        printer.event(event);
    }
    Ok(0)
}
