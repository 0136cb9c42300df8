//! Tools from MCP servers (the Model Context Protocol, client side): each server the user's config
//! names is started inside the run's sandbox (stdio transport, the worktree as its working
//! directory, no network unless its entry grants it), and its tools are offered to the model next to
//! the built-in and plugin tools, named `SERVER__TOOL`, under the same constrained decoding.
//!
//! A server is third-party code and the model's arguments are hostile: a call's arguments are checked
//! against the tool's schema before they are sent, its result is capped like a built-in tool's, a
//! call that outlasts its time limit stops the server, and what a server says about itself (names,
//! descriptions, schemas) is bounded before the model sees it. This module never decides what the
//! agent does next and never gives a server more than the sandbox it was handed.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation, PaginatedRequestParams};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::{ToolError, ToolOutput};
use crate::model::ToolSpec;
use crate::sandbox::{CommandSpec, Sandbox};

/// How long a server may take to start and answer `initialize` and `tools/list`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Most tools taken from one server (each costs prompt tokens in every turn).
pub const MAX_TOOLS: usize = 64;
/// Most `tools/list` pages read from one server.
const MAX_PAGES: usize = 8;
/// Longest tool description offered, in bytes.
const MAX_DESCRIPTION: usize = 1_000;
/// Largest argument schema accepted, in bytes of JSON.
const MAX_SCHEMA: usize = 32 * 1024;
/// Bytes of a server's stderr kept for error messages.
const STDERR_TAIL: usize = 4 * 1024;
/// Joins a server's name and its tool's name in the name the model sees.
pub const SEPARATOR: &str = "__";

/// One MCP server as the config describes it (`[mcp_servers.NAME]` in the user's config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The shell command line that starts the server, speaking MCP on stdin/stdout (e.g.
    /// "python3 -m my_docs_server"). It runs with `sh -c` inside the run's sandbox, in the worktree.
    pub command: String,
    /// Give the server the host's network, unfiltered. Default: no network.
    #[serde(default, skip_serializing_if = "is_false")]
    pub network: bool,
    /// Give the server HTTPS to these hosts only (through the agent's registry proxy;
    /// `*.example.org` for subdomains). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// Seconds one tool call may take; a call that takes longer stops the server. Default: the
    /// run's `--command-timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout: Option<u64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl ServerConfig {
    /// Whether the server gets any network.
    pub fn has_network(&self) -> bool {
        self.network || !self.allow_hosts.is_empty()
    }

    /// "no network", "HTTPS to a, b" or "NETWORK".
    pub fn network_label(&self) -> String {
        if self.network {
            "NETWORK".into()
        } else if !self.allow_hosts.is_empty() {
            format!("HTTPS to {}", self.allow_hosts.join(", "))
        } else {
            "no network".into()
        }
    }
}

/// A server with its name: the value of `agent run --mcp-server`, `NAME=COMMAND` (no network, the
/// default time limit) or `NAME={JSON}` with the fields of [`ServerConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedServer {
    pub name: String,
    pub config: ServerConfig,
}

/// Why a server name is refused, or None when it is fine.
pub fn check_name(name: &str) -> Option<String> {
    let ok = (1..=20).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains(SEPARATOR)
        && !name.ends_with('_');
    (!ok).then(|| {
        format!(
            "MCP server name {name:?} must be 1-20 characters of a-z, 0-9 and single _, starting with a letter"
        )
    })
}

impl FromStr for NamedServer {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let (name, rest) = value
            .split_once('=')
            .ok_or_else(|| format!("{value:?}: expected NAME=COMMAND or NAME={{JSON}}"))?;
        if let Some(problem) = check_name(name) {
            return Err(problem);
        }
        let config = if rest.trim_start().starts_with('{') {
            serde_json::from_str::<ServerConfig>(rest)
                .map_err(|e| format!("MCP server {name}: {e}"))?
        } else {
            ServerConfig {
                command: rest.to_string(),
                ..ServerConfig::default()
            }
        };
        if config.command.trim().is_empty() {
            return Err(format!(
                "MCP server {name}: the command is empty; give the command line that starts it"
            ));
        }
        Ok(NamedServer {
            name: name.to_string(),
            config,
        })
    }
}

