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

/// The command that fetches the repository's dependencies into local caches, if it has any to fetch.
pub fn detect_fetch(root: &Path) -> Option<String> {
    if root.join("Cargo.toml").exists() {
        return Some("cargo fetch".into());
    }
    if root.join("requirements.txt").exists() {
        // Installed into the directory the agent names in $AGENT_PYDEPS, which is on PYTHONPATH.
        return Some(
            "python3 -m pip install --quiet --disable-pip-version-check --no-input --no-cache-dir --target \"$AGENT_PYDEPS\" -r requirements.txt"
                .into(),
        );
    }
    let package = std::fs::read_to_string(root.join("package.json")).unwrap_or_default();
    if package.contains("\"dependencies\"") || package.contains("\"devDependencies\"") {
        return Some("npm install --ignore-scripts --no-audit --no-fund".into());
    }
    None
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

/// What the model needs from a failing check: the status and the end of the output, where test runners
/// put failures and summaries.
pub fn failure_report(check: &Check, outcome: &CommandOutcome, max_chars: usize) -> String {
    let output = outcome.output.trim_end();
    let tail = if output.len() > max_chars {
        let start = output.ceil_char_boundary(output.len() - max_chars);
        format!("[... earlier output omitted ...]\n{}", &output[start..])
    } else {
        output.to_string()
    };
    format!(
        "The check `{}` failed ({}). Its output:\n{tail}\nFix the cause and try again.",
        check.command,
        outcome.status_line()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_in(files: &[&str]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        detect(dir.path()).map(|c| c.command)
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
