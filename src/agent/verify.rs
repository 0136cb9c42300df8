//! Verification: which command proves a step works, and running it in the sandbox.

use std::path::Path;
use std::time::Duration;

use crate::sandbox::{CommandOutcome, CommandSpec, Sandbox, SandboxError};

/// The verification command and where it came from (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub command: String,
    pub source: String,
}

/// Pick a test command from the repository's layout, or `None` when nothing is recognisable.
pub fn detect(root: &Path) -> Option<Check> {
    let has = |name: &str| root.join(name).exists();
    let found = |command: &str, why: &str| {
        Some(Check {
            command: command.into(),
            source: format!("detected: {why}"),
        })
    };
    if has("Cargo.toml") {
        return found("cargo test", "Cargo.toml");
    }
    if has("package.json") {
        return found("npm test", "package.json");
    }
    let python_files: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".py"))
        .collect();
    if python_files.iter().any(|n| n.ends_with("_test.py")) {
        return found(
            "python3 -m unittest discover -p '*_test.py'",
            "*_test.py files",
        );
    }
    let pytest_config = ["pytest.ini", "conftest.py"].iter().any(|f| has(f))
        || std::fs::read_to_string(root.join("pyproject.toml"))
            .is_ok_and(|t| t.contains("[tool.pytest"));
    if pytest_config {
        return found("python3 -m pytest -q", "pytest configuration");
    }
    if has("pyproject.toml")
        || has("setup.py")
        || has("tests")
        || python_files.iter().any(|n| n.starts_with("test_"))
    {
        return found("python3 -m unittest discover", "a Python test layout");
    }
    if std::fs::read_to_string(root.join("Makefile"))
        .is_ok_and(|t| t.lines().any(|l| l.starts_with("test:")))
    {
        return found("make test", "Makefile test target");
    }
    None
}

/// Whether `path` (relative, `/`-separated) is a test file by the conventions of the ecosystems
/// `detect` knows: Python `test_*.py`/`*_test.py`/`tests.py`/`conftest.py`, anything under a
/// `tests/`, `test/`, `__tests__/` or `spec/` folder, JS/TS `*.test.*`/`*.spec.*`, Go `*_test.go`.
pub fn is_test_file(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    let name = parts.pop().unwrap_or("").to_ascii_lowercase();
    if parts
        .iter()
        .any(|d| matches!(*d, "tests" | "test" | "__tests__" | "spec" | "testdata"))
    {
        return true;
    }
    let stem = name.split('.').next().unwrap_or("");
    (name.ends_with(".py")
        && (stem.starts_with("test_")
            || stem.ends_with("_test")
            || stem == "tests"
            || stem == "conftest"))
        || name.ends_with("_test.go")
        || name.contains(".test.")
        || name.contains(".spec.")
}

/// The command that fetches the repository's dependencies into local caches, if it has any to fetch.
pub fn detect_fetch(root: &Path) -> Result<Option<String>, String> {
    if root.join("Cargo.toml").exists() {
        // Run from `/` with the manifest named: cargo reads `.cargo/config*` (build.rustc, runners,
        // wrappers) and rustup reads `rust-toolchain*` from the current directory, and both are the
        // repository's to write. `cargo fetch` itself runs no build script.
        return Ok(Some(
            "manifest=\"$PWD/Cargo.toml\"; cd / && cargo fetch --manifest-path \"$manifest\""
                .into(),
        ));
    }
    if root.join("requirements.txt").exists() {
        let text = crate::hostfs::Beneath::open(root)
            .and_then(|fs| fs.read(Path::new("requirements.txt"), 256 * 1024))
            .map_err(|e| format!("requirements.txt not fetched: {e}"))?;
        let text = String::from_utf8_lossy(&text);
        if let Some(line) = text.lines().find(|l| !plain_requirement(l)) {
            return Err(format!(
                "requirements.txt not fetched: `{}` is not a plain `name[extras] version` requirement \
                 (options, paths, URLs and VCS requirements could run the repository's code with network)",
                crate::text::first_line(line, 80)
            ));
        }
        // Wheels only (an sdist's setup.py is code), isolated from the environment, the user's pip
        // config and the current directory (a `pip/` folder there would shadow pip); installed into
        // the directory the agent names in $AGENT_PYDEPS, which is on PYTHONPATH for the checks.
        return Ok(Some(
            "python3 -I -m pip install --isolated --only-binary :all: --quiet --disable-pip-version-check --no-input --no-cache-dir --target \"$AGENT_PYDEPS\" -r requirements.txt"
                .into(),
        ));
    }
    let package = std::fs::read_to_string(root.join("package.json")).unwrap_or_default();
    if package.contains("\"dependencies\"") || package.contains("\"devDependencies\"") {
        // No lifecycle scripts; `--git=git` overrides a repository .npmrc that names another program.
        return Ok(Some(
            "npm install --ignore-scripts --no-audit --no-fund --git=git".into(),
        ));
    }
    Ok(None)
}