impl std::fmt::Display for NamedServer {
    /// The `--mcp-server` argument that stands for this server (parses back to it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = ServerConfig {
            command: self.config.command.clone(),
            ..ServerConfig::default()
        };
        if self.config == plain && !self.config.command.trim_start().starts_with('{') {
            write!(f, "{}={}", self.name, self.config.command)
        } else {
            let json = serde_json::to_string(&self.config).map_err(|_| std::fmt::Error)?;
            write!(f, "{}={json}", self.name)
        }
    }
}

/// One tool of a server, as offered.
#[derive(Debug)]
pub struct RemoteTool {
    /// The name the model calls it by: `SERVER__TOOL`.
    pub offered: String,
    /// The name the server knows it by.
    pub remote: String,
    pub description: String,
    pub schema: Value,
    validator: jsonschema::Validator,
}

impl RemoteTool {
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.offered.clone(),
            description: self.description.clone(),
            parameters: self.schema.clone(),
            body: None,
            withheld: false,
            body_opens: None,
        }
    }
}

type Client = RunningService<RoleClient, ClientConfig>;

/// A running MCP server and the tools it offered.
pub struct Server {
    pub name: String,
    pub tools: Vec<RemoteTool>,
    /// What a call may take.
    pub timeout: Duration,
    /// What the server may reach, for reports.
    pub network: String,
    /// The command line that started it.
    pub command: String,
    /// None once the server has stopped (with the reason in `stopped`).
    client: Mutex<Option<Client>>,
    stopped: Mutex<Option<String>>,
    /// The server's process group.
    pgid: Option<i32>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    runtime: tokio::runtime::Runtime,
    /// Kept until the process is gone (its cgroup).
    guard: Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
    /// The sandbox it runs in, when it is the server's own (its registry proxy must outlive it).
    sandbox: Option<Box<dyn Sandbox>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("tools", &self.tools)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where and how servers start: the run's worktree, environment and lifetime.
pub struct Launch<'a> {
    /// The working directory (the worktree).
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    /// A call's time limit when the server's entry gives none.
    pub default_timeout: Duration,
    /// The most CPU time the server may use over its life.
    pub lifetime: Duration,
}

/// A started server, and what was wrong with the tools it offered and did not get offered.
pub struct Started {
    pub server: Server,
    pub problems: Vec<String>,
}

