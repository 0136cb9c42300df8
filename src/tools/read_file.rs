//! `read_file {path, start_line?, end_line?}`: show a text file, or part of it, with line numbers.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{beneath, fs_error, Tool, ToolContext, ToolError, ToolOutput};
use crate::hostfs::{FsError, Kind};

/// Files larger than this are refused whole; read them in ranges.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Lines shown per call when no range is given.
const DEFAULT_LINES: usize = 400;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// File path relative to the repository root.
    #[schemars(length(max = 500))]
    pub path: String,
    /// First line to show (1-based, inclusive).
    #[serde(default)]
    pub start_line: Option<usize>,
    /// Last line to show (inclusive).
    #[serde(default)]
    pub end_line: Option<usize>,
}

pub struct ReadFile;

impl Tool for ReadFile {
    type Args = Args;
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str =
        "Read a text file of the repository. Lines are shown as `N| text`; the `N| ` prefix is not part of the file. Use start_line/end_line for long files.";

    fn run(ctx: &ToolContext<'_>, args: Args) -> Result<ToolOutput, ToolError> {
        let rel = crate::hostfs::relative(&args.path).map_err(fs_error)?;
        let fs = beneath(ctx.root)?;
        if fs.kind(&rel).map_err(fs_error)? == Some(Kind::Dir) {
            return Err(ToolError::Failed(format!(
                "{} is a directory; use list_files to see what it holds",
                args.path
            )));
        }
        let bytes = fs.read(&rel, MAX_FILE_BYTES).map_err(|e| match e {
            FsError::TooLarge { size, .. } => ToolError::Failed(format!(
                "{} is {size} bytes, more than the {MAX_FILE_BYTES}-byte limit; use search to find the part you need",
                args.path
            )),
            other => fs_error(other),
        })?;
        if bytes.iter().take(8192).any(|&b| b == 0) {
            return Err(ToolError::Failed(format!(
                "{} looks binary; only text files can be read",
                args.path
            )));
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let total = lines.len();
        if total == 0 {
            return Ok(ToolOutput::Text(format!("{} is empty", args.path)));
        }
        let start = args.start_line.unwrap_or(1).max(1);
        if start > total {
            return Err(ToolError::Failed(format!(
                "{} has {total} lines; start_line {start} is past the end",
                args.path
            )));
        }
        let end = args
            .end_line
            .unwrap_or(start + DEFAULT_LINES - 1)
            .clamp(start, total);
        let width = end.to_string().len();
        let mut out = format!("{} (lines {start}-{end} of {total})\n", args.path);
        for (i, line) in lines[start - 1..end].iter().enumerate() {
            let numbered = format!("{:>width$}| {line}\n", start + i);
            if out.len() + numbered.len() > ctx.output_limit {
                out.push_str(&format!(
                    "[output limit reached at line {}; call read_file with start_line={} to continue]\n",
                    start + i,
                    start + i
                ));
                return Ok(ToolOutput::Text(out));
            }
            out.push_str(&numbered);
        }
        if end < total {
            out.push_str(&format!(
                "[{} more lines; call read_file with start_line={}]\n",
                total - end,
                end + 1
            ));
        }
        Ok(ToolOutput::Text(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tests_support::ctx_in;

    #[test]
    fn reads_ranges_with_numbers() {
        let (dir, sandbox) = ctx_in(&[("a.txt", "one\ntwo\nthree\n")]);
        let ctx = sandbox.ctx(dir.path());
        let out = ReadFile::run(
            &ctx,
            Args {
                path: "a.txt".into(),
                start_line: Some(2),
                end_line: Some(3),
            },
        )
        .unwrap();
        assert_eq!(
            out,
            ToolOutput::Text("a.txt (lines 2-3 of 3)\n2| two\n3| three\n".into())
        );
        let err = ReadFile::run(
            &ctx,
            Args {
                path: "a.txt".into(),
                start_line: Some(9),
                end_line: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("past the end"));
    }

    #[test]
    fn refuses_binary_and_directories() {
        let (dir, sandbox) = ctx_in(&[("bin", "a\0b"), ("d/x", "")]);
        let ctx = sandbox.ctx(dir.path());
        assert!(ReadFile::run(
            &ctx,
            Args {
                path: "bin".into(),
                start_line: None,
                end_line: None
            }
        )
        .unwrap_err()
        .to_string()
        .contains("binary"));
        assert!(ReadFile::run(
            &ctx,
            Args {
                path: "d".into(),
                start_line: None,
                end_line: None
            }
        )
        .unwrap_err()
        .to_string()
        .contains("directory"));
    }
}
