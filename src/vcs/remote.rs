//! Remotes, for CI mode: make the local task branch match the remote's (fast-forward only, and only a
//! branch whose commits the agent made), and push it — never force, never the default branch, never
//! a branch outside `agent/`. Credentials come from the environment: `GITHUB_TOKEN` (or
//! `AGENT_GIT_TOKEN`) for HTTPS, the SSH agent for SSH.

use std::cell::RefCell;
use std::path::Path;

use git2::{Cred, CredentialType, Direction, Oid, PushOptions, RemoteCallbacks, Repository};

use super::{Context, VcsError};

/// What the remote has for the task branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBranch {
    /// The remote's default branch (its HEAD), when it says.
    pub default_branch: Option<String>,
    /// The task branch's commit on the remote, if it exists there.
    pub tip: Option<Oid>,
}

fn refused(message: String) -> VcsError {
    VcsError::Refused(message)
}

fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    // libgit2 asks again after every rejected credential; offering the same one again would loop
    // forever. Each kind is offered once: a second request means it was refused.
    let mut offered = CredentialType::empty();
    callbacks.credentials(move |url, username, allowed| {
        let fresh = allowed - offered;
        if allowed.intersects(offered) && fresh.is_empty() {
            return Err(git2::Error::from_str(&format!(
                "{url} refused the credentials (AGENT_GIT_TOKEN / GITHUB_TOKEN, or the ssh agent's keys); check that the token is valid and may push to this repository"
            )));
        }
        let allowed = fresh;
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            offered |= CredentialType::USER_PASS_PLAINTEXT;
            let token = std::env::var("AGENT_GIT_TOKEN")
                .or_else(|_| std::env::var("GITHUB_TOKEN"))
                .unwrap_or_default();
            if !token.is_empty() {
                return Cred::userpass_plaintext("x-access-token", &token);
            }
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            offered |= CredentialType::SSH_KEY;
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        offered |= CredentialType::DEFAULT;
        Cred::default()
    });
    callbacks
}

/// A configured remote by name, or an anonymous one for a URL.
fn open_remote<'r>(repo: &'r Repository, remote: &str) -> Result<git2::Remote<'r>, VcsError> {
    repo.find_remote(remote)
        .or_else(|_| repo.remote_anonymous(remote))
        .ctx(|| format!("opening the remote {remote}"))
}

fn check_name(branch: &str) -> Result<(), VcsError> {
    if !branch.starts_with("agent/") {
        return Err(refused(format!(
            "{branch} is not an agent/ branch; the agent only pushes branches it creates"
        )));
    }
    Ok(())
}

/// Look up `branch` on `remote` (a remote name or URL) and bring it into the user's repository: the
/// local `refs/heads/<branch>` is created or fast-forwarded to the remote's tip. Refuses the default
/// branch, a remote tip the agent did not make, and a local branch that diverged.
pub fn prepare_branch(
    repo_dir: &Path,
    remote: &str,
    branch: &str,
) -> Result<RemoteBranch, VcsError> {
    check_name(branch)?;
    let repo = Repository::discover(repo_dir).map_err(|_| VcsError::NotARepo(repo_dir.into()))?;
    let mut remote_handle = open_remote(&repo, remote)?;
    let refname = format!("refs/heads/{branch}");
    let (default_branch, tip) = {
        let connection = remote_handle
            .connect_auth(Direction::Fetch, Some(callbacks()), None)
            .ctx(|| format!("connecting to {remote}"))?;
        let default_branch = connection.default_branch().ok().and_then(|b| {
            b.as_str()
                .map(|s| s.trim_start_matches("refs/heads/").to_string())
        });
        let tip = connection
            .list()
            .ctx(|| format!("listing the branches of {remote}"))?
            .iter()
            .find(|head| head.name() == refname)
            .map(|head| head.oid());
        (default_branch, tip)
    };
    if default_branch.as_deref() == Some(branch) {
        return Err(refused(format!(
            "{branch} is the default branch of {remote}"
        )));
    }
    if let Some(tip) = tip {
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(callbacks());
        remote_handle
            .fetch(
                &[format!("{refname}:refs/agent-fetch/{branch}")],
                Some(&mut options),
                None,
            )
            .ctx(|| format!("fetching {branch} from {remote}"))?;
        let message = repo
            .find_commit(tip)
            .ctx(|| format!("reading {tip}"))?
            .message()
            .unwrap_or_default()
            .to_string();
        if !message.contains("\nAgent-Run: ") {
            return Err(refused(format!(
                "{branch} on {remote} ends in commit {tip}, which the agent did not make; it will not add to \
                 or overwrite someone else's work"
            )));
        }
        match repo.refname_to_id(&refname) {
            Err(_) => {
                repo.reference(&refname, tip, false, "agent: task branch from the remote")
                    .ctx(|| format!("creating {refname}"))?;
            }
            Ok(local) if local == tip => {}
            Ok(local) if repo.graph_descendant_of(tip, local).unwrap_or(false) => {
                repo.reference_matching(&refname, tip, true, local, "agent: fast-forward to the remote")
                    .ctx(|| format!("fast-forwarding {refname}"))?;
            }
            Ok(local) if repo.graph_descendant_of(local, tip).unwrap_or(false) => {}
            Ok(local) => {
                return Err(refused(format!(
                    "the local {branch} ({local}) and the one on {remote} ({tip}) have diverged; resolve it by hand"
                )))
            }
        }
        let _ = repo
            .find_reference(&format!("refs/agent-fetch/{branch}"))
            .map(|mut r| r.delete());
    }
    Ok(RemoteBranch {
        default_branch,
        tip,
    })
}

/// Push the local `branch` to `remote`, fast-forward only.
pub fn push_branch(repo_dir: &Path, remote: &str, branch: &str) -> Result<(), VcsError> {
    check_name(branch)?;
    let repo = Repository::discover(repo_dir).map_err(|_| VcsError::NotARepo(repo_dir.into()))?;
    let mut remote_handle = open_remote(&repo, remote)?;
    let rejected = RefCell::new(None);
    let mut callbacks = callbacks();
    callbacks.push_update_reference(|name, status| {
        if let Some(status) = status {
            *rejected.borrow_mut() = Some(format!("{name}: {status}"));
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    // No leading `+`: a push that is not a fast-forward is refused by git, never forced.
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    remote_handle
        .push(&[refspec.as_str()], Some(&mut options))
        .ctx(|| format!("pushing {branch} to {remote}"))?;
    drop(options);
    if let Some(why) = rejected.into_inner() {
        return Err(refused(format!(
            "{remote} rejected the push of {branch}: {why}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn https_and_ssh_remotes_are_supported() {
        // CI checkouts push over HTTPS with a token; developers often over SSH.
        let version = git2::Version::get();
        assert!(version.https(), "libgit2 was built without HTTPS");
        assert!(version.ssh(), "libgit2 was built without SSH");
    }
}