impl Server {
    /// Start `named` in `sandbox`, introduce ourselves, and read its tools. Fails (with the end of
    /// what the server wrote to stderr) when it does not start or answer in time.
    pub fn start(
        named: &NamedServer,
        sandbox: &dyn Sandbox,
        launch: &Launch<'_>,
    ) -> Result<Started, String> {
        let name = &named.name;
        let spec = CommandSpec {
            command: named.config.command.clone(),
            cwd: launch.cwd.to_path_buf(),
            timeout: launch.lifetime,
            env: launch.env.to_vec(),
            output_limit: 0,
        };
        let service = sandbox.service(&spec);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("mcp-{name}"))
            .enable_all()
            .build()
            .map_err(|e| format!("MCP server {name}: cannot start a runtime: {e}"))?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        // Spawned here, on the caller's thread (the run's, which lives as long as the server): a
        // parent-death signal set for the sandbox follows the thread that forked it.
        let spawned = {
            let _context = runtime.enter();
            TokioChildProcess::builder(tokio::process::Command::from(service.command))
                .stderr(Stdio::piped())
                .spawn()
        };
        let (transport, stderr) =
            spawned.map_err(|e| format!("MCP server {name}: cannot start it: {e}"))?;
        let pgid = transport.id().map(|id| id as i32);
        if let Some(mut stderr) = stderr {
            let tail = Arc::clone(&stderr_tail);
            runtime.spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut tail) = tail.lock() {
                        tail.extend(&buf[..n]);
                        let excess = tail.len().saturating_sub(STDERR_TAIL);
                        tail.drain(..excess);
                    }
                }
            });
        }
        let mut info = ClientConfig::default();
        info.client_info = Implementation::new("agent", env!("CARGO_PKG_VERSION"));
        let mut server = Server {
            name: name.clone(),
            tools: Vec::new(),
            timeout: named
                .config
                .timeout
                .map(Duration::from_secs)
                .unwrap_or(launch.default_timeout),
            network: named.config.network_label(),
            command: named.config.command.clone(),
            sandbox: None,
            client: Mutex::new(None),
            stopped: Mutex::new(None),
            pgid,
            stderr: stderr_tail,
            runtime,
            guard: Mutex::new(service.guard),
        };
        let listed = server.runtime.block_on(async {
            let client = tokio::time::timeout(START_TIMEOUT, info.serve(transport))
                .await
                .map_err(|_| format!("did not answer `initialize` within {START_TIMEOUT:?}"))?
                .map_err(|e| format!("the MCP handshake failed: {e}"))?;
            let listed = tokio::time::timeout(START_TIMEOUT, list_tools(&client)).await;
            // Kept even when listing failed, so that stopping the server below closes it.
            Ok::<_, String>((client, listed))
        });
        let (client, listed) = match listed {
            Ok(done) => done,
            Err(why) => return Err(server.failed(&why)),
        };
        *server.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
        let listed = match listed {
            Ok(Ok(tools)) => tools,
            Ok(Err(why)) => return Err(server.failed(&why)),
            Err(_) => {
                return Err(
                    server.failed(&format!("did not list its tools within {START_TIMEOUT:?}"))
                )
            }
        };
        let mut problems = Vec::new();
        for tool in listed {
            match offered_tool(name, tool) {
                Ok(tool) if server.tools.iter().any(|t| t.offered == tool.offered) => problems
                    .push(format!(
                        "MCP server {name}: tool {:?} is listed twice; the second is ignored",
                        tool.remote
                    )),
                Ok(tool) if server.tools.len() >= MAX_TOOLS => {
                    problems.push(format!(
                        "MCP server {name}: more than {MAX_TOOLS} tools; {:?} and later ones are not offered",
                        tool.remote
                    ));
                    break;
                }
                Ok(tool) => server.tools.push(tool),
                Err(problem) => problems.push(format!("MCP server {name}: {problem}")),
            }
        }
        Ok(Started { server, problems })
    }

    /// Stop the server and say why it failed, with the end of its stderr.
    fn failed(&self, why: &str) -> String {
        self.stop(why);
        let said = self.stderr_tail();
        format!(
            "MCP server {} ({}): {why}{}",
            self.name,
            crate::text::head(&self.command, 80).0,
            if said.is_empty() {
                String::new()
            } else {
                format!("; its stderr ended with:\n{said}")
            }
        )
    }

    fn stderr_tail(&self) -> String {
        let bytes: Vec<u8> = self
            .stderr
            .lock()
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    /// Whether the model may call `offered` here.
    pub fn tool(&self, offered: &str) -> Option<&RemoteTool> {
        self.tools.iter().find(|t| t.offered == offered)
    }

    /// Call `tool` with `arguments` (checked against its schema first) and turn the result into text
    /// for the model, at most `output_limit` bytes.
    pub fn call(
        &self,
        tool: &RemoteTool,
        arguments: &Value,
        output_limit: usize,
    ) -> Result<ToolOutput, ToolError> {
        let arguments = if arguments.is_null() {
            Value::Object(Default::default())
        } else {
            arguments.clone()
        };
        if let Some(first) = tool.validator.iter_errors(&arguments).next() {
            let at = first.instance_path().to_string();
            return Err(ToolError::BadArguments {
                tool: tool.offered.clone(),
                reason: if at.is_empty() {
                    first.to_string()
                } else {
                    format!("{at}: {first}")
                },
                schema: tool.schema.to_string(),
            });
        }
        let Value::Object(arguments) = arguments else {
            return Err(ToolError::Failed(
                "the arguments must be a JSON object".into(),
            ));
        };
        let params = CallToolRequestParams::new(tool.remote.clone()).with_arguments(arguments);
        let answer = {
            let client = self.client.lock().unwrap_or_else(|e| e.into_inner());
            let Some(client) = client.as_ref() else {
                let why = self
                    .stopped
                    .lock()
                    .ok()
                    .and_then(|s| s.clone())
                    .unwrap_or_default();
                return Err(ToolError::Failed(format!(
                    "MCP server {} is not running ({why}); its tools cannot be used in this run",
                    self.name
                )));
            };
            // The timer is made inside the runtime: tokio's timers need its context.
            self.runtime.block_on(async {
                tokio::time::timeout(self.timeout, client.call_tool(params)).await
            })
        };
        let result = match answer {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                return Err(ToolError::Failed(
                    self.failed(&format!("the call to {} failed: {e}", tool.remote)),
                ));
            }
            Err(_) => {
                return Err(ToolError::Failed(self.failed(&format!(
                    "{} did not answer within {} s; the server was stopped and its tools no longer work in this run",
                    tool.remote,
                    self.timeout.as_secs()
                ))));
            }
        };
        let mut parts: Vec<String> = result.content.iter().map(content_text).collect();
        if parts.is_empty() {
            if let Some(structured) = &result.structured_content {
                parts.push(structured.to_string());
            }
        }
        let text = parts.join("\n");
        let (text, _) = crate::sandbox::cap_output(text.as_bytes(), output_limit);
        if result.is_error == Some(true) {
            return Err(ToolError::Failed(format!(
                "{} reported an error: {text}",
                tool.offered
            )));
        }
        Ok(ToolOutput::Text(text))
    }

    /// Kill the server's process group and close the connection; later calls fail with `why`.
    fn stop(&self, why: &str) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) with a negative pid signals only the server's own process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let client = self
            .client
            .try_lock()
            .ok()
            .and_then(|mut client| client.take());
        if let Some(client) = client {
            // The transport reaps the killed process as it closes.
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), client.cancel()).await
            });
        }
        if let Ok(mut guard) = self.guard.lock() {
            guard.take();
        }
        if let Ok(mut stopped) = self.stopped.lock() {
            stopped.get_or_insert_with(|| why.to_string());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop("the run ended");
    }
}

