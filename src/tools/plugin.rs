//! Plugin tools: WebAssembly (WASI) modules described by a manifest, offered to the model next to the
//! built-in tools and run in the wasm sandbox (`sandbox::wasm`).
//!
//! A plugin is a folder with `tool.toml` (name, description, argument schema, permissions, limits) and
//! its module. Plugins are found in the repository's `tools/` and in the user's config dir
//! (`$XDG_CONFIG_HOME/agent/tools/`, else `~/.config/agent/tools/`); the repository's win a name clash,
//! and no plugin may take a built-in tool's name. The protocol (see docs/plugins.md): arguments as JSON on
//! stdin, the result on stdout, errors on stderr with a non-zero exit code.
//!
//! This module reads manifests and turns calls into sandboxed runs; it never runs a module itself and
//! never widens what a manifest grants.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ToolContext, ToolError, ToolOutput};
use crate::model::ToolSpec;
use crate::sandbox::WorkspaceAccess;

/// The manifest file in a plugin's folder.
pub const MANIFEST: &str = "tool.toml";
/// Limits when the manifest gives none.
pub const DEFAULT_TIME_MS: u64 = 5_000;
pub const DEFAULT_MEMORY_MB: u64 = 128;
/// The most a manifest may ask for.
const MAX_TIME_MS: u64 = 600_000;
const MAX_MEMORY_MB: u64 = 4_096;

/// `tool.toml`, as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    /// The `.wasm` module, relative to the manifest's folder.
    pub module: String,
    /// The arguments' JSON schema: a table in the manifest, or a path to a JSON file beside it.
    pub schema: SchemaSource,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub limits: ManifestLimits,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SchemaSource {
    File(String),
    Inline(toml::Table),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// "read" (default) or "write".
    #[serde(default)]
    pub workspace: WorkspaceAccess,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    pub time_ms: Option<u64>,
    pub memory_mb: Option<u64>,
}

/// Where a plugin was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Repository,
    User,
}

/// A plugin ready to offer: its manifest checked, its schema loaded.
#[derive(Debug, Clone, Serialize)]
pub struct Plugin {
    pub name: String,
    pub description: String,
    pub dir: PathBuf,
    pub module: PathBuf,
    pub schema: Value,
    /// `schema`, compiled once: every call is checked against it.
    #[serde(skip)]
    validator: jsonschema::Validator,
    pub access: WorkspaceAccess,
    pub time_limit_ms: u64,
    pub memory_limit_mb: u64,
    pub origin: Origin,
}

/// Every plugin found, and what was wrong with the folders that did not load.
#[derive(Debug, Default)]
pub struct Discovery {
    pub plugins: Vec<Plugin>,
    pub problems: Vec<String>,
}

/// Whether this build can run plugins (the `plugins` cargo feature).
pub const SUPPORTED: bool = cfg!(feature = "plugins");

/// The user's plugin folder: `$XDG_CONFIG_HOME/agent/tools`, else `~/.config/agent/tools`.
pub fn user_dir() -> Option<PathBuf> {
    crate::dirs::config_dir().map(|d| d.join("tools"))
}

/// Plugins from `<repo>/tools/` and the user's folder. Folders without a manifest are not plugins and
/// are skipped silently; a manifest that does not load is reported in `problems`.
pub fn discover(repo: Option<&Path>) -> Discovery {
    let mut sources = Vec::new();
    if let Some(repo) = repo {
        sources.push((repo.join("tools"), Origin::Repository));
    }
    if let Some(user) = user_dir() {
        sources.push((user, Origin::User));
    }
    discover_in(&sources)
}

/// Plugins from the given folders, earlier folders first.
pub fn discover_in(sources: &[(PathBuf, Origin)]) -> Discovery {
    let mut found = Discovery::default();
    let builtin: Vec<String> = super::specs().into_iter().map(|s| s.name).collect();
    for (root, origin) in sources {
        let origin = *origin;
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(MANIFEST).is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            match load(&dir, origin) {
                Ok(plugin) if builtin.contains(&plugin.name) => found.problems.push(format!(
                    "{}: the name {:?} is a built-in tool's; rename the plugin",
                    dir.join(MANIFEST).display(),
                    plugin.name
                )),
                Ok(plugin) => {
                    if let Some(first) = found.plugins.iter().find(|p| p.name == plugin.name) {
                        found.problems.push(format!(
                            "{}: a plugin named {:?} is already offered from {}; this one is ignored",
                            dir.join(MANIFEST).display(),
                            plugin.name,
                            first.dir.display()
                        ));
                    } else {
                        found.plugins.push(plugin);
                    }
                }
                Err(problem) => found.problems.push(problem),
            }
        }
    }
    found
}

