//! What the planner and each step are shown of the repository before they read anything: a compact map
//! (files and their top-level symbols, the files the task names first), the project's own
//! instructions for agents (AGENTS.md at the root and in the directories a step touches), and the
//! text of a step's likely files when they are short.
//!
//! A simple line scan per language, not a parser: cheap on big repositories, and good enough to point
//! the model at the right file. It only reads the worktree, through [`crate::hostfs`]: no links out, no
//! special files, bounded sizes.

use std::path::Path;

use regex::Regex;

use crate::hostfs::Beneath;

/// Files larger than this are listed without symbols.
const MAX_SCANNED_BYTES: u64 = 512 * 1024;
/// Symbols listed per file at most.
const MAX_SYMBOLS_PER_FILE: usize = 12;
/// Characters of AGENTS.md text shown at most (per file).
const MAX_AGENTS_MD: usize = 4000;
/// Bytes of one AGENTS.md read at most (a bigger one is not shown).
const MAX_AGENTS_MD_BYTES: u64 = 256 * 1024;
/// Bytes of the step's likely files shown in its brief, all together; a file that does not fit whole
/// is only named (the model reads it with read_file).
const MAX_SHOWN_FILE_BYTES: usize = 6000;

/// Files walked for the map at most (the map shows far fewer; this bounds time and memory).
const MAX_WALKED_FILES: usize = 50_000;

/// The repository map, at most `max_chars` long: one line per file, `path: symbol, symbol`. Files the
/// task mentions come first, then source before tests, shallow before deep; a cut map says how many
/// files it left out.
pub fn repo_map(root: &Path, task: &str, max_chars: usize) -> String {
    let Ok(fs) = Beneath::open(root) else {
        return String::new();
    };
    // Links are not followed and only regular files are listed (a FIFO would block a reader).
    let mut files: Vec<String> = ignore::WalkBuilder::new(fs.root())
        .hidden(false)
        .filter_entry(|e| !crate::hostfs::is_dot_git(e.file_name()))
        .build()
        .flatten()
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .filter_map(|e| {
            e.path()
                .strip_prefix(fs.root())
                .ok()
                .map(|p| p.to_string_lossy().replace('\\', "/"))
        })
        .take(MAX_WALKED_FILES)
        .collect();
    files.sort_by_key(|path| {
        let name = path.rsplit('/').next().unwrap_or(path);
        let mentioned = task.contains(path.as_str()) || task.contains(name);
        let test = path.contains("test");
        (!mentioned, test, path.matches('/').count(), path.clone())
    });
    let mut map = String::new();
    for (shown, path) in files.iter().enumerate() {
        let symbols = symbols_of(&fs, path);
        // A file name is repository content too: newlines or escapes in it must not forge lines.
        let quoted = crate::hostfs::quote_path(path);
        let line = if symbols.is_empty() {
            format!("{quoted}\n")
        } else {
            format!("{quoted}: {}\n", symbols.join(", "))
        };
        if map.len() + line.len() > max_chars {
            map.push_str(&format!(
                "[{} more file(s) not shown; use list_files or search]\n",
                files.len() - shown
            ));
            break;
        }
        map.push_str(&line);
    }
    map
}

/// Top-level symbols of one file, by a per-language line scan.
fn symbols_of(fs: &Beneath, path: &str) -> Vec<String> {
    let Some(pattern) = symbol_pattern(path) else {
        return Vec::new();
    };
    let Ok(bytes) = fs.read(Path::new(path), MAX_SCANNED_BYTES) else {
        return Vec::new();
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Vec::new();
    };
    let mut symbols: Vec<String> = text
        .lines()
        .filter_map(|line| pattern.captures(line))
        .filter_map(|c| {
            let kind = c.name("kind")?.as_str();
            let name = c.name("name")?.as_str();
            Some(format!("{kind} {name}"))
        })
        .collect();
    if symbols.len() > MAX_SYMBOLS_PER_FILE {
        let more = symbols.len() - MAX_SYMBOLS_PER_FILE;
        symbols.truncate(MAX_SYMBOLS_PER_FILE);
        symbols.push(format!("(+{more})"));
    }
    symbols
}

fn symbol_pattern(path: &str) -> Option<Regex> {
    let extension = path.rsplit('.').next()?;
    let pattern = match extension {
        "rs" => {
            r"^(?:pub(?:\([a-z]+\))? )?(?:async )?(?:unsafe )?(?P<kind>fn|struct|enum|trait|mod|type|const|static|macro_rules!) ?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
        }
        "py" => r"^(?:async )?(?P<kind>def|class) (?P<name>[A-Za-z_][A-Za-z0-9_]*)",
        "js" | "ts" | "mjs" | "jsx" | "tsx" => {
            r"^(?:export )?(?:default )?(?:async )?(?P<kind>function|class|interface|type|const) (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)"
        }
        "go" => r"^(?P<kind>func|type) (?:\([^)]*\) )?(?P<name>[A-Za-z_][A-Za-z0-9_]*)",
        _ => return None,
    };
    Regex::new(pattern).ok()
}

