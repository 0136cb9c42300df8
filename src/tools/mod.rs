//! The built-in tools the model calls, one file each. A tool has an argument type (serde + schemars,
//! the single source of its JSON schema), a description, and `run`.
//!
//! Tools act only inside the task's worktree: every path goes through [`confine`]. They never commit,
//! never print, and never decide what the agent does next; they return text for the model.

mod apply_patch;
mod finish;
mod list_files;
pub mod mcp;
pub mod plugin;
mod read_file;
mod run;
mod search;
mod write_file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::ToolSpec;
use crate::sandbox::Sandbox;

/// What a tool may use.
pub struct ToolContext<'a> {
    /// The worktree; every path is relative to it.
    pub root: &'a Path,
    pub sandbox: &'a dyn Sandbox,
    /// Limit for the `run` tool's commands.
    pub command_timeout: Duration,
    /// Most bytes of output any tool returns to the model.
    pub output_limit: usize,
    /// Environment for commands (e.g. a shared cargo target dir outside the worktree).
    pub command_env: &'a [(String, String)],
}

/// What a successful call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutput {
    /// Text for the model.
    Text(String),
    /// The model declared the task done, with its summary.
    Finish(String),
}

/// Why a call failed. The text goes back to the model, so it says what to do differently.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool {0:?}; the tools are: {1}")]
    Unknown(String, String),
    #[error("invalid arguments for {tool}: {reason}. Expected arguments matching: {schema}")]
    BadArguments {
        tool: String,
        reason: String,
        schema: String,
    },
    #[error("path {path:?} refused: {reason}")]
    PathRefused { path: String, reason: String },
    #[error("{0}")]
    Failed(String),
}

/// A built-in tool.
pub trait Tool {
    type Args: DeserializeOwned + JsonSchema;
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    /// The argument that holds code or a patch, which a format may take outside the JSON.
    const BODY: Option<&'static str> = None;
    /// How that argument must begin when written as plain text (see [`ToolSpec::body_opens`]).
    const BODY_OPENS: Option<&'static str> = None;
    fn run(ctx: &ToolContext<'_>, args: Self::Args) -> Result<ToolOutput, ToolError>;
}

fn spec<T: Tool>() -> ToolSpec {
    let schema = schemars::schema_for!(T::Args);
    ToolSpec {
        name: T::NAME.into(),
        description: T::DESCRIPTION.into(),
        parameters: schema.to_value(),
        body: T::BODY.map(String::from),
        withheld: false,
        body_opens: T::BODY_OPENS.map(String::from),
    }
}

fn invoke<T: Tool>(ctx: &ToolContext<'_>, arguments: &Value) -> Result<ToolOutput, ToolError> {
    // Models sometimes send no arguments at all for tools whose arguments are all optional.
    let arguments = if arguments.is_null() {
        Value::Object(Default::default())
    } else {
        arguments.clone()
    };
    let args: T::Args = serde_json::from_value(arguments).map_err(|e| ToolError::BadArguments {
        tool: T::NAME.into(),
        reason: e.to_string(),
        schema: crate::model::schema::sanitize(&spec::<T>().parameters).to_string(),
    })?;
    T::run(ctx, args)
}

/// Every built-in tool's spec, in the order the model sees them.
pub fn specs() -> Vec<ToolSpec> {
    vec![
        spec::<read_file::ReadFile>(),
        spec::<list_files::ListFiles>(),
        spec::<search::Search>(),
        spec::<apply_patch::ApplyPatch>(),
        spec::<write_file::WriteFile>(),
        spec::<run::Run>(),
        spec::<finish::Finish>(),
    ]
}

/// Tools that change files; after them the agent checks whether the worktree changed.
pub fn may_edit(name: &str) -> bool {
    matches!(
        name,
        apply_patch::ApplyPatch::NAME | write_file::WriteFile::NAME | run::Run::NAME
    )
}

/// Run the tool `name` with JSON `arguments`.
pub fn call(ctx: &ToolContext<'_>, name: &str, arguments: &Value) -> Result<ToolOutput, ToolError> {
    match name {
        read_file::ReadFile::NAME => invoke::<read_file::ReadFile>(ctx, arguments),
        list_files::ListFiles::NAME => invoke::<list_files::ListFiles>(ctx, arguments),
        search::Search::NAME => invoke::<search::Search>(ctx, arguments),
        apply_patch::ApplyPatch::NAME => invoke::<apply_patch::ApplyPatch>(ctx, arguments),
        write_file::WriteFile::NAME => invoke::<write_file::WriteFile>(ctx, arguments),
        run::Run::NAME => invoke::<run::Run>(ctx, arguments),
        finish::Finish::NAME => invoke::<finish::Finish>(ctx, arguments),
        other => {
            let names: Vec<String> = specs().into_iter().map(|s| s.name).collect();
            Err(ToolError::Unknown(other.into(), names.join(", ")))
        }
    }
}

/// The tools of one run: the built-ins, the plugins found for it, and the tools of its MCP servers.
#[derive(Debug, Clone, Default)]
pub struct Toolbox {
    plugins: Vec<plugin::Plugin>,
    mcp: Vec<std::sync::Arc<mcp::Server>>,
}

impl Toolbox {
    /// The built-ins plus `plugins` (whose names were checked against the built-ins by discovery).
    pub fn with_plugins(plugins: Vec<plugin::Plugin>) -> Self {
        Self {
            plugins,
            mcp: Vec::new(),
        }
    }