/// Read and check one plugin folder.
pub fn load(dir: &Path, origin: Origin) -> Result<Plugin, String> {
    let manifest_path = dir.join(MANIFEST);
    let at = manifest_path.display();
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| format!("{at}: {e}"))?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| format!("{at}: {e}"))?;
    let name_ok = !manifest.name.is_empty()
        && manifest.name.len() <= 40
        && manifest.name.starts_with(|c: char| c.is_ascii_lowercase())
        && manifest
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return Err(format!(
            "{at}: name {:?} must be 1-40 characters of a-z, 0-9 and _, starting with a letter",
            manifest.name
        ));
    }
    if manifest.description.trim().is_empty() {
        return Err(format!(
            "{at}: the description is empty; the model chooses tools by it"
        ));
    }
    let schema = match &manifest.schema {
        SchemaSource::Inline(table) => {
            serde_json::to_value(table).map_err(|e| format!("{at}: schema: {e}"))?
        }
        SchemaSource::File(file) => {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{at}: schema file {}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("{at}: schema file {}: {e}", path.display()))?
        }
    };
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(format!(
            "{at}: the schema must describe an object (type = \"object\"): the arguments are one JSON object"
        ));
    }
    let schema = super::bound_strings(schema);
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| format!("{at}: the schema is not a valid JSON schema: {e}"))?;
    let time_limit_ms = manifest.limits.time_ms.unwrap_or(DEFAULT_TIME_MS);
    let memory_limit_mb = manifest.limits.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    if !(1..=MAX_TIME_MS).contains(&time_limit_ms) {
        return Err(format!(
            "{at}: limits.time_ms = {time_limit_ms} is outside 1..={MAX_TIME_MS}"
        ));
    }
    if !(1..=MAX_MEMORY_MB).contains(&memory_limit_mb) {
        return Err(format!(
            "{at}: limits.memory_mb = {memory_limit_mb} is outside 1..={MAX_MEMORY_MB}"
        ));
    }
    Ok(Plugin {
        name: manifest.name,
        description: manifest.description.trim().to_string(),
        dir: dir.to_path_buf(),
        module: dir.join(&manifest.module),
        schema,
        validator,
        access: manifest.permissions.workspace,
        time_limit_ms,
        memory_limit_mb,
        origin,
    })
}

impl Plugin {
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.schema.clone(),
            body: None,
            withheld: false,
            body_opens: None,
        }
    }

    /// Whether the module file is there (a plugin from source may not be built yet).
    pub fn module_present(&self) -> bool {
        self.module.is_file()
    }

    /// Check `arguments` against the schema, run the module on the worktree, and turn its result into
    /// text for the model.
    pub fn call(&self, ctx: &ToolContext<'_>, arguments: &Value) -> Result<ToolOutput, ToolError> {
        let arguments = if arguments.is_null() {
            Value::Object(Default::default())
        } else {
            arguments.clone()
        };
        let bad = |reason: String| ToolError::BadArguments {
            tool: self.name.clone(),
            reason,
            schema: self.schema.to_string(),
        };
        if let Some(first) = self.validator.iter_errors(&arguments).next() {
            let at = first.instance_path().to_string();
            return Err(bad(if at.is_empty() {
                first.to_string()
            } else {
                format!("{at}: {first}")
            }));
        }
        if !self.module_present() {
            return Err(ToolError::Failed(format!(
                "plugin {} is not built: {} does not exist",
                self.name,
                self.module.display()
            )));
        }
        let outcome = run_module(self, ctx.root, arguments.to_string().into_bytes())?;
        let (stdout, _) = crate::sandbox::cap_output(&outcome.stdout, ctx.output_limit);
        if outcome.exit_code == 0 {
            return Ok(ToolOutput::Text(stdout));
        }
        let (stderr, _) = crate::sandbox::cap_output(&outcome.stderr, ctx.output_limit / 2);
        let said = [stderr.trim(), stdout.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        Err(ToolError::Failed(format!(
            "plugin {} failed (exit {}){}",
            self.name,
            outcome.exit_code,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        )))
    }
}