/// Every tool the server lists, reading at most [`MAX_PAGES`] pages.
async fn list_tools(client: &Client) -> Result<Vec<rmcp::model::Tool>, String> {
    let mut tools = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
        let page = client
            .list_tools(params)
            .await
            .map_err(|e| format!("listing its tools failed: {e}"))?;
        tools.extend(page.tools);
        match page.next_cursor {
            Some(next) if tools.len() <= MAX_TOOLS => cursor = Some(next),
            _ => break,
        }
    }
    Ok(tools)
}

/// A listed tool as the model will see it, or why it is not offered.
fn offered_tool(server: &str, tool: rmcp::model::Tool) -> Result<RemoteTool, String> {
    let remote = tool.name.to_string();
    let offered = format!("{server}{SEPARATOR}{remote}");
    let name_ok = !remote.is_empty()
        && offered.len() <= 64
        && remote
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(format!(
            "tool {:?} is not offered: its name must be letters, digits, _ and -, and {server}{SEPARATOR}NAME at most 64 characters",
            crate::text::head(&remote, 80).0
        ));
    }
    let mut schema = Value::Object(tool.input_schema.as_ref().clone());
    if schema.get("type").is_none() {
        schema["type"] = "object".into();
    }
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(format!(
            "tool {remote:?} is not offered: its input schema does not describe an object"
        ));
    }
    if schema.to_string().len() > MAX_SCHEMA {
        return Err(format!(
            "tool {remote:?} is not offered: its input schema is larger than {MAX_SCHEMA} bytes"
        ));
    }
    let schema = super::bound_strings(crate::model::schema::sanitize(&schema));
    let validator = jsonschema::validator_for(&schema).map_err(|e| {
        format!("tool {remote:?} is not offered: its input schema is not valid: {e}")
    })?;
    let said = tool
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or("(no description)");
    let description = format!(
        "{} (tool {remote} of MCP server {server})",
        crate::text::head(said, MAX_DESCRIPTION).0
    );
    Ok(RemoteTool {
        offered,
        remote,
        description,
        schema,
        validator,
    })
}

/// One content block as text: text as it is, a text resource's text, and a note for the rest.
fn content_text(block: &rmcp::model::ContentBlock) -> String {
    if let Some(text) = block.as_text() {
        return text.text.clone();
    }
    let value = serde_json::to_value(block).unwrap_or_default();
    if let Some(text) = value["resource"]["text"].as_str() {
        return text.to_string();
    }
    let kind = value["type"].as_str().unwrap_or("unknown");
    format!("[{kind} content, not shown]")
}

/// The sandbox of one server: `choice` and the profile named `profile` (as for the run's commands),
/// with the network `config` grants.
pub fn sandbox_for(
    choice: crate::sandbox::Choice,
    read_only: Vec<std::path::PathBuf>,
    profile: &str,
    config: &ServerConfig,
) -> Result<Box<dyn Sandbox>, String> {
    let mut profile = crate::sandbox::profile::Profile::load(profile)?;
    if config.has_network() {
        profile.network = true;
        profile.allow_hosts.clone_from(&config.allow_hosts);
    }
    // A weaker sandbox than asked for is reported for the run's commands; a server gets the same.
    crate::sandbox::select_with(choice, read_only, profile).map(|(sandbox, _)| sandbox)
}