    /// These tools plus those of running MCP servers (whose tools' names hold `__`, which no
    /// built-in or plugin name does).
    pub fn with_mcp(mut self, servers: Vec<std::sync::Arc<mcp::Server>>) -> Self {
        self.mcp = servers;
        self
    }

    /// Every tool's spec: the built-ins, then the plugins, then the MCP tools, with `finish` last.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = specs();
        let finish = specs.pop();
        specs.extend(self.plugins.iter().map(plugin::Plugin::spec));
        specs.extend(
            self.mcp
                .iter()
                .flat_map(|server| server.tools.iter().map(mcp::RemoteTool::spec)),
        );
        specs.extend(finish);
        specs
    }

    fn mcp_tool(&self, name: &str) -> Option<(&mcp::Server, &mcp::RemoteTool)> {
        self.mcp
            .iter()
            .find_map(|server| server.tool(name).map(|tool| (server.as_ref(), tool)))
    }

    /// Run the tool `name`: built-in, plugin or MCP.
    pub fn call(
        &self,
        ctx: &ToolContext<'_>,
        name: &str,
        arguments: &Value,
    ) -> Result<ToolOutput, ToolError> {
        if let Some(plugin) = self.plugins.iter().find(|p| p.name == name) {
            return plugin.call(ctx, arguments);
        }
        if let Some((server, tool)) = self.mcp_tool(name) {
            return server.call(tool, arguments, ctx.output_limit);
        }
        call(ctx, name, arguments).map_err(|e| match e {
            ToolError::Unknown(name, _) => {
                let names: Vec<String> = self.specs().into_iter().map(|s| s.name).collect();
                ToolError::Unknown(name, names.join(", "))
            }
            other => other,
        })
    }

    /// Whether the tool may change files: built-ins that edit or run commands, plugins with write
    /// access, and every MCP tool (a server has the worktree as a command has it).
    pub fn may_edit(&self, name: &str) -> bool {
        match self.plugins.iter().find(|p| p.name == name) {
            Some(plugin) => plugin.access == crate::sandbox::WorkspaceAccess::Write,
            None => self.mcp_tool(name).is_some() || may_edit(name),
        }
    }
}

/// The `maxLength` [`bound_strings`] gives.
pub(crate) const DEFAULT_MAX_LENGTH: u64 = 1_000;

/// Give every string without a `maxLength` in a plugin's or MCP tool's schema [`DEFAULT_MAX_LENGTH`], so
/// a constrained call cannot be cut off by the token budget in the middle of a string.
pub(crate) fn bound_strings(schema: Value) -> Value {
    match schema {
        Value::Object(mut map) => {
            let is_string = match map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string && !map.contains_key("maxLength") && !map.contains_key("enum") {
                map.insert("maxLength".into(), DEFAULT_MAX_LENGTH.into());
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v) {
                            // Keys under `properties` are field names, not schemas.
                            ("properties", Value::Object(fields)) => Value::Object(
                                fields
                                    .into_iter()
                                    .map(|(name, field)| (name, bound_strings(field)))
                                    .collect(),
                            ),
                            (_, v) => bound_strings(v),
                        };
                        (k, v)
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(bound_strings).collect()),
        other => other,
    }
}