/// What a module run returns, independent of the runtime.
pub struct RunOutcome {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[cfg(feature = "plugins")]
fn run_module(plugin: &Plugin, root: &Path, stdin: Vec<u8>) -> Result<RunOutcome, ToolError> {
    use crate::sandbox::wasm;
    use std::time::Duration;
    let outcome = wasm::run(&wasm::WasmRun {
        name: &plugin.name,
        module: &plugin.module,
        workspace: root,
        access: plugin.access,
        stdin,
        time_limit: Duration::from_millis(plugin.time_limit_ms),
        memory_limit: plugin.memory_limit_mb << 20,
    })
    .map_err(|e| ToolError::Failed(e.to_string()))?;
    Ok(RunOutcome {
        exit_code: outcome.exit_code,
        stdout: outcome.stdout,
        stderr: outcome.stderr,
    })
}

#[cfg(not(feature = "plugins"))]
fn run_module(plugin: &Plugin, _root: &Path, _stdin: Vec<u8>) -> Result<RunOutcome, ToolError> {
    Err(ToolError::Failed(format!(
        "plugin {} cannot run: this agent was built without the `plugins` feature",
        plugin.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin_dir(manifest: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), manifest).unwrap();
        dir
    }

    #[test]
    fn a_manifest_loads_with_defaults_and_bounded_strings() {
        let dir = plugin_dir(
            r#"
name = "outline"
description = "Symbols of a file."
module = "outline.wasm"
[schema]
type = "object"
required = ["path"]
additionalProperties = false
[schema.properties.path]
type = "string"
"#,
        );
        let plugin = load(dir.path(), Origin::User).unwrap();
        assert_eq!(plugin.access, WorkspaceAccess::Read);
        assert_eq!(plugin.time_limit_ms, DEFAULT_TIME_MS);
        assert_eq!(plugin.memory_limit_mb, DEFAULT_MEMORY_MB);
        assert_eq!(plugin.module, dir.path().join("outline.wasm"));
        assert_eq!(
            plugin.schema["properties"]["path"]["maxLength"],
            crate::tools::DEFAULT_MAX_LENGTH
        );
        assert!(!plugin.module_present());
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases = [
            (
                "name = \"Bad Name\"\ndescription = \"x\"\nmodule = \"m.wasm\"\nschema = { type = \"object\" }",
                "must be 1-40 characters",
            ),
            (
                "name = \"ok\"\ndescription = \" \"\nmodule = \"m.wasm\"\nschema = { type = \"object\" }",
                "description is empty",
            ),
            (
                "name = \"ok\"\ndescription = \"x\"\nmodule = \"m.wasm\"\nschema = { type = \"string\" }",
                "must describe an object",
            ),
            (
                "name = \"ok\"\ndescription = \"x\"\nmodule = \"m.wasm\"\nschema = \"missing.json\"",
                "schema file",
            ),
            (
                "name = \"ok\"\ndescription = \"x\"\nmodule = \"m.wasm\"\nschema = { type = \"object\" }\n[limits]\nmemory_mb = 100000",
                "limits.memory_mb",
            ),
            (
                "name = \"ok\"\ndescription = \"x\"\nmodule = \"m.wasm\"\nschema = { type = \"object\" }\n[permissions]\nnetwork = true",
                "unknown field",
            ),
        ];
        for (manifest, expected) in cases {
            let dir = plugin_dir(manifest);
            let error = load(dir.path(), Origin::Repository).unwrap_err();
            assert!(error.contains(expected), "{manifest}\n→ {error}");
        }
    }

    #[test]
    fn built_in_names_and_duplicates_are_refused() {
        let repo = tempfile::tempdir().unwrap();
        for (folder, name) in [("a", "read_file"), ("b", "mine"), ("c", "mine")] {
            let dir = repo.path().join("tools").join(folder);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join(MANIFEST),
                format!("name = \"{name}\"\ndescription = \"x\"\nmodule = \"m.wasm\"\nschema = {{ type = \"object\" }}"),
            )
            .unwrap();
        }
        let found = discover_in(&[(repo.path().join("tools"), Origin::Repository)]);
        let names: Vec<&str> = found.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["mine"]);
        assert_eq!(found.problems.len(), 2, "{:?}", found.problems);
        assert!(found.problems[0].contains("built-in"));
        assert!(found.problems[1].contains("already offered"));
    }
}
