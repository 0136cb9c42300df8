//! `todo_scan`: the unfinished places of a repository — TODO, FIXME, XXX, HACK markers, `todo!()`,
//! `unimplemented!()` and `raise NotImplementedError` — with their locations, so the agent can find
//! what is left to do without reading every file.
//!
//! Plugin protocol (docs/plugins.md): the arguments `{"path": "src"}` (optional, default the whole
//! repository) as JSON on stdin; one `path:line: text` per hit on stdout; an error on stderr with exit
//! code 1 (bad input) or 2 (bad arguments).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default)]
    path: Option<String>,
}

/// Most hits listed; the count of the rest is given.
const MAX_HITS: usize = 300;
/// Files larger than this are skipped (generated or data).
const MAX_FILE_BYTES: u64 = 2 << 20;
/// Longest text shown for one hit.
const MAX_WIDTH: usize = 160;
/// Folders that hold dependencies or build output, not the project's own unfinished work.
const SKIP_DIRS: &[&str] = &[
    "target", "node_modules", "__pycache__", "venv", "dist", "build", "vendor",
];
/// Comment markers: matched as whole, upper-case words.
const WORD_MARKERS: &[&str] = &["TODO", "FIXME", "XXX", "HACK"];
/// Code markers: matched anywhere.
const CODE_MARKERS: &[&str] = &["todo!(", "unimplemented!(", "NotImplementedError"];

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read the arguments from stdin: {e}");
        return ExitCode::from(2);
    }
    let args: Args = if input.trim().is_empty() {
        Args::default()
    } else {
        match serde_json::from_str(&input) {
            Ok(args) => args,
            Err(e) => {
                eprintln!("bad arguments {input:?}: {e}; expected {{\"path\": \"src\"}} or {{}}");
                return ExitCode::from(2);
            }
        }
    };
    let start = PathBuf::from(args.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("."));
    if !start.exists() {
        eprintln!("{} does not exist; give a file or folder relative to the repository root", start.display());
        return ExitCode::from(1);
    }
    let mut scan = Scan::default();
    scan.visit(&start);
    print!("{}", scan.report());
    ExitCode::SUCCESS
}

#[derive(Default)]
struct Scan {
    hits: Vec<String>,
    total: usize,
    files_scanned: usize,
    files_with_hits: usize,
}

impl Scan {
    fn visit(&mut self, path: &Path) {
        if path.is_dir() {
            let Ok(entries) = std::fs::read_dir(path) else { return };
            let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            for child in children {
                let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if child.is_dir() && (name.starts_with('.') || SKIP_DIRS.contains(&name)) {
                    continue;
                }
                self.visit(&child);
            }
        } else if path.is_file() {
            self.scan_file(path);
        }
    }

    fn scan_file(&mut self, path: &Path) {
        if path.metadata().map_or(true, |m| m.len() > MAX_FILE_BYTES) {
            return;
        }
        let Ok(bytes) = std::fs::read(path) else { return };
        if bytes.iter().take(8192).any(|&b| b == 0) {
            return; // binary
        }
        self.files_scanned += 1;
        let text = String::from_utf8_lossy(&bytes);
        let shown = path.strip_prefix("./").unwrap_or(path).display().to_string();
        let mut found = false;
        for (index, line) in text.lines().enumerate() {
            if let Some(marker) = marker_in(line) {
                found = true;
                self.total += 1;
                if self.hits.len() < MAX_HITS {
                    self.hits.push(format!("{shown}:{}: {marker}: {}", index + 1, shorten(line.trim())));
                }
            }
        }
        if found {
            self.files_with_hits += 1;
        }
    }

    fn report(&self) -> String {
        let mut out = format!(
            "{} marker(s) in {} file(s) ({} text files scanned)\n",
            self.total, self.files_with_hits, self.files_scanned
        );
        for hit in &self.hits {
            out.push_str(hit);
            out.push('\n');
        }
        if self.total > self.hits.len() {
            out.push_str(&format!(
                "... {} more; narrow the scan with \"path\"\n",
                self.total - self.hits.len()
            ));
        }
        out
    }
}

/// The first marker in `line`, if any.
fn marker_in(line: &str) -> Option<&'static str> {
    for marker in CODE_MARKERS {
        if line.contains(marker) {
            return Some(marker.trim_end_matches('('));
        }
    }
    let bytes = line.as_bytes();
    for marker in WORD_MARKERS {
        let mut from = 0;
        while let Some(at) = line[from..].find(marker) {
            let start = from + at;
            let end = start + marker.len();
            let word_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
            let before_ok = start == 0 || !word_char(bytes[start - 1]);
            let after_ok = end == bytes.len() || !word_char(bytes[end]);
            if before_ok && after_ok {
                return Some(marker);
            }
            from = end;
        }
    }
    None
}

fn shorten(line: &str) -> String {
    if line.chars().count() <= MAX_WIDTH {
        line.to_string()
    } else {
        let cut: String = line.chars().take(MAX_WIDTH - 3).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_whole_words_or_code() {
        assert_eq!(marker_in("// TODO: later"), Some("TODO"));
        assert_eq!(marker_in("# FIXME(bob) wrong"), Some("FIXME"));
        assert_eq!(marker_in("let todos = TODOS;"), None);
        assert_eq!(marker_in("fn f() { todo!() }"), Some("todo!"));
        assert_eq!(marker_in("    unimplemented!(\"x\")"), Some("unimplemented!"));
        assert_eq!(marker_in("    raise NotImplementedError"), Some("NotImplementedError"));
        assert_eq!(marker_in("MY_TODO_LIST"), None);
        assert_eq!(marker_in("XXX"), Some("XXX"));
    }
}
