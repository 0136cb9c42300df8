//! The configuration files: the user's (`$XDG_CONFIG_HOME/agent/config.toml`, else
//! `~/.config/agent/config.toml`) and a repository's (`.agent.toml` at its top level). This module
//! reads and validates them and lays them over each other as settings with their origin; it never
//! decides what a run does (the command line and the environment, which outrank both files, are
//! `app`'s to weigh).
//!
//! A repository is not trusted: its file may set the check and the budgets, and may only *tighten*
//! the rest (turn the fetch phase or plugins off). It may never choose the model (a hostile repository
//! could name a server it controls and receive the code), the sandbox, or loosen verification; such
//! keys are reported as refused and ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::ToolCallMode;
use crate::sandbox::Choice;
use crate::tools::mcp::{NamedServer, ServerConfig};

/// The file name of a repository's config, at its top level.
pub const REPO_FILE: &str = ".agent.toml";

/// The configuration of `agent` (a user's `~/.config/agent/config.toml` or a repository's
/// `.agent.toml`). Every key is optional; a command-line flag or environment variable wins over both
/// files, a repository's file over the user's. See docs/config.md.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The model `agent run` and `agent eval` use: the name of a `[models.NAME]` profile, or a model
    /// spec as for `--model` (`PATH.gguf`, `DIR`, `hf:ORG/NAME[:FILE.gguf]`,
    /// `openai:http://HOST:PORT/v1#NAME`). User file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Named model profiles, chosen with `model = "NAME"`. User file only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelProfile>,
    /// Defaults of `agent run`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub run: RunSection,
    /// How commands the model runs are confined. User file only.
    #[serde(default, skip_serializing_if = "is_default")]
    pub sandbox: SandboxSection,
    /// MCP servers whose tools are offered to the model, by name (1-20 characters of a-z, 0-9 and
    /// _); their tools are called NAME__TOOL. Each starts inside the run's sandbox, in the worktree.
    /// User file only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp_servers: BTreeMap<String, ServerConfig>,
}

/// A named model with the options it runs best with.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// The model spec, as for `--model`.
    pub spec: String,
    /// The context window in tokens (`--context-window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 512))]
    pub context_window: Option<u32>,
    /// CPU threads for an in-process model (`--threads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub threads: Option<u16>,
    /// How tool calls are produced (`--tool-calls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<ToolCallMode>,
    /// A chat template replacing the model's own (`--chat-template`); relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<PathBuf>,
}

/// Defaults of `agent run`: each key is the flag of the same name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// The verification command (`--check`), e.g. "cargo test --quiet".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Most model turns per run (`--max-turns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_turns: Option<u64>,
    /// Most plan steps a run starts (`--max-steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_steps: Option<u64>,
    /// Most tokens per run, prompt and generated (`--max-tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Wall-clock limit per run in seconds (`--time-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<u64>,
    /// Checks a step may fail before it is rolled back (`--step-tries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub step_tries: Option<u64>,
    /// Time limit of each command the model runs, in seconds (`--command-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<u64>,
    /// Time limit of each check, in seconds (`--check-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_timeout: Option<u64>,
    /// Run the dependency-fetch phase (`false` is `--no-fetch`). A repository may only turn it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<bool>,
    /// Offer plugin tools (`false` is `--no-plugins`). A repository may only turn them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<bool>,
    /// Start the `[mcp_servers]` (`false` is `--no-mcp`). A repository may only turn them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<bool>,
    /// Commit steps even without a check (`--allow-unverified`). User file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unverified: Option<bool>,
    /// Let steps change existing tests while the check fails (`--allow-test-edits`). User file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_test_edits: Option<bool>,
    /// Ask for a fix step's short files back whole before it uses tools (`false` is
    /// `--no-whole-file-first`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_file_first: Option<bool>,
}

/// The sandbox of the commands the model runs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// `auto`, `bwrap` or `none` (`--sandbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Choice>,
    /// The profile for builds and tests (`--sandbox-profile`): `default`, a name in
    /// `~/.config/agent/sandboxes/`, or a path to a .toml file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// More hosts the dependency-fetch phase may reach over HTTPS through the registry proxy
    /// (`--registry`), e.g. a company registry; `*.example.org` for subdomains. The `fetch`
    /// profile already allows crates.io, PyPI and npm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A config file that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The user's config file.
    User(PathBuf),
    /// The repository's `.agent.toml`.
    Repo(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::User(path) => write!(f, "user config {}", path.display()),
            Origin::Repo(path) => write!(f, "repository config {}", path.display()),
        }
    }
}