/// A requirements line that names a package from the index and nothing else (comments and blank
/// lines too): no `-e`, `-r`, `--index-url`, paths, URLs or VCS references.
fn plain_requirement(line: &str) -> bool {
    let line = line.split(" #").next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('#') {
        return true;
    }
    let requirement = line.split(';').next().unwrap_or("").trim();
    let name_end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(requirement.len());
    let (name, rest) = requirement.split_at(name_end);
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(extras) => match extras.split_once(']') {
            Some((names, after))
                if names.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, ',' | '_' | '-' | '.' | ' ')
                }) =>
            {
                after.trim_start()
            }
            _ => return false,
        },
        None => rest,
    };
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && rest.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '<' | '>' | '=' | '!' | '~' | '.' | ',' | '*' | ' ' | '+')
        })
        && !rest.contains('@')
}

/// The files whose change means the dependencies must be fetched again.
const MANIFESTS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "requirements.txt",
    "package.json",
    "package-lock.json",
];

/// A fingerprint of the worktree's dependency manifests (read through the confined layer, capped).
pub fn manifest_fingerprint(root: &Path) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    if let Ok(fs) = crate::hostfs::Beneath::open(root) {
        for name in MANIFESTS {
            hash.update(name.as_bytes());
            match fs.read(Path::new(name), 4 * 1024 * 1024) {
                Ok(bytes) => hash.update(&bytes),
                Err(e) => hash.update(e.to_string().as_bytes()),
            }
        }
    }
    hash.finalize().to_vec()
}

/// Fetch the worktree's dependencies with `sandbox` (the `fetch` profile: network on): the command
/// [`detect_fetch`] picks. Returns the notes to show; a failure is a warning, not an error (the
/// offline check will say more).
pub fn fetch(
    sandbox: &dyn Sandbox,
    root: &Path,
    timeout: Duration,
    env: &[(String, String)],
) -> Vec<String> {
    let command = match detect_fetch(root) {
        Ok(Some(command)) => command,
        Ok(None) => return Vec::new(),
        Err(why) => return vec![format!("WARNING: {why}")],
    };
    let started = format!("fetching dependencies (network allowed): {command}");
    let outcome = sandbox.run(&CommandSpec {
        command: command.clone(),
        cwd: root.to_path_buf(),
        timeout,
        env: env.to_vec(),
        output_limit: 64 * 1024,
    });
    let done = match outcome {
        Ok(outcome) if outcome.success() => {
            format!("dependencies fetched ({})", outcome.status_line())
        }
        Ok(outcome) => format!(
            "WARNING: `{command}` failed ({}); offline builds may miss dependencies:\n{}",
            outcome.status_line(),
            crate::text::first_line(
                outcome
                    .output
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or(""),
                200
            )
        ),
        Err(e) => format!("WARNING: `{command}` could not run: {e}"),
    };
    vec![started, done]
}

/// Run the check in the worktree.
pub fn run_check(
    sandbox: &dyn Sandbox,
    root: &Path,
    check: &Check,
    timeout: Duration,
    env: &[(String, String)],
) -> Result<CommandOutcome, SandboxError> {
    sandbox.run(&CommandSpec {
        command: check.command.clone(),
        cwd: root.to_path_buf(),
        timeout,
        env: env.to_vec(),
        output_limit: 64 * 1024,
    })
}

