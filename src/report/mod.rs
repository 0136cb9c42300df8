//! Reporting: the events a run emits, and the sinks that show or store them (terminal with progress,
//! plain lines, JSON lines, the run log), plus coloured diffs and the HTML page of a recorded run.
//!
//! The agent loop only emits [`Event`]s; how they look is decided here. The JSON form of an event is a
//! public interface for scripts and CI: add fields, never rename them.

pub mod diff;
pub mod html;
pub mod pr;
mod terminal;

use std::io::Write;

pub use crate::protocol::{Event, Outcome, Reporter};
pub use crate::text::first_line;
pub use terminal::TerminalReporter;

/// One JSON object per line on stdout, for scripts and CI.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&mut self, event: &Event) {
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// The run log: every event, in full, as JSON lines in a file outside the repository.
pub struct LogReporter {
    file: std::fs::File,
}

impl LogReporter {
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(Self {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        })
    }
}

impl Reporter for LogReporter {
    fn event(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(self.file, "{line}");
        }
    }
}

/// Sends every event to several reporters.
pub struct Fanout(pub Vec<Box<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&mut self, event: &Event) {
        for reporter in &mut self.0 {
            reporter.event(event);
        }
    }
    fn close(&mut self) {
        for reporter in &mut self.0 {
            reporter.close();
        }
    }
}

/// Text from the model, a command or the repository made safe to print on a terminal: escape
/// sequences (colours, cursor moves that hide lines, OSC 52 clipboard writes, titles, hyperlinks),
/// carriage returns, backspaces, other control characters and bidirectional overrides (which make
/// a line read differently from what it holds) are shown as visible escapes such as `\x1b`.
/// Newlines and tabs stay.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            if (c as u32) < 0x100 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Every string inside `event` made [`terminal_safe`], for the reporters that show events to people.
pub fn terminal_safe_event(event: &Event) -> Event {
    fn clean(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(safe) = terminal_safe(s) {
                    *s = safe;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
            serde_json::Value::Object(map) => map.values_mut().for_each(clean),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(event) else {
        return event.clone();
    };
    clean(&mut value);
    serde_json::from_value(value).unwrap_or_else(|_| event.clone())
}
