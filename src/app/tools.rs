//! `agent tools`: list the plugin tools a run would offer, and `agent tools install` one into the
//! user's config dir.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::UsageError;
use crate::cli::{ToolsArgs, ToolsCommand};
use crate::tools::mcp;
use crate::tools::plugin::{self, Discovery, Origin, Plugin};

/// The repository root of `dir` (its work tree), or `dir` itself outside a repository.
pub(crate) fn repository_root(dir: &Path) -> PathBuf {
    git2::Repository::discover(dir)
        .ok()
        .and_then(|r| r.workdir().map(Path::to_path_buf))
        .unwrap_or_else(|| dir.to_path_buf())
}

/// The plugins a run in `repo` offers (none with `--no-plugins` or in a build without the feature), and
/// one line for each manifest that did not load.
pub(crate) fn discover_for_run(repo: &Path, disabled: bool) -> Discovery {
    if disabled || !plugin::SUPPORTED {
        return Discovery::default();
    }
    let mut found = plugin::discover(Some(repo));
    // A plugin whose module is not built cannot be called: offering it would only waste a turn.
    let (ready, unbuilt): (Vec<Plugin>, Vec<Plugin>) = std::mem::take(&mut found.plugins)
        .into_iter()
        .partition(Plugin::module_present);
    found.plugins = ready;
    found
        .problems
        .extend(unbuilt.iter().map(|p| not_built(p).to_string()));
    found
}

fn not_built(plugin: &Plugin) -> String {
    format!(
        "plugin {} is not offered: its module {} is not built{}",
        plugin.name,
        plugin.module.display(),
        if plugin.dir.join("Cargo.toml").is_file() {
            format!(
                " (build it: cargo build --release --target wasm32-wasip1 --manifest-path {})",
                plugin.dir.join("Cargo.toml").display()
            )
        } else {
            String::new()
        }
    )
}

pub fn tools(args: ToolsArgs) -> anyhow::Result<u8> {
    match args.command {
        Some(ToolsCommand::Install { dir, force }) => install(&dir, force),
        Some(ToolsCommand::Call { name, arguments }) => call(&args.repo, &name, &arguments),
        None => list(&args.repo, args.json),
    }
}