/// One setting a config file gives, as `agent run` would receive it on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key as written in the file, e.g. `run.max_turns`.
    pub key: &'static str,
    /// The value as the file gives it (for display).
    pub value: String,
    /// The `agent run` arguments it stands for (empty when it only restates the default).
    pub args: Vec<String>,
    /// The `RunArgs` field a command-line flag or environment variable for it would fill.
    pub field: &'static str,
    pub origin: Origin,
}

/// A repository setting that was ignored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub key: &'static str,
    pub path: PathBuf,
    pub reason: &'static str,
}

/// The two files, read and laid over each other.
#[derive(Debug, Default)]
pub struct Layers {
    pub user: Option<(PathBuf, ConfigFile)>,
    pub repo: Option<(PathBuf, ConfigFile)>,
    /// Where the repository's file was looked for (None outside a repository).
    pub repo_file: Option<PathBuf>,
}

/// The user's config file: `$XDG_CONFIG_HOME/agent/config.toml`, else `~/.config/agent/config.toml`.
pub fn user_path() -> Option<PathBuf> {
    crate::dirs::config_dir().map(|dir| dir.join("config.toml"))
}

/// Read the user's config file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<ConfigFile>, ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError {
                path: path.to_path_buf(),
                message: format!("cannot read it: {e}"),
            })
        }
    };
    parse(&bytes, path).map(Some)
}

/// Read a repository's `.agent.toml` the way every repository file is read: through the one door
/// for worktree content (resolved beneath the top level, a regular file, size-capped), so a link
/// to a secret elsewhere or a FIFO gets an error instead of a read.
pub fn read_repo(toplevel: &Path) -> Result<Option<ConfigFile>, ConfigError> {
    let path = toplevel.join(REPO_FILE);
    let error = |message: String| ConfigError {
        path: path.clone(),
        message,
    };
    let root = crate::hostfs::Beneath::open(toplevel).map_err(|e| error(e.to_string()))?;
    match root.read_if_exists(Path::new(REPO_FILE), MAX_FILE) {
        Ok(Some(bytes)) => parse(&bytes, &path).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(error(format!("not read: {e}"))),
    }
}

/// Largest config file read.
const MAX_FILE: u64 = 1 << 20;