/// What the model needs from a failing check: the status, the failing tests by name, and the output —
/// whole when it is short; else the first errors (where the cause usually is) and the end (where test
/// runners put failures and summaries).
pub fn failure_report(
    check: &Check,
    outcome: &CommandOutcome,
    root: &Path,
    max_chars: usize,
) -> String {
    let output = crate::text::steady_output(&outcome.output, root);
    let output = output.trim_end();
    let mut report = format!(
        "The check `{}` failed ({}).\n",
        check.command,
        outcome.ending()
    );
    let failing = failing_tests(output);
    if !failing.is_empty() {
        let shown: Vec<&str> = failing.iter().take(20).map(String::as_str).collect();
        let more = failing.len().saturating_sub(shown.len());
        report.push_str(&format!("Failing tests: {}", shown.join(", ")));
        if more > 0 {
            report.push_str(&format!(" and {more} more"));
        }
        report.push('\n');
    }
    if output.len() <= max_chars {
        report.push_str(&format!("Its output:\n{output}\n"));
    } else {
        let errors = first_errors(output, max_chars / 2);
        if !errors.is_empty() {
            report.push_str(&format!("First errors:\n{errors}\n"));
        }
        let room = max_chars.saturating_sub(errors.len()).max(max_chars / 4);
        let cut = output.ceil_char_boundary(output.len() - room.min(output.len()));
        // Start at a line: half a line reads like garbage.
        let start = output[cut..].find('\n').map_or(cut, |n| cut + n + 1);
        report.push_str(&format!(
            "End of its output ({} bytes before it omitted):\n{}\n",
            start,
            &output[start..]
        ));
    }
    report.push_str("Fix the cause and try again.");
    report
}

/// Failing test names as cargo test, unittest and pytest print them.
fn failing_tests(output: &str) -> Vec<String> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(
            r"(?m)^(?:test (?P<cargo>\S+) \.\.\. FAILED\s*$|(?:FAIL|ERROR): (?P<unittest>\S+ \([^)]+\))|FAILED (?P<pytest>\S+))",
        )
        .expect("a valid pattern")
    });
    let mut names: Vec<String> = Vec::new();
    for captures in pattern.captures_iter(output) {
        let name = ["cargo", "unittest", "pytest"]
            .iter()
            .find_map(|k| captures.name(k))
            .map(|m| m.as_str().to_string());
        if let Some(name) = name.filter(|n| !names.contains(n)) {
            names.push(name);
        }
    }
    names
}

