//! `search {pattern, path?}`: regex search over the repository's text files, honouring .gitignore.

use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::UTF8;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use ignore::WalkState;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::list_files::walker;
use super::{confine, display_path, Tool, ToolContext, ToolError, ToolOutput};

/// Most matching lines returned per call.
const MAX_MATCHES: usize = 200;
/// Matching lines collected before sorting at most (beyond it they are only counted).
const MAX_KEPT: usize = 20_000;
/// Matching lines longer than this are shortened.
const MAX_LINE_CHARS: usize = 300;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Regular expression (Rust regex syntax) to look for.
    #[schemars(length(max = 500))]
    pub pattern: String,
    /// File or directory to search, relative to the repository root; the whole repository when omitted.
    #[serde(default)]
    pub path: Option<String>,
}

pub struct Search;

impl Tool for Search {
    type Args = Args;
    const NAME: &'static str = "search";
    const DESCRIPTION: &'static str =
        "Search the repository's files for a regular expression; prints `path:line: text` for each match.";

    fn run(ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        let raw = args.path.as_deref().unwrap_or(".");
        let dir = confine(ctx.root, raw)?;
        let matcher = RegexMatcherBuilder::new()
            .build(&args.pattern)
            .map_err(|e| {
                ToolError::Failed(format!(
                    "invalid regular expression {:?}: {e}",
                    args.pattern
                ))
            })?;
        let root = ctx
            .root
            .canonicalize()
            .unwrap_or_else(|_| ctx.root.to_path_buf());
        // Files are searched in parallel; the hits are sorted afterwards, so the answer does not
        // depend on which thread finished first.
        let found: Mutex<Vec<(String, u64, String)>> = Mutex::new(Vec::new());
        let total = AtomicUsize::new(0);
        walker(&dir).build_parallel().run(|| {
            let matcher = matcher.clone();
            let mut searcher = SearcherBuilder::new()
                .binary_detection(BinaryDetection::quit(0))
                .line_number(true)
                .build();
            let (root, found, total) = (&root, &found, &total);
            Box::new(move |entry| {
                let Ok(entry) = entry else {
                    return WalkState::Continue;
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return WalkState::Continue;
                }
                let shown = display_path(root, entry.path());
                let mut local = Vec::new();
                let mut count = 0usize;
                // Unreadable or non-UTF-8 files are skipped rather than failing the whole search.
                let _ = searcher.search_path(
                    &matcher,
                    entry.path(),
                    UTF8(|line_number, line| {
                        count += 1;
                        if local.len() < MAX_MATCHES {
                            let line: String =
                                line.trim_end().chars().take(MAX_LINE_CHARS).collect();
                            local.push((shown.clone(), line_number, line));
                        }
                        Ok(true)
                    }),
                );
                total.fetch_add(count, Ordering::Relaxed);
                if !local.is_empty() {
                    if let Ok(mut found) = found.lock() {
                        if found.len() < MAX_KEPT {
                            found.extend(local);
                        }
                    }
                }
                WalkState::Continue
            })
        });
        let mut found = found.into_inner().unwrap_or_default();
        found.sort();
        let more = total
            .into_inner()
            .saturating_sub(MAX_MATCHES.min(found.len()));
        let hits: Vec<String> = found
            .into_iter()
            .take(MAX_MATCHES)
            .map(|(path, n, line)| format!("{path}:{n}: {line}"))
            .collect();
        if hits.is_empty() {
            return Ok(ToolOutput::Text(format!(
                "no matches for {:?} under {raw}",
                args.pattern
            )));
        }
        let mut out = hits.join("\n");
        if more > 0 {
            out.push_str(&format!(
                "\n[{more} more matches not shown; narrow the pattern or the path]"
            ));
        }
        if out.len() > ctx.output_limit {
            let cut = out.floor_char_boundary(ctx.output_limit);
            out.truncate(cut);
            out.push_str("\n[output limit reached; narrow the pattern or the path]");
        }
        Ok(ToolOutput::Text(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests_support::ctx_in;

    #[test]
    fn finds_matches_with_line_numbers_and_skips_ignored() {
        let (dir, sandbox) = ctx_in(&[
            (".gitignore", "build/\n"),
            ("src/lib.rs", "fn a() {}\nfn abbreviate() {}\n"),
            ("build/out.rs", "fn abbreviate() {}\n"),
        ]);
        let ctx = sandbox.ctx(dir.path());
        let ToolOutput::Text(out) = Search::run(
            &ctx,
            Args {
                pattern: "fn ab+".into(),
                path: None,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(out, "src/lib.rs:2: fn abbreviate() {}");
        // Hits from files searched in parallel come back in path and line order.
        let (dir, sandbox) = ctx_in(&[
            ("b/z.rs", "hit 1\nhit 2\n"),
            ("a.rs", "hit 3\n"),
            ("b/a.rs", "hit 4\n"),
        ]);
        let ToolOutput::Text(out) = Search::run(
            &sandbox.ctx(dir.path()),
            Args {
                pattern: "hit".into(),
                path: None,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            out,
            "a.rs:1: hit 3\nb/a.rs:1: hit 4\nb/z.rs:1: hit 1\nb/z.rs:2: hit 2"
        );
        let err = Search::run(
            &ctx,
            Args {
                pattern: "(".into(),
                path: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid regular expression"));
    }
}
