//! Phase 4 of a run: the sandboxes its commands run in, and the dependency fetch that runs once before
//! the offline work (with network, under the `fetch` profile), with the caches both share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::verify;
use crate::app::UsageError;
use crate::cli::RunArgs;
use crate::dirs::cache_dir;
use crate::protocol::{Event, Reporter};
use crate::sandbox::{self, Sandbox};
use crate::vcs::Workspace;

/// The sandbox for the model's commands and checks, and (unless `--no-fetch`) the one that fetched
/// the dependencies, kept for fetching again when a step changes a manifest.
pub(super) struct Sandboxes {
    pub commands: Box<dyn Sandbox>,
    pub fetch: Option<Box<dyn Sandbox>>,
}

impl Sandboxes {
    pub fn as_agent(&self) -> crate::agent::Sandboxes<'_> {
        crate::agent::Sandboxes {
            commands: self.commands.as_ref(),
            fetch: self.fetch.as_deref(),
        }
    }
}

/// Select the sandboxes (a weaker one than asked for is reported as a warning) and fetch the
/// dependencies. The workspace's borrowed git objects are readable inside, never writable.
pub(super) fn fetch(
    args: &RunArgs,
    workspace: &Workspace,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Sandboxes> {
    let read_only = vec![workspace.borrowed_objects()];
    let (commands, warning) =
        sandbox::select(args.sandbox, read_only.clone(), &args.sandbox_profile)
            .map_err(|why| UsageError(format!("--sandbox: {why}")))?;
    if let Some(warning) = warning {
        reporter.event(&Event::Note {
            message: format!("WARNING: {warning}"),
        });
    }
    let fetch = if args.no_fetch {
        None
    } else {
        Some(fetch_dependencies(args, read_only, workspace, reporter)?)
    };
    Ok(Sandboxes { commands, fetch })
}

/// The dependency-fetch phase: with network, under the `fetch` profile, so the offline phase finds
/// every dependency in the local caches. A failure is reported, not fatal: the check will say more.
fn fetch_dependencies(
    args: &RunArgs,
    read_only: Vec<PathBuf>,
    workspace: &Workspace,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Box<dyn Sandbox>> {
    let root = workspace.root();
    let profile = sandbox::profile::Profile::load("fetch")
        .and_then(|p| p.with_registries(&args.registries))
        .map_err(|why| UsageError(format!("--registry: {why}")))?;
    let (fetch_sandbox, _) =
        sandbox::select_with(args.sandbox, read_only, profile).map_err(UsageError)?;
    let timeout = Duration::from_secs(args.check_timeout);
    let env = command_env(root, workspace.user_repo_path());
    for message in verify::fetch(fetch_sandbox.as_ref(), root, timeout, &env) {
        reporter.event(&Event::Note { message });
    }
    Ok(fetch_sandbox)
}

/// Environment for commands: build outputs go outside the worktree so they are never committed and are
/// reused across runs of the same repository; Python dependencies fetched for `requirements.txt` are
/// importable. Both live under a folder of their own for `user_repo` ([`repo_cache_dir`]), so nothing one
/// repository's commands write is run by another's.
pub(crate) fn command_env(worktree: &Path, user_repo: &Path) -> Vec<(String, String)> {
    let mut env = vec![("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string())];
    let cache = repo_cache_dir(user_repo);
    env.push((
        "CARGO_TARGET_DIR".into(),
        cache.join("cargo-target").display().to_string(),
    ));
    if let Ok(requirements) = std::fs::read(worktree.join("requirements.txt")) {
        let digest = hex_digest(&requirements);
        let dir = cache
            .join("pydeps")
            .join(&digest[..16])
            .display()
            .to_string();
        let path = match std::env::var("PYTHONPATH") {
            Ok(existing) if !existing.is_empty() => format!("{dir}:{existing}"),
            _ => dir.clone(),
        };
        env.push((sandbox::PYDEPS_ENV.into(), dir));
        env.push(("PYTHONPATH".into(), path));
    }
    env
}

/// The cache folder of one repository: `<cache>/repos/<first 16 hex digits of the SHA-256 of its
/// canonical path>`.
pub(crate) fn repo_cache_dir(user_repo: &Path) -> PathBuf {
    let canonical = user_repo
        .canonicalize()
        .unwrap_or_else(|_| user_repo.to_path_buf());
    let digest = hex_digest(canonical.as_os_str().as_encoded_bytes());
    cache_dir().join("repos").join(&digest[..16])
}

fn hex_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