/// The first error lines of `output` (compiler errors, panics, exceptions) with two lines of context
/// each, at most `max_chars`.
fn first_errors(output: &str, max_chars: usize) -> String {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(
            r"^\s*(?:error(?:\[\w+\])?:|.*panicked at|\w*(?:Error|Exception)\b:?|E   |Traceback \(most recent call last\))",
        )
        .expect("a valid pattern")
    });
    let lines: Vec<&str> = output.lines().collect();
    let mut kept: Vec<usize> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if pattern.is_match(line) {
            for j in i..(i + 3).min(lines.len()) {
                if !kept.contains(&j) {
                    kept.push(j);
                }
            }
        }
        if kept.len() >= 40 {
            break;
        }
    }
    let mut text = String::new();
    let mut previous = None;
    for i in kept {
        if previous.is_some_and(|p: usize| p + 1 != i) {
            text.push_str("...\n");
        }
        let line = format!("{}\n", lines[i]);
        if text.len() + line.len() > max_chars {
            break;
        }
        text.push_str(&line);
        previous = Some(i);
    }
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_files_are_recognised_by_convention() {
        for path in [
            "greet_test.py",
            "test_calc.py",
            "pkg/tests.py",
            "conftest.py",
            "tests/cli.rs",
            "crate/tests/it.rs",
            "src/__tests__/a.js",
            "web/app.test.ts",
            "web/app.spec.js",
            "net/conn_test.go",
            "spec/parser_spec.rb",
        ] {
            assert!(is_test_file(path), "{path}");
        }
        for path in [
            "greet.py",
            "src/lib.rs",
            "testing.py",
            "contest.py",
            "src/attest.rs",
            "latest_tests_notes.md",
        ] {
            assert!(!is_test_file(path), "{path}");
        }
    }

    fn detect_in(files: &[&str]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        detect(dir.path()).map(|c| c.command)
    }

    fn failed(output: &str) -> CommandOutcome {
        CommandOutcome {
            stop: crate::sandbox::StopReason::Exited(101),
            output: output.into(),
            truncated: false,
            elapsed_ms: 10,
        }
    }

    #[test]
    fn only_plain_requirements_are_fetched() {
        for ok in [
            "toolz",
            "toolz==0.12.1",
            "requests[socks]>=2, <3",
            "numpy ~= 1.26 ; python_version >= '3.9'",
            "# c",
            "",
            "a.b-c_d!=1.0.*",
        ] {
            assert!(plain_requirement(ok), "{ok:?}");
        }
        for bad in [
            "-e .",
            "./local",
            "/abs/pkg",
            "git+https://x/y",
            "pkg @ https://x/y.whl",
            "--index-url http://evil",
            "-r other.txt",
            "--extra-index-url=x",
            "pkg[x]@file:///tmp",
            "https://x/y.tar.gz",
            "..\\pkg",
        ] {
            assert!(!plain_requirement(bad), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "toolz\n-e .\n").unwrap();
        let err = detect_fetch(dir.path()).unwrap_err();
        assert!(err.contains("-e .") && err.contains("not fetched"), "{err}");
        std::fs::write(dir.path().join("requirements.txt"), "toolz==0.12.1\n").unwrap();
        assert!(detect_fetch(dir.path())
            .unwrap()
            .unwrap()
            .contains("--only-binary :all:"));
    }

    #[test]
    fn failure_reports_name_failing_tests_and_keep_the_first_errors() {
        let check = Check {
            command: "cargo test".into(),
            source: "test".into(),
        };
        let mut output = String::from("   Compiling x v0.1.0\nerror[E0425]: cannot find value `y` in this scope\n --> src/lib.rs:3:5\n  |\n");
        output.push_str(&"noise line\n".repeat(2000));
        output.push_str("test tests::adds ... FAILED\ntest tests::subs ... ok\ntest result: FAILED. 1 passed; 1 failed\n");
        let report = failure_report(&check, &failed(&output), Path::new("/w"), 2000);
        assert!(report.len() < 3000, "{}", report.len());
        assert!(report.contains("Failing tests: tests::adds\n"), "{report}");
        assert!(
            report.contains(
                "First errors:\nerror[E0425]: cannot find value `y` in this scope\n --> src/lib.rs:3:5"
            ),
            "{report}"
        );
        assert!(
            report
                .ends_with("test result: FAILED. 1 passed; 1 failed\nFix the cause and try again."),
            "{report}"
        );

        let unittest = "F.\n======\nFAIL: test_greets (greet_test.T)\nTraceback (most recent call last):\nAssertionError: 'hi' != 'Hello'\n";
        // A traceback's paths are shown relative to the worktree, as the tools take them.
        let traceback = "  File \"/w/greet.py\", line 2, in greet\n";
        let report = failure_report(&check, &failed(traceback), Path::new("/w"), 2000);
        assert!(report.contains("  File \"greet.py\", line 2"), "{report}");
        // Nor does it say how long the check took: the same failure reads the same on every run.
        let timed = "Ran 3 tests in 0.002s\n\nFAILED (failures=1)\n";
        let report = failure_report(&check, &failed(timed), Path::new("/w"), 2000);
        assert!(
            report.starts_with("The check `cargo test` failed (exit 101).\n")
                && report.contains("Ran 3 tests\n\nFAILED (failures=1)"),
            "{report}"
        );

        let report = failure_report(&check, &failed(unittest), Path::new("/w"), 2000);
        assert!(
            report.contains("Failing tests: test_greets (greet_test.T)"),
            "{report}"
        );
        assert!(
            report.contains(unittest.trim_end()),
            "short output is shown whole: {report}"
        );
    }

    #[test]
    fn detects_common_layouts() {
        assert_eq!(detect_in(&["Cargo.toml"]).as_deref(), Some("cargo test"));
        assert_eq!(
            detect_in(&["bob.py", "bob_test.py"]).as_deref(),
            Some("python3 -m unittest discover -p '*_test.py'")
        );
        assert_eq!(
            detect_in(&["conftest.py"]).as_deref(),
            Some("python3 -m pytest -q")
        );
        assert_eq!(detect_in(&["package.json"]).as_deref(), Some("npm test"));
        assert_eq!(detect_in(&["README"]), None);
    }
}
