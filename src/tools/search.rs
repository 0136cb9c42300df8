//! `search {pattern, path?}`: regex search over the repository's text files, honouring .gitignore.

use grep_regex::RegexMatcherBuilder;
use grep_searcher::sinks::UTF8;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use schemars::JsonSchema;
use serde::Deserialize;

use super::list_files::walker;
use super::{confine, display_path, Tool, ToolContext, ToolError, ToolOutput};

/// Most matching lines returned per call.
const MAX_MATCHES: usize = 200;
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
        let mut searcher = SearcherBuilder::new()
            .binary_detection(BinaryDetection::quit(0))
            .line_number(true)
            .build();
        let root = ctx
            .root
            .canonicalize()
            .unwrap_or_else(|_| ctx.root.to_path_buf());
        let mut hits = Vec::new();
        let mut more = 0usize;
        for entry in walker(&dir).build().flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let shown = display_path(&root, entry.path());
            // Unreadable or non-UTF-8 files are skipped rather than failing the whole search.
            let _ = searcher.search_path(
                &matcher,
                entry.path(),
                UTF8(|line_number, line| {
                    if hits.len() < MAX_MATCHES {
                        let line = line.trim_end();
                        let line: String = line.chars().take(MAX_LINE_CHARS).collect();
                        hits.push(format!("{shown}:{line_number}: {line}"));
                    } else {
                        more += 1;
                    }
                    Ok(true)
                }),
            );
        }
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