/// The AGENTS.md files that apply to `files`: the repository root's, then those of each directory on
/// the way to a touched file (nearer ones last, so they read as the more specific instructions).
/// The text of the step's likely `files` that exist and are short, numbered as read_file numbers lines,
/// whole or not at all, within [`MAX_SHOWN_FILE_BYTES`] together: a small model that sees the code it
/// must change edits it instead of spending turns finding and reading it.
pub fn likely_files(root: &Path, files: &[String]) -> String {
    let Ok(fs) = Beneath::open(root) else {
        return String::new();
    };
    let mut text = String::new();
    let mut left = MAX_SHOWN_FILE_BYTES;
    for file in files {
        let Ok(rel) = crate::hostfs::relative(file) else {
            continue;
        };
        let Ok(bytes) = fs.read(&rel, left as u64) else {
            continue;
        };
        let Ok(content) = String::from_utf8(bytes) else {
            continue;
        };
        let lines: Vec<&str> = content.lines().collect();
        let width = lines.len().to_string().len();
        let mut shown = format!("{file} (lines 1-{n} of {n}):\n", n = lines.len());
        for (i, line) in lines.iter().enumerate() {
            shown.push_str(&format!("{:>width$}| {line}\n", i + 1));
        }
        if shown.len() <= left {
            left -= shown.len();
            text.push_str(&shown);
        }
    }
    text
}

pub fn agents_md(root: &Path, files: &[String]) -> String {
    let mut dirs: Vec<String> = vec![String::new()];
    for file in files {
        let mut prefix = String::new();
        let parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if *part == ".." || *part == "." {
                break;
            }
            prefix.push_str(part);
            prefix.push('/');
            if !dirs.contains(&prefix) {
                dirs.push(prefix.clone());
            }
        }
    }
    let mut text = String::new();
    let Ok(fs) = Beneath::open(root) else {
        return text;
    };
    for dir in dirs {
        let path = format!("{dir}AGENTS.md");
        let Ok(rel) = crate::hostfs::relative(&path) else {
            continue;
        };
        let content = match fs.read(&rel, MAX_AGENTS_MD_BYTES) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(crate::hostfs::FsError::NotFound { .. }) => continue,
            Err(e) => {
                text.push_str(&format!("[{path} not shown: {e}]\n\n"));
                continue;
            }
        };
        let content = content.trim();
        if content.is_empty() {
            continue;
        }
        let shown = if content.len() > MAX_AGENTS_MD {
            let end = content.floor_char_boundary(MAX_AGENTS_MD);
            format!(
                "{}\n[... {path} shortened; read it for the rest]",
                &content[..end]
            )
        } else {
            content.to_string()
        };
        text.push_str(&format!("Instructions from {path}:\n{shown}\n\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_symbols_mentioned_files_first_and_cuts_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("tests")).unwrap();
        std::fs::write(
            root.join("src/lib.rs"),
            "pub fn parse() {}\nstruct Hidden;\n    fn inner() {}\npub(crate) enum Kind {}\n",
        )
        .unwrap();
        std::fs::write(root.join("tests/t.rs"), "fn test_it() {}\n").unwrap();
        std::fs::write(
            root.join("tool.py"),
            "class Tool:\n    def m(self): pass\ndef main():\n",
        )
        .unwrap();
        std::fs::write(root.join("README.md"), "# x\n").unwrap();
        let map = repo_map(root, "fix tool.py", 10_000);
        let lines: Vec<&str> = map.lines().collect();
        assert_eq!(lines[0], "tool.py: class Tool, def main", "{map}");
        assert!(
            map.contains("src/lib.rs: fn parse, struct Hidden, enum Kind"),
            "{map}"
        );
        assert!(!map.contains("inner"), "only top-level symbols: {map}");
        let tests_at = map.find("tests/t.rs").unwrap();
        assert!(map.find("src/lib.rs").unwrap() < tests_at, "{map}");
        let cut = repo_map(root, "", 40);
        assert!(cut.contains("more file(s) not shown"), "{cut}");
    }

    #[test]
    fn agents_md_from_the_root_and_touched_directories_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::fs::write(root.join("AGENTS.md"), "use tabs").unwrap();
        std::fs::write(root.join("a/AGENTS.md"), "a rules").unwrap();
        std::fs::write(root.join("c/AGENTS.md"), "c rules").unwrap();
        let text = agents_md(root, &["a/b/x.rs".into(), "../../etc/passwd".into()]);
        assert!(
            text.contains("use tabs") && text.contains("a rules"),
            "{text}"
        );
        assert!(!text.contains("c rules"), "{text}");
        assert!(text.find("use tabs").unwrap() < text.find("a rules").unwrap());
        assert_eq!(agents_md(tempfile::tempdir().unwrap().path(), &[]), "");
    }

    #[test]
    fn short_likely_files_are_shown_whole_and_numbered_others_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link.py")).unwrap();
        std::fs::write(root.join("calc.py"), "def add(a, b):\n    return a - b\n").unwrap();
        std::fs::write(root.join("big.py"), "x = 1\n".repeat(2000)).unwrap();
        let files: Vec<String> = ["missing.py", "big.py", "link.py", "calc.py", "../x"]
            .map(String::from)
            .to_vec();
        let text = likely_files(root, &files);
        assert_eq!(
            text,
            "calc.py (lines 1-2 of 2):\n1| def add(a, b):\n2|     return a - b\n"
        );
    }
}
