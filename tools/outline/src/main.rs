//! `outline`: the symbols (functions, types, impls, modules, classes) of a Rust or Python file with
//! their line numbers, so the agent can find its way in a big file without reading all of it.
//!
//! Plugin protocol (docs/plugins.md): the arguments `{"path": "..."}` as JSON on stdin; the outline on
//! stdout; an error on stderr with exit code 1 (bad input) or 2 (bad arguments). A directory gives the
//! outline of each Rust/Python file directly inside it.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
}

/// Most symbols listed per file; a file with more is cut with a note.
const MAX_SYMBOLS: usize = 400;
/// Longest line shown for one symbol.
const MAX_WIDTH: usize = 120;

fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read the arguments from stdin: {e}");
        return ExitCode::from(2);
    }
    let args: Args = match serde_json::from_str(&input) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bad arguments {input:?}: {e}; expected {{\"path\": \"src/lib.rs\"}}");
            return ExitCode::from(2);
        }
    };
    let path = Path::new(&args.path);
    let result = if path.is_dir() {
        outline_dir(path)
    } else {
        outline_file(path)
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Clone, Copy)]
enum Language {
    Rust,
    Python,
}

fn language(path: &Path) -> Option<Language> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("rs") => Some(Language::Rust),
        Some("py" | "pyi") => Some(Language::Python),
        _ => None,
    }
}

fn outline_dir(dir: &Path) -> Result<String, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && language(p).is_some())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{} has no Rust or Python files directly inside it; give a file, or a folder that has some",
            dir.display()
        ));
    }
    let mut out = String::new();
    for file in files {
        out.push_str(&outline_file(&file)?);
        out.push('\n');
    }
    Ok(out)
}

fn outline_file(path: &Path) -> Result<String, String> {
    let Some(lang) = language(path) else {
        return Err(format!(
            "{}: outline knows Rust (.rs) and Python (.py) files; use search or read_file for others",
            path.display()
        ));
    };
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let symbols = match lang {
        Language::Rust => rust_symbols(&text),
        Language::Python => python_symbols(&text),
    };
    let lines = text.lines().count();
    let mut out = format!(
        "{}: {lines} lines, {} symbols\n",
        path.display(),
        symbols.len()
    );
    for (number, depth, line) in symbols.iter().take(MAX_SYMBOLS) {
        out.push_str(&format!("{number:>6}  {}{}\n", "  ".repeat(*depth), shorten(line)));
    }
    if symbols.len() > MAX_SYMBOLS {
        out.push_str(&format!("... {} more symbols\n", symbols.len() - MAX_SYMBOLS));
    }
    Ok(out)
}

fn shorten(line: &str) -> String {
    let line = line.trim_end_matches(['{', ':', ' ']).trim_end();
    if line.chars().count() <= MAX_WIDTH {
        line.to_string()
    } else {
        let cut: String = line.chars().take(MAX_WIDTH - 3).collect();
        format!("{cut}...")
    }
}

/// Indentation in columns (a tab counts 4).
fn indent(line: &str) -> usize {
    line.chars()
        .take_while(|c| c.is_whitespace())
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// `(line number, depth, text)` of each item: fn, struct, enum, union, trait, impl, mod, type, const,
/// static and macro_rules!, with their visibility and qualifiers.
fn rust_symbols(text: &str) -> Vec<(usize, usize, String)> {
    let mut symbols = Vec::new();
    let mut in_block_comment = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if in_block_comment {
            if trimmed.contains("*/") {
                in_block_comment = false;
            }
            continue;
        }
        if trimmed.starts_with("/*") {
            in_block_comment = !trimmed.contains("*/");
            continue;
        }
        if trimmed.starts_with("//") || trimmed.starts_with('#') {
            continue;
        }
        if is_rust_item(trimmed) {
            symbols.push((index + 1, indent(line) / 4, trimmed.to_string()));
        }
    }
    symbols
}