fn parse(bytes: &[u8], path: &Path) -> Result<ConfigFile, ConfigError> {
    let error = |message: String| ConfigError {
        path: path.to_path_buf(),
        message,
    };
    // A config file is small; anything large is not one (and is not worth parsing).
    if bytes.len() as u64 > MAX_FILE {
        return Err(error("larger than 1 MiB: not a config file".into()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| error("not UTF-8 text".into()))?;
    let mut file: ConfigFile = toml::from_str(text).map_err(|e| error(e.to_string()))?;
    // A profile's chat template is relative to the file that names it.
    let base = path.parent().unwrap_or(Path::new("."));
    for profile in file.models.values_mut() {
        if let Some(template) = profile.chat_template.as_mut() {
            if template.is_relative() {
                *template = base.join(&*template);
            }
        }
    }
    for host in &file.sandbox.registries {
        if let Some(problem) = crate::sandbox::profile::check_host(host) {
            return Err(error(format!("sandbox.registries: {problem}")));
        }
    }
    for (name, server) in &file.mcp_servers {
        if let Some(problem) = crate::tools::mcp::check_name(name) {
            return Err(error(format!("[mcp_servers.{name}]: {problem}")));
        }
        if server.command.trim().is_empty() {
            return Err(error(format!(
                "[mcp_servers.{name}]: `command` is empty; give the command line that starts the server"
            )));
        }
    }
    if let Some(name) = &file.model {
        if name.is_empty() {
            return Err(error(
                "`model` is empty: name a [models.NAME] profile or a model spec".into(),
            ));
        }
    }
    Ok(file)
}

impl Layers {
    /// The user's file and `repo`'s `.agent.toml` (none when `repo` is None).
    pub fn load(repo_toplevel: Option<&Path>) -> Result<Self, ConfigError> {
        let user = match user_path() {
            Some(path) => read(&path)?.map(|file| (path, file)),
            None => None,
        };
        let repo = match repo_toplevel {
            Some(dir) => read_repo(dir)?.map(|file| (dir.join(REPO_FILE), file)),
            None => None,
        };
        Ok(Layers {
            user,
            repo,
            repo_file: repo_toplevel.map(|dir| dir.join(REPO_FILE)),
        })
    }

    /// Every setting the files give, the repository's over the user's, and the repository settings
    /// that were refused. A setting appears at most once, from the file that decides it.
    pub fn settings(&self) -> (Vec<Setting>, Vec<Refused>) {
        let user = self.user.as_ref().map(|(path, file)| {
            let origin = Origin::User(path.clone());
            file_settings(file, &origin)
        });
        let mut refused = Vec::new();
        let repo = self.repo.as_ref().map(|(path, file)| {
            let origin = Origin::Repo(path.clone());
            file_settings(file, &origin)
        });
        let mut settings: Vec<Setting> = user.unwrap_or_default();
        // Profiles a repository defines are never used: say so even when no `model` names one.
        if let Some((path, file)) = self.repo.as_ref().filter(|(_, f)| !f.models.is_empty()) {
            if file.model.is_none() {
                refused.push(Refused {
                    key: "models",
                    path: path.clone(),
                    reason: "a repository may not choose the model (it could name a server that receives your code)",
                });
            }
        }
        for setting in repo.unwrap_or_default() {
            let Origin::Repo(path) = &setting.origin else {
                continue;
            };
            let user_value = settings.iter().find(|s| s.key == setting.key);
            match repo_rule(setting.key) {
                RepoRule::Never(reason) => refused.push(Refused {
                    key: setting.key,
                    path: path.clone(),
                    reason,
                }),
                // Turning off is a tightening; turning back on what the user turned off is not.
                RepoRule::OnlyOff if setting.value == "true" => {
                    if user_value.is_some_and(|u| u.value == "false") {
                        refused.push(Refused {
                            key: setting.key,
                            path: path.clone(),
                            reason: "a repository may turn this off, not on",
                        });
                    }
                }
                RepoRule::OnlyOff | RepoRule::Free => {
                    settings.retain(|s| s.key != setting.key);
                    settings.push(setting);
                }
            }
        }
        settings.sort_by_key(|s| KEYS.iter().position(|(k, _)| *k == s.key));
        (settings, refused)
    }
}

/// What a repository's file may do with a key.
enum RepoRule {
    Free,
    OnlyOff,
    Never(&'static str),
}

fn repo_rule(key: &str) -> RepoRule {
    match key {
        "model" | "context_window" | "threads" | "tool_calls" | "chat_template" => RepoRule::Never(
            "a repository may not choose the model (it could name a server that receives your code)",
        ),
        "sandbox.mode" | "sandbox.profile" | "sandbox.registries" => {
            RepoRule::Never("a repository may not change the sandbox")
        }
        "run.allow_unverified" | "run.allow_test_edits" => {
            RepoRule::Never("a repository may not loosen verification")
        }
        "mcp_servers" => RepoRule::Never(
            "a repository may not start MCP servers (only your own config chooses the programs whose tools the model gets)",
        ),
        "run.fetch" | "run.plugins" | "run.mcp" => RepoRule::OnlyOff,
        _ => RepoRule::Free,
    }
}

/// Every key, in the order `agent config show` lists them, with the `agent run` argument (its clap
/// id, the `RunArgs` field) it stands for.
pub const KEYS: &[(&str, &str)] = &[
    ("model", "model"),
    ("context_window", "context_window"),
    ("threads", "threads"),
    ("tool_calls", "tool_calls"),
    ("chat_template", "chat_template"),
    ("run.check", "check"),
    ("run.max_turns", "max_turns"),
    ("run.max_steps", "max_steps"),
    ("run.max_tokens", "max_tokens"),
    ("run.time_limit", "time_limit"),
    ("run.step_tries", "step_tries"),
    ("run.command_timeout", "command_timeout"),
    ("run.check_timeout", "check_timeout"),
    ("run.fetch", "no_fetch"),
    ("run.plugins", "no_plugins"),
    ("run.mcp", "no_mcp"),
    ("mcp_servers", "mcp_servers"),
    ("run.allow_unverified", "allow_unverified"),
    ("run.allow_test_edits", "allow_test_edits"),
    ("run.whole_file_first", "no_whole_file_first"),
    ("sandbox.mode", "sandbox"),
    ("sandbox.profile", "sandbox_profile"),
    ("sandbox.registries", "registries"),
];

/// The keys a `[models.NAME]` profile sets besides the model itself.
pub const PROFILE_KEYS: &[&str] = &["context_window", "threads", "tool_calls", "chat_template"];

fn field_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, field)| *field)
        .unwrap_or("")
}