/// Chooses the sandbox of one server from its entry.
pub type SandboxFor<'a> = dyn Fn(&ServerConfig) -> Result<Box<dyn Sandbox>, String> + 'a;

/// The servers a run starts: each in `sandbox` (or, for one granted network, in a sandbox like it
/// with that network), reporting each failure as a problem instead of failing the run.
pub fn start_all(
    servers: &[NamedServer],
    sandbox_for: &SandboxFor<'_>,
    launch: &Launch<'_>,
) -> (Vec<Arc<Server>>, Vec<String>) {
    let mut started = Vec::new();
    let mut problems = Vec::new();
    for named in servers {
        let sandbox = match sandbox_for(&named.config) {
            Ok(sandbox) => sandbox,
            Err(why) => {
                problems.push(format!("MCP server {} not started: {why}", named.name));
                continue;
            }
        };
        match Server::start(named, sandbox.as_ref(), launch) {
            Ok(mut done) => {
                problems.extend(done.problems);
                done.server.sandbox = Some(sandbox);
                started.push(Arc::new(done.server));
            }
            Err(why) => problems.push(why),
        }
    }
    (started, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_argument_parses_and_prints_back_to_itself() {
        let plain: NamedServer = "docs=python3 -m docs_server --port=0".parse().unwrap();
        assert_eq!(plain.name, "docs");
        assert_eq!(plain.config.command, "python3 -m docs_server --port=0");
        assert!(!plain.config.has_network());
        assert_eq!(plain.to_string(), "docs=python3 -m docs_server --port=0");
        let full: NamedServer =
            r#"web={"command": "srv", "allow_hosts": ["docs.rs"], "timeout": 9}"#
                .parse()
                .unwrap();
        assert_eq!(full.config.allow_hosts, ["docs.rs"]);
        assert_eq!(full.config.timeout, Some(9));
        assert_eq!(full.config.network_label(), "HTTPS to docs.rs");
        assert_eq!(full.to_string().parse::<NamedServer>().unwrap(), full);
        // A plain command that begins with a brace is written in the JSON form, so it reads back.
        let brace = NamedServer {
            name: "odd".into(),
            config: ServerConfig {
                command: "{ srv; }".into(),
                ..ServerConfig::default()
            },
        };
        assert_eq!(brace.to_string().parse::<NamedServer>().unwrap(), brace);
    }

    #[test]
    fn bad_server_arguments_say_what_is_wrong() {
        for (value, expected) in [
            ("docs", "expected NAME=COMMAND"),
            ("Docs=srv", "must be 1-20 characters"),
            ("a__b=srv", "must be 1-20 characters"),
            ("docs_=srv", "must be 1-20 characters"),
            ("averyveryverylongservername=srv", "must be 1-20 characters"),
            ("docs=  ", "the command is empty"),
            (r#"docs={"command": "srv", "nope": 1}"#, "unknown field"),
        ] {
            let error = value.parse::<NamedServer>().unwrap_err();
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn what_a_server_says_about_a_tool_is_bounded() {
        let tool = |name: &str, description: &str, schema: Value| {
            let Value::Object(schema) = schema else {
                unreachable!()
            };
            let mut tool =
                rmcp::model::Tool::new(name.to_string(), description.to_string(), Arc::new(schema));
            tool.title = None;
            offered_tool("srv", tool)
        };
        let fine = tool(
            "grep-docs",
            &"d".repeat(5000),
            serde_json::json!({"properties": {"q": {"type": "string"}}}),
        )
        .unwrap();
        assert_eq!(fine.offered, "srv__grep-docs");
        assert!(fine.description.len() < MAX_DESCRIPTION + 60);
        assert_eq!(fine.schema["type"], "object");
        assert_eq!(fine.schema["properties"]["q"]["maxLength"], 1000);
        let huge = serde_json::json!({"type": "object", "description": "x".repeat(MAX_SCHEMA)});
        assert!(tool("big", "", huge).unwrap_err().contains("larger than"));
        let broken = serde_json::json!({"type": "object", "properties": {"q": {"type": 7}}});
        assert!(tool("broken", "", broken)
            .unwrap_err()
            .contains("not valid"));
        assert!(tool("a b", "", serde_json::json!({})).is_err());
    }
}