fn is_rust_item(line: &str) -> bool {
    let mut rest = line;
    // Visibility: pub, pub(crate), pub(super), pub(in path).
    if let Some(after) = rest.strip_prefix("pub") {
        if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => rest = &inner[end + 1..],
                None => return false,
            }
        } else if after.starts_with(' ') {
            rest = after;
        } else {
            return false;
        }
        rest = rest.trim_start();
    }
    loop {
        let word = first_word(rest);
        match word {
            "fn" | "struct" | "enum" | "union" | "trait" | "impl" | "mod" | "type" | "static" => {
                return rest.len() > word.len()
                    && matches!(rest.as_bytes()[word.len()], b' ' | b'<' | b'(');
            }
            "const" => {
                // `const fn` is a qualifier; `const NAME: T` an item; `const _: () = ...` too.
                let after = rest[5..].trim_start();
                if first_word(after) == "fn" || first_word(after) == "unsafe" {
                    rest = after;
                    continue;
                }
                return rest.len() > 5 && rest.as_bytes()[5] == b' ';
            }
            "async" | "unsafe" | "default" | "auto" => rest = rest[word.len()..].trim_start(),
            "extern" => {
                rest = rest[6..].trim_start();
                if rest.starts_with('"') {
                    match rest[1..].find('"') {
                        Some(end) => rest = rest[end + 2..].trim_start(),
                        None => return false,
                    }
                }
                if rest.starts_with('{') || first_word(rest) == "crate" {
                    return false;
                }
            }
            _ => return rest.starts_with("macro_rules!"),
        }
        if rest.is_empty() {
            return false;
        }
    }
}

fn first_word(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// `(line number, depth, text)` of each `class`, `def` and `async def`, outside triple-quoted strings.
fn python_symbols(text: &str) -> Vec<(usize, usize, String)> {
    let mut symbols = Vec::new();
    let mut in_string: Option<&str> = None;
    let mut depths: Vec<usize> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(quote) = in_string {
            if trimmed.contains(quote) {
                in_string = None;
            }
            continue;
        }
        for quote in ["\"\"\"", "'''"] {
            if trimmed.matches(quote).count() % 2 == 1 {
                in_string = Some(quote);
            }
        }
        let is_def = ["def ", "async def ", "class "]
            .iter()
            .any(|k| trimmed.starts_with(k));
        if !is_def {
            continue;
        }
        let column = indent(line);
        while depths.last().is_some_and(|&d| d >= column) {
            depths.pop();
        }
        symbols.push((index + 1, depths.len(), trimmed.to_string()));
        depths.push(column);
    }
    symbols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_items_and_not_other_lines() {
        let text = "\
//! docs
use std::fmt;
/* struct Hidden; */
pub struct Point {
    x: i32,
}
impl<T> From<T> for Point {
    pub(crate) const fn origin() -> Self {
        let fn_like = 1;
    }
    async unsafe fn go(&self) {}
}
const LIMIT: usize = 3;
extern \"C\" fn callback() {}
macro_rules! twice { () => {} }
pub(in crate::a) enum Kind { A }
";
        let names: Vec<(usize, usize, String)> = rust_symbols(text);
        let lines: Vec<usize> = names.iter().map(|s| s.0).collect();
        assert_eq!(lines, [4, 7, 8, 11, 13, 14, 15, 16], "{names:?}");
        assert_eq!(names[2].1, 1);
    }

    #[test]
    fn python_defs_nest_by_indentation() {
        let text = "\
class A:
    \"\"\"
    def not_this(self):
    \"\"\"
    def a(self):
        def inner():
            pass
    async def b(self):
        pass
def top():
    pass
";
        let symbols = python_symbols(text);
        let got: Vec<(usize, usize)> = symbols.iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(got, [(1, 0), (5, 1), (6, 2), (8, 1), (10, 0)]);
    }
}