fn list(repo: &Path, json: bool) -> anyhow::Result<u8> {
    if !repo.is_dir() {
        return Err(UsageError(format!("--repo {}: not a directory", repo.display())).into());
    }
    let root = repository_root(repo);
    let found = plugin::discover(Some(&root));
    let (servers, mcp_problems) = mcp_servers(&root)?;
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "supported": plugin::SUPPORTED,
            "plugins": found.plugins.iter().map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                v["built"] = p.module_present().into();
                v
            }).collect::<Vec<_>>(),
            "problems": found.problems,
            "mcp_servers": servers.iter().map(|s| serde_json::json!({
                "name": s.name,
                "command": s.command,
                "network": s.network,
                "timeout_s": s.timeout.as_secs(),
                "tools": s.tools.iter().map(|t| serde_json::json!({
                    "name": t.offered,
                    "description": t.description,
                    "parameters": t.schema,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "mcp_problems": mcp_problems,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(0);
    }
    if !plugin::SUPPORTED {
        writeln!(
            out,
            "note: this agent was built without the `plugins` feature; plugins are listed but not offered"
        )?;
    }
    let user = plugin::user_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "(no config dir: set HOME or XDG_CONFIG_HOME)".into());
    writeln!(out, "built-in: {}", builtin_names().join(", "))?;
    if found.plugins.is_empty() {
        writeln!(
            out,
            "no plugins in {} or {user}",
            root.join("tools").display()
        )?;
    }
    for p in &found.plugins {
        let origin = match p.origin {
            Origin::Repository => "repository",
            Origin::User => "user",
        };
        writeln!(
            out,
            "\n{}  ({origin}: {})\n  workspace {}, no network, time limit {} ms, memory limit {} MiB\n  module: {}{}\n  {}",
            p.name,
            p.dir.display(),
            p.access.label(),
            p.time_limit_ms,
            p.memory_limit_mb,
            p.module.display(),
            if p.module_present() { "" } else { "  (NOT BUILT: not offered)" },
            crate::report::first_line(&p.description, 100),
        )?;
    }
    for problem in &found.problems {
        writeln!(out, "\nwarning: {problem}")?;
    }
    for server in &servers {
        writeln!(
            out,
            "\nMCP server {}  (user config: {})\n  {}, call limit {} s",
            server.name,
            server.command,
            server.network,
            server.timeout.as_secs()
        )?;
        for tool in &server.tools {
            writeln!(
                out,
                "  {}: {}",
                tool.offered,
                crate::report::first_line(&tool.description, 100)
            )?;
        }
    }
    for problem in &mcp_problems {
        writeln!(out, "\nwarning: {problem}")?;
    }
    Ok(0)
}

/// The MCP servers of the user's config, each started (in an empty folder, under the sandbox the
/// config chooses) to read its tools, and what went wrong with those that did not start.
fn mcp_servers(root: &Path) -> anyhow::Result<(Vec<std::sync::Arc<mcp::Server>>, Vec<String>)> {
    let toplevel = crate::vcs::toplevel(root);
    let layers =
        crate::config::Layers::load(toplevel.as_deref()).map_err(|e| UsageError(e.to_string()))?;
    let Some((_, user)) = &layers.user else {
        return Ok((Vec::new(), Vec::new()));
    };
    if user.run.mcp == Some(false) || user.mcp_servers.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let servers: Vec<mcp::NamedServer> = user
        .mcp_servers
        .iter()
        .map(|(name, config)| mcp::NamedServer {
            name: name.clone(),
            config: config.clone(),
        })
        .collect();
    let choice = user.sandbox.mode.unwrap_or(crate::sandbox::Choice::Auto);
    let profile = user.sandbox.profile.as_deref().unwrap_or("default");
    let empty = tempfile::tempdir().context("creating an empty folder for the MCP servers")?;
    let launch = mcp::Launch {
        cwd: empty.path(),
        env: &[],
        default_timeout: std::time::Duration::from_secs(300),
        lifetime: mcp::START_TIMEOUT * 2,
    };
    let sandbox_for =
        |config: &mcp::ServerConfig| mcp::sandbox_for(choice, Vec::new(), profile, config);
    Ok(mcp::start_all(&servers, &sandbox_for, &launch))
}

fn call(repo: &Path, name: &str, arguments: &str) -> anyhow::Result<u8> {
    let arguments: serde_json::Value = serde_json::from_str(arguments)
        .map_err(|e| UsageError(format!("the arguments are not JSON: {e}")))?;
    let root = repository_root(repo);
    let found = plugin::discover(Some(&root));
    let Some(plugin) = found.plugins.into_iter().find(|p| p.name == name) else {
        return Err(UsageError(format!(
            "no plugin named {name:?} in {} or your config dir; `agent tools` lists them",
            root.join("tools").display()
        ))
        .into());
    };
    let sandbox = crate::sandbox::none::NoSandbox;
    let ctx = crate::tools::ToolContext {
        root: &root,
        sandbox: &sandbox,
        // Plugins bring their own limits; these are for built-ins only.
        command_timeout: std::time::Duration::from_secs(60),
        // The person trying a plugin sees far more of its output than a model would.
        output_limit: 1 << 20,
        command_env: &[],
    };
    let started = std::time::Instant::now();
    let result = crate::tools::Toolbox::with_plugins(vec![plugin]).call(&ctx, name, &arguments);
    let elapsed = started.elapsed();
    match result {
        Ok(crate::tools::ToolOutput::Text(text)) | Ok(crate::tools::ToolOutput::Finish(text)) => {
            print!("{text}");
            eprintln!("plugin {name}: ok in {:.1} ms", elapsed.as_secs_f64() * 1e3);
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

fn builtin_names() -> Vec<String> {
    crate::tools::specs().into_iter().map(|s| s.name).collect()
}

fn install(dir: &Path, force: bool) -> anyhow::Result<u8> {
    let plugin = plugin::load(dir, Origin::User).map_err(UsageError)?;
    if !plugin.module_present() {
        return Err(UsageError(not_built(&plugin)).into());
    }
    let user = plugin::user_dir().ok_or_else(|| {
        UsageError("no config dir to install into: set HOME or XDG_CONFIG_HOME".into())
    })?;
    let target = user.join(&plugin.name);
    if target.exists() && !force {
        return Err(UsageError(format!(
            "{} already exists; pass --force to replace it",
            target.display()
        ))
        .into());
    }
    // Build the copy beside the target and swap it in, so a failed install leaves the old one whole.
    std::fs::create_dir_all(&user).with_context(|| format!("creating {}", user.display()))?;
    let staging = tempfile::tempdir_in(&user).context("creating a staging folder")?;
    let module_name = format!("{}.wasm", plugin.name);
    std::fs::copy(&plugin.module, staging.path().join(&module_name))
        .with_context(|| format!("copying {}", plugin.module.display()))?;
    let manifest_text = std::fs::read_to_string(dir.join(plugin::MANIFEST))?;
    let mut manifest: plugin::Manifest = toml::from_str(&manifest_text)?;
    manifest.module = module_name;
    manifest.schema = plugin::SchemaSource::File("schema.json".into());
    std::fs::write(
        staging.path().join("schema.json"),
        serde_json::to_string_pretty(&plugin.schema)?,
    )?;
    std::fs::write(
        staging.path().join(plugin::MANIFEST),
        toml::to_string_pretty(&manifest)?,
    )?;
    let installed = plugin::load(staging.path(), Origin::User).map_err(UsageError)?;
    let compiled = precompile(&installed)?;
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("removing the old {}", target.display()))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &target)
        .with_context(|| format!("moving the plugin into {}", target.display()))?;
    println!(
        "installed {} into {} ({}, {})",
        plugin.name,
        target.display(),
        plugin.access.label(),
        compiled
    );
    Ok(0)
}

#[cfg(feature = "plugins")]
fn precompile(plugin: &Plugin) -> anyhow::Result<String> {
    let started = std::time::Instant::now();
    let cached = crate::sandbox::wasm::precompile(&plugin.name, &plugin.module)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(if cached {
        "already compiled".into()
    } else {
        format!("compiled in {} ms", started.elapsed().as_millis())
    })
}

#[cfg(not(feature = "plugins"))]
fn precompile(_plugin: &Plugin) -> anyhow::Result<String> {
    Ok("not compiled: this build has no `plugins` feature".into())
}