/// The settings one file gives, each with the `agent run` arguments it stands for.
fn file_settings(file: &ConfigFile, origin: &Origin) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut push = |key: &'static str, value: String, args: Vec<String>| {
        out.push(Setting {
            key,
            value,
            args,
            field: field_of(key),
            origin: origin.clone(),
        })
    };
    let flag = |name: &str, value: &str| vec![name.to_string(), value.to_string()];
    if let Some(name) = &file.model {
        match file.models.get(name) {
            Some(profile) => {
                push(
                    "model",
                    format!("{name} ({})", profile.spec),
                    flag("--model", &profile.spec),
                );
                if let Some(n) = profile.context_window {
                    push(
                        "context_window",
                        n.to_string(),
                        flag("--context-window", &n.to_string()),
                    );
                }
                if let Some(n) = profile.threads {
                    push("threads", n.to_string(), flag("--threads", &n.to_string()));
                }
                if let Some(mode) = profile.tool_calls {
                    let mode = value_name(mode);
                    push("tool_calls", mode.clone(), flag("--tool-calls", &mode));
                }
                if let Some(path) = &profile.chat_template {
                    let path = path.display().to_string();
                    push(
                        "chat_template",
                        path.clone(),
                        flag("--chat-template", &path),
                    );
                }
            }
            None => push("model", name.clone(), flag("--model", name)),
        }
    }
    let run = &file.run;
    if let Some(check) = &run.check {
        push("run.check", check.clone(), flag("--check", check));
    }
    let numbers = [
        ("run.max_turns", "--max-turns", run.max_turns),
        ("run.max_steps", "--max-steps", run.max_steps),
        ("run.max_tokens", "--max-tokens", run.max_tokens),
        ("run.time_limit", "--time-limit", run.time_limit),
        ("run.step_tries", "--step-tries", run.step_tries),
        (
            "run.command_timeout",
            "--command-timeout",
            run.command_timeout,
        ),
        ("run.check_timeout", "--check-timeout", run.check_timeout),
    ];
    for (key, name, value) in numbers {
        if let Some(n) = value {
            push(key, n.to_string(), flag(name, &n.to_string()));
        }
    }
    let switch = |value: bool, when: bool, name: &str| {
        if value == when {
            vec![name.to_string()]
        } else {
            Vec::new()
        }
    };
    if let Some(on) = run.fetch {
        push("run.fetch", on.to_string(), switch(on, false, "--no-fetch"));
    }
    if let Some(on) = run.plugins {
        push(
            "run.plugins",
            on.to_string(),
            switch(on, false, "--no-plugins"),
        );
    }
    if let Some(on) = run.mcp {
        push("run.mcp", on.to_string(), switch(on, false, "--no-mcp"));
    }
    if !file.mcp_servers.is_empty() {
        let named: Vec<NamedServer> = file
            .mcp_servers
            .iter()
            .map(|(name, config)| NamedServer {
                name: name.clone(),
                config: config.clone(),
            })
            .collect();
        let value = named
            .iter()
            .map(|n| format!("{} ({})", n.name, n.config.network_label()))
            .collect::<Vec<_>>()
            .join(", ");
        let args = named
            .iter()
            .flat_map(|n| ["--mcp-server".to_string(), n.to_string()])
            .collect();
        push("mcp_servers", value, args);
    }
    if let Some(on) = run.allow_unverified {
        push(
            "run.allow_unverified",
            on.to_string(),
            switch(on, true, "--allow-unverified"),
        );
    }
    if let Some(on) = run.allow_test_edits {
        push(
            "run.allow_test_edits",
            on.to_string(),
            switch(on, true, "--allow-test-edits"),
        );
    }
    if let Some(on) = run.whole_file_first {
        push(
            "run.whole_file_first",
            on.to_string(),
            switch(on, false, "--no-whole-file-first"),
        );
    }
    if let Some(mode) = file.sandbox.mode {
        let mode = value_name(mode);
        push("sandbox.mode", mode.clone(), flag("--sandbox", &mode));
    }
    if let Some(profile) = &file.sandbox.profile {
        push(
            "sandbox.profile",
            profile.clone(),
            flag("--sandbox-profile", profile),
        );
    }
    let registries = &file.sandbox.registries;
    if !registries.is_empty() {
        let args = registries
            .iter()
            .flat_map(|host| ["--registry".to_string(), host.clone()])
            .collect();
        push("sandbox.registries", registries.join(", "), args);
    }
    out
}

/// A value's spelling on the command line (and in the file).
fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The JSON schema of the config file (for editors: taplo, Even Better TOML, JetBrains).
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(ConfigFile)
}
