//! Phase 5 of a run: the model that drives it.

use anyhow::Context;

use super::start::Start;
use crate::agent::ResumePoint;
use crate::app::UsageError;
use crate::cli::RunArgs;
use crate::model::replay::ReplayModel;
use crate::model::{ChatModel, ModelSpec};
use crate::protocol::{Event, Reporter};
use crate::runs;

/// The model for this start: a replay of the recorded turns, the scripted model continued after the
/// turns it had used (resuming a replay run), or the model the command line names.
pub(super) fn load(
    args: &RunArgs,
    spec: &ModelSpec,
    start: &Start,
    resume: Option<&ResumePoint>,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Box<dyn ChatModel>> {
    if let Start::Replay { record, turns, .. } = start {
        let path = runs::runs_dir().join(&record.run_id).join("events.jsonl");
        return Ok(Box::new(ReplayModel::new(path, turns.clone())));
    }
    if let (ModelSpec::Replay(path), Some(point)) = (spec, resume) {
        return Ok(Box::new(
            ReplayModel::from_file(path)?.skipping(point.turns),
        ));
    }
    if spec.is_embedded() {
        reporter.event(&Event::Note {
            message: format!("loading {spec} (mistral.rs, in-process)"),
        });
    }
    let options = args.model_options.options();
    if let Some(template) = &options.chat_template {
        if !template.is_file() {
            return Err(UsageError(format!(
                "--chat-template {}: no such file",
                template.display()
            ))
            .into());
        }
    }
    spec.load(&options)
        .with_context(|| format!("loading model {spec}"))
}