/// Resolve a model-supplied path inside `root` for tools that walk a directory (`list_files`,
/// `search`). Refuses what [`crate::hostfs::relative`] refuses by text (absolute, `..` out, `.git`,
/// control characters) and symlinks (anywhere along the path) that lead outside the root or into
/// `.git`. The path need not exist yet; its deepest existing ancestor is checked. Files are read and
/// written through [`crate::hostfs::Beneath`] instead, which checks the opened descriptor itself.
pub fn confine(root: &Path, raw: &str) -> Result<PathBuf, ToolError> {
    let refuse = |reason: &str| ToolError::PathRefused {
        path: crate::hostfs::quote_path(raw),
        reason: reason.into(),
    };
    let relative = crate::hostfs::relative(raw).map_err(fs_error)?;
    let canonical_root = root
        .canonicalize()
        .map_err(|e| refuse(&format!("cannot resolve the worktree: {e}")))?;
    let full = canonical_root.join(&relative);
    // Walk up to the deepest existing ancestor and make sure it resolves inside the root.
    let mut existing = full.as_path();
    loop {
        if existing.symlink_metadata().is_ok() {
            let resolved = existing.canonicalize().map_err(|_| {
                refuse("it is a symlink that points nowhere or outside the repository")
            })?;
            let Ok(inside) = resolved.strip_prefix(&canonical_root) else {
                return Err(refuse(
                    "it resolves (through a symlink) to a place outside the repository",
                ));
            };
            if inside
                .components()
                .any(|c| crate::hostfs::is_dot_git(c.as_os_str()))
            {
                return Err(refuse(
                    "it leads (through a symlink) into a .git directory, which is managed by the agent",
                ));
            }
            break;
        }
        existing = existing
            .parent()
            .ok_or_else(|| refuse("it has no existing parent"))?;
    }
    Ok(full)
}

/// The worktree opened for a tool's reads and writes.
pub(crate) fn beneath(root: &Path) -> Result<crate::hostfs::Beneath, ToolError> {
    crate::hostfs::Beneath::open(root).map_err(fs_error)
}

/// A host filesystem refusal as the model should read it.
pub(crate) fn fs_error(e: crate::hostfs::FsError) -> ToolError {
    match e {
        crate::hostfs::FsError::Refused { path, reason } => ToolError::PathRefused { path, reason },
        other => ToolError::Failed(other.to_string()),
    }
}

/// The path as the model should see it: relative to the root, with `/`.
/// `root` must already be canonical: callers resolve it once, not once per path.
pub fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("src")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        std::os::unix::fs::symlink("src/lib.rs", root.join("inside")).unwrap();
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        std::os::unix::fs::symlink(".git", root.join("gitdir")).unwrap();
        for hostile in [
            "../../etc/passwd",
            "/etc/passwd",
            "src/../../x",
            "out/passwd",
            "out",
            ".git/config",
            "./.git/HEAD",
            "a\0b",
            "gitdir/hooks",
            "sub/.GIT/config",
            "new\nline.rs",
        ] {
            assert!(
                matches!(confine(root, hostile), Err(ToolError::PathRefused { .. })),
                "{hostile} was allowed"
            );
        }
        let canon = root.canonicalize().unwrap();
        assert_eq!(
            confine(root, "src/lib.rs").unwrap(),
            canon.join("src/lib.rs")
        );
        assert_eq!(
            confine(root, "src/../src/new.rs").unwrap(),
            canon.join("src/new.rs")
        );
        assert_eq!(
            confine(root, "new/dir/file.rs").unwrap(),
            canon.join("new/dir/file.rs")
        );
        assert!(confine(root, "inside").is_ok());
    }

    #[test]
    fn every_tool_has_an_object_schema_and_unknown_names_are_refused() {
        for spec in specs() {
            assert_eq!(spec.parameters["type"], "object", "{}", spec.name);
            assert!(!spec.description.is_empty());
        }
        let dir = tempfile::tempdir().unwrap();
        let ctx = ToolContext {
            root: dir.path(),
            sandbox: &crate::sandbox::none::NoSandbox,
            command_timeout: Duration::from_secs(5),
            output_limit: 1000,
            command_env: &[],
        };
        let err = call(&ctx, "rm_rf", &Value::Null).unwrap_err().to_string();
        assert!(
            err.contains("unknown tool") && err.contains("read_file"),
            "{err}"
        );
        let err = call(&ctx, "read_file", &serde_json::json!({"path": 3}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid arguments for read_file"), "{err}");
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::Path;
    use std::time::Duration;

    use super::ToolContext;
    use crate::sandbox::none::NoSandbox;

    pub struct TestSandbox(NoSandbox);

    impl TestSandbox {
        pub fn ctx<'a>(&'a self, root: &'a Path) -> ToolContext<'a> {
            ToolContext {
                root,
                sandbox: &self.0,
                command_timeout: Duration::from_secs(10),
                output_limit: 20_000,
                command_env: &[],
            }
        }
    }

    /// A temp dir holding `files` (path, content).
    pub fn ctx_in(files: &[(&str, &str)]) -> (tempfile::TempDir, TestSandbox) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        (dir, TestSandbox(NoSandbox))
    }
}
