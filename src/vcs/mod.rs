//! Git for the agent (git2): the task's isolated workspace, one commit per accepted step, publishing the
//! task branch into the user's repository, and diffs.
//!
//! The workspace is a scratch repository in a temporary directory that borrows the user's objects through
//! `objects/info/alternates`, checked out at the user's HEAD commit. The agent edits and commits there.
//! [`Workspace::publish`] copies the new objects into the user's repository and moves only the task
//! branch `agent/<slug>`, with compare-and-swap. This module must never touch the user's HEAD, index,
//! working tree, config or any other ref; a dry run never writes to the user's repository at all.

mod patch_text;
mod remote;
mod slug;

use std::path::{Path, PathBuf};

use git2::{IndexAddOption, ObjectType, Oid, Repository, Signature, Tree};

pub use patch_text::patch_text;
pub use remote::{prepare_branch, push_branch, RemoteBranch};
pub use slug::slugify;

/// Files bigger than this are never committed by the agent (and not loaded whole to show a diff).
pub const MAX_COMMITTED_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Untracked paths the agent never commits: build outputs and caches that checks leave behind.
const ARTIFACT_DIRS: &[&str] = &[
    "target",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".venv",
];

#[derive(Debug, thiserror::Error)]
pub enum VcsError {
    #[error("{0} is not inside a git repository; pass --repo DIR pointing at one (or run `git init` there first)")]
    NotARepo(PathBuf),
    #[error("{0} has no commits yet; commit something first so the agent has a starting point")]
    NoCommits(PathBuf),
    #[error("branch {branch} moved while the agent was working (expected {expected}, found {found}); nothing was overwritten, the agent's commit is {ours}")]
    BranchMoved {
        branch: String,
        expected: String,
        found: String,
        ours: String,
    },
    /// A CI safety rule stopped a push or a branch update.
    #[error("refused: {0}")]
    Refused(String),
    #[error("git: {context}: {source}")]
    Git {
        context: String,
        source: git2::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, VcsError>;
}
impl<T> Context<T> for Result<T, git2::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, VcsError> {
        self.map_err(|source| VcsError::Git {
            context: context(),
            source,
        })
    }
}
impl<T> Context<T> for Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, VcsError> {
        self.map_err(|source| VcsError::Io {
            context: context(),
            source,
        })
    }
}

/// One file changed between two snapshots; contents are `None` where the file does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct FileChange {
    pub path: String,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
}

/// The task's isolated workspace.
pub struct Workspace {
    user_repo: Repository,
    scratch: Repository,
    // Dropped last: removing the directory ends the workspace.
    dir: tempfile::TempDir,
    /// `agent/<slug>`, unique in the user's repository when the workspace was opened.
    pub branch: String,
    /// The user's HEAD commit that the work starts from.
    pub base: Oid,
    /// The last commit published to the user's branch, if any.
    published: Option<Oid>,
    signature: Signature<'static>,
    /// What snapshots left out or removed since the caller last asked ([`Workspace::take_notes`]).
    notes: Vec<String>,
}

/// The user's git identity (`user.name`, `user.email` from the global config), which the agent's
/// commits carry; None when it is not set (commits then say `agent <agent@localhost>`).
pub fn user_identity() -> Option<(String, String)> {
    let config = git2::Config::open_default().ok()?;
    let name = config.get_string("user.name").ok()?;
    let email = config.get_string("user.email").ok()?;
    Some((name, email))
}

/// The top-level folder of the repository `dir` is in (None outside a repository, or in a bare one).
pub fn toplevel(dir: &Path) -> Option<PathBuf> {
    let repo = Repository::discover(dir).ok()?;
    repo.workdir().map(Path::to_path_buf)
}

impl Workspace {
    /// Open a workspace for `task_title` on a fresh branch name, starting at the user's HEAD commit.
    pub fn open(repo_dir: &Path, task_title: &str) -> Result<Self, VcsError> {
        Self::open_at(repo_dir, task_title, None)
    }

    /// Like [`Workspace::open`], starting at `base` instead of HEAD (to replay a recorded run).
    pub fn open_at(repo_dir: &Path, task_title: &str, base: Option<Oid>) -> Result<Self, VcsError> {
        let user_repo = Repository::discover(repo_dir)
            .map_err(|_| VcsError::NotARepo(repo_dir.to_path_buf()))?;
        let head = head_commit_of(&user_repo, repo_dir)?;
        let base = base.unwrap_or(head);
        let branch = unique_branch(&user_repo, &slugify(task_title));
        Self::scratch(user_repo, &branch["refs/heads/".len()..], base, base, None)
    }

    /// Work on `branch`, a task branch the agent made earlier (for the same issue): new steps go on
    /// top of its tip, which is also the base the run's changes are measured from. A branch that does
    /// not exist yet is created from HEAD under exactly this name.
    pub fn continue_branch(repo_dir: &Path, branch: &str) -> Result<Self, VcsError> {
        let user_repo = Repository::discover(repo_dir)
            .map_err(|_| VcsError::NotARepo(repo_dir.to_path_buf()))?;
        match user_repo.refname_to_id(&format!("refs/heads/{branch}")) {
            Ok(tip) => {
                let made_by_agent = user_repo
                    .find_commit(tip)
                    .ok()
                    .and_then(|c| c.message().map(|m| m.contains("\nAgent-Run: ")))
                    .unwrap_or(false);
                if !made_by_agent {
                    return Err(VcsError::Refused(format!(
                        "{branch} exists and its last commit {tip} was not made by the agent; it will not add to \
                         someone else's branch"
                    )));
                }
                Self::scratch(user_repo, branch, tip, tip, Some(tip))
            }
            Err(_) => {
                let head = head_commit_of(&user_repo, repo_dir)?;
                Self::scratch(user_repo, branch, head, head, None)
            }
        }
    }

    /// Reopen the task branch `branch` of an interrupted run that started at `base`: the workspace
    /// continues from the branch's last (published, verified) commit, or from `base` when the run
    /// had not published anything yet.
    pub fn resume(repo_dir: &Path, branch: &str, base: Oid) -> Result<Self, VcsError> {
        let user_repo = Repository::discover(repo_dir)
            .map_err(|_| VcsError::NotARepo(repo_dir.to_path_buf()))?;
        // No branch yet: the run was stopped before its first accepted step.
        let tip = match user_repo.refname_to_id(&format!("refs/heads/{branch}")) {
            Ok(tip) => tip,
            Err(e) if e.code() == git2::ErrorCode::NotFound => base,
            Err(e) => return Err(e).ctx(|| format!("finding the task branch {branch}")),
        };
        let published = (tip != base).then_some(tip);
        Self::scratch(user_repo, branch, base, tip, published)
    }

    /// A scratch repository borrowing `user_repo`'s objects, with `branch` checked out at `start`.
    fn scratch(
        user_repo: Repository,
        branch: &str,
        base: Oid,
        start: Oid,
        published: Option<Oid>,
    ) -> Result<Self, VcsError> {
        let signature = user_repo
            .signature()
            .or_else(|_| Signature::now("agent", "agent@localhost"))
            .ctx(|| "making a commit signature".into())?;
        let dir = tempfile::Builder::new()
            .prefix("agent-work-")
            .tempdir()
            .ctx(|| "creating the workspace directory".into())?;
        let scratch = Repository::init(dir.path()).ctx(|| {
            format!(
                "initialising a scratch repository in {}",
                dir.path().display()
            )
        })?;
        let objects = user_repo.commondir().join("objects");
        let alternates = scratch.path().join("objects/info/alternates");
        std::fs::write(&alternates, format!("{}\n", objects.display()))
            .ctx(|| format!("writing {}", alternates.display()))?;
        // Reopen so libgit2 reads the alternates file.
        let scratch =
            Repository::open(dir.path()).ctx(|| "reopening the scratch repository".into())?;
        harden_config(&scratch)?;
        {
            let commit = scratch
                .find_commit(start)
                .ctx(|| format!("reading commit {start}"))?;
            scratch
                .branch(branch, &commit, false)
                .ctx(|| format!("creating {branch}"))?;
            scratch
                .set_head(&format!("refs/heads/{branch}"))
                .ctx(|| "pointing the workspace HEAD at the task branch".into())?;
            scratch
                // Filters would consult attribute files of the hostile tree while it is written.
                .checkout_head(Some(
                    git2::build::CheckoutBuilder::new()
                        .force()
                        .disable_filters(true),
                ))
                .ctx(|| format!("checking out {start} into {}", dir.path().display()))?;
        }
        // A hostile repository can check out links where walkers read ignore files implicitly.
        let scrubbed =
            crate::hostfs::scrub(dir.path()).ctx(|| format!("checking the files of {start}"))?;
        let mut notes = Vec::new();
        notes.extend(
            scrubbed
                .iter()
                .map(|r| format!("removed {} from the worktree: {}", r.path, r.why)),
        );
        Ok(Self {
            user_repo,
            scratch,
            dir,
            branch: branch.to_string(),
            base,
            published,
            signature,
            notes,
        })
    }

    /// Keep the worktree on disk after the workspace ends (when its changes could not be saved
    /// otherwise); returns where it is.
    pub fn keep(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_path_buf()
    }

    /// The directory the agent works in.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The user's repository's work directory (or git dir when bare), for messages.
    pub fn user_repo_path(&self) -> &Path {
        self.user_repo
            .workdir()
            .unwrap_or_else(|| self.user_repo.path())
            // `components()` drops the trailing slash libgit2 puts on directory paths.
            .components()
            .as_path()
    }

    /// The user's object store, which the workspace reads through alternates (commands in a sandbox
    /// need it visible to run git).
    pub fn borrowed_objects(&self) -> PathBuf {
        self.user_repo.commondir().join("objects")
    }

    /// Does the worktree differ from the last commit?
    pub fn is_dirty(&mut self) -> Result<bool, VcsError> {
        let tree = self.snapshot_tree()?;
        Ok(tree != self.head_commit()?.tree_id())
    }

    /// The worktree as a tree id (build artifacts excluded): equal ids, equal contents.
    pub fn snapshot(&mut self) -> Result<Oid, VcsError> {
        self.snapshot_tree()
    }

    /// The tree of the task branch's last commit.
    pub fn head_tree(&self) -> Result<Oid, VcsError> {
        Ok(self.head_commit()?.tree_id())
    }

    /// The task branch's last commit.
    pub fn head(&self) -> Result<Oid, VcsError> {
        Ok(self.head_commit()?.id())
    }

    /// Reset the worktree to the last commit: uncommitted changes and new files are removed (build
    /// artifacts stay). Returns the commit it went back to.
    ///
    /// A plain `reset --hard` restores tracked paths by name, so a tracked directory the model replaced
    /// with a link (to `$HOME`, say) would be written through. So first everything that is not what
    /// the commit has at its path is removed without following links (links, special files, files
    /// with other hard links, untracked files and directories); only then are the commit's files
    /// written, into real directories of the worktree.
    pub fn roll_back(&mut self) -> Result<Oid, VcsError> {
        let head = self.head_commit()?;
        let id = head.id();
        let tree = head
            .tree()
            .ctx(|| "reading the last accepted tree".into())?;
        let root =
            cap_std::fs::Dir::open_ambient_dir(self.dir.path(), cap_std::ambient_authority())
                .ctx(|| format!("opening {}", self.dir.path().display()))?;
        clear_for_checkout(&self.scratch, &root, Path::new(""), Some(&tree))
            .ctx(|| "clearing the worktree for the roll-back".into())?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force().disable_filters(true);
        self.scratch
            .reset(head.as_object(), git2::ResetType::Hard, Some(&mut checkout))
            .ctx(|| "resetting the worktree to the last accepted commit".into())?;
        Ok(id)
    }

    /// Notes on what snapshots removed from the worktree or left out of commits, since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Commit everything in the worktree (build artifacts excluded) as one step. Returns `None` when
    /// nothing changed.
    pub fn commit_all(&mut self, message: &str) -> Result<Option<Oid>, VcsError> {
        let tree_id = self.snapshot_tree()?;
        let head = self.head_commit()?;
        if tree_id == head.tree_id() {
            return Ok(None);
        }
        let tree = self
            .scratch
            .find_tree(tree_id)
            .ctx(|| "reading the snapshot tree".into())?;
        let oid = self
            .scratch
            .commit(
                Some("HEAD"),
                &self.signature,
                &self.signature,
                message,
                &tree,
                &[&head],
            )
            .ctx(|| "committing the step".into())?;
        Ok(Some(oid))
    }

    /// Copy the task branch's new objects into the user's repository and move `refs/heads/<branch>` there.
    /// Fails without writing the ref if someone else moved the branch meanwhile.
    pub fn publish(&mut self) -> Result<Option<Oid>, VcsError> {
        let head = self.head_commit()?.id();
        if head == self.base || Some(head) == self.published {
            return Ok(self.published);
        }
        let user_odb = self
            .user_repo
            .odb()
            .ctx(|| "opening the repository's object database".into())?;
        let scratch_odb = self
            .scratch
            .odb()
            .ctx(|| "opening the workspace object database".into())?;
        let mut walk = self
            .scratch
            .revwalk()
            .ctx(|| "walking the task branch".into())?;
        walk.push(head).ctx(|| "walking the task branch".into())?;
        walk.hide(self.published.unwrap_or(self.base))
            .ctx(|| "walking the task branch".into())?;
        for commit in walk {
            let commit = commit.ctx(|| "walking the task branch".into())?;
            let tree = self
                .scratch
                .find_commit(commit)
                .ctx(|| format!("reading {commit}"))?
                .tree_id();
            copy_tree(&self.scratch, &scratch_odb, &user_odb, tree)?;
            copy_object(&scratch_odb, &user_odb, commit)?;
        }
        let refname = format!("refs/heads/{}", self.branch);
        let message = format!("agent: publish task branch at {head}");
        let current = self.user_repo.refname_to_id(&refname).ok();
        match (current, self.published) {
            (None, None) => {
                self.user_repo
                    .reference(&refname, head, false, &message)
                    .ctx(|| format!("creating {refname}"))?;
            }
            (Some(found), Some(expected)) if found == expected => {
                self.user_repo
                    .reference_matching(&refname, head, true, expected, &message)
                    .ctx(|| format!("moving {refname}"))?;
            }
            (found, expected) => {
                return Err(VcsError::BranchMoved {
                    branch: self.branch.clone(),
                    expected: expected.map_or("no branch".into(), |o| o.to_string()),
                    found: found.map_or("no branch".into(), |o| o.to_string()),
                    ours: head.to_string(),
                })
            }
        }
        self.published = Some(head);
        Ok(self.published)
    }

    /// Files changed from the base commit to the task branch's last commit.
    pub fn committed_changes(&self) -> Result<Vec<FileChange>, VcsError> {
        let base = self
            .scratch
            .find_commit(self.base)
            .ctx(|| "reading the base commit".into())?
            .tree()
            .ctx(|| "reading the base tree".into())?;
        let head = self
            .head_commit()?
            .tree()
            .ctx(|| "reading the head tree".into())?;
        self.changes(&base, &head)
    }

    /// Files changed in the worktree since the last commit (work that no check has accepted yet).
    pub fn uncommitted_changes(&mut self) -> Result<Vec<FileChange>, VcsError> {
        let snapshot = self.snapshot_tree()?;
        let snapshot = self
            .scratch
            .find_tree(snapshot)
            .ctx(|| "reading the snapshot tree".into())?;
        let head = self
            .head_commit()?
            .tree()
            .ctx(|| "reading the head tree".into())?;
        self.changes(&head, &snapshot)
    }

    /// Commits on the task branch since the base, oldest first: (id, tree, message).
    pub fn step_commits(&self) -> Result<Vec<(Oid, Oid, String)>, VcsError> {
        let mut walk = self
            .scratch
            .revwalk()
            .ctx(|| "walking the task branch".into())?;
        walk.push(self.head_commit()?.id())
            .ctx(|| "walking the task branch".into())?;
        walk.hide(self.base)
            .ctx(|| "walking the task branch".into())?;
        let mut commits = Vec::new();
        for oid in walk {
            let oid = oid.ctx(|| "walking the task branch".into())?;
            let commit = self
                .scratch
                .find_commit(oid)
                .ctx(|| format!("reading {oid}"))?;
            commits.push((
                oid,
                commit.tree_id(),
                commit.message().unwrap_or_default().to_string(),
            ));
        }
        commits.reverse();
        Ok(commits)
    }

    fn head_commit(&self) -> Result<git2::Commit<'_>, VcsError> {
        self.scratch
            .head()
            .and_then(|h| h.peel_to_commit())
            .ctx(|| "reading the workspace HEAD".into())
    }

    /// Stage the whole worktree (minus artifacts) into the workspace index and write it as a tree.
    /// First the worktree is scrubbed of what would block or mislead git (FIFOs, nested `.git`, linked
    /// or giant ignore files: [`crate::hostfs::scrub`]); files over [`MAX_COMMITTED_FILE_BYTES`] are
    /// left out, with a note.
    fn snapshot_tree(&mut self) -> Result<Oid, VcsError> {
        let root = self.dir.path().to_path_buf();
        let scrubbed =
            crate::hostfs::scrub(&root).ctx(|| "checking the worktree's files".into())?;
        for removed in scrubbed {
            self.notes.push(format!(
                "removed {} from the worktree: {}",
                removed.path, removed.why
            ));
        }
        let mut index = self
            .scratch
            .index()
            .ctx(|| "opening the workspace index".into())?;
        let mut too_big: Vec<String> = Vec::new();
        let mut vanished: Vec<PathBuf> = Vec::new();
        // 0 stages the path, 1 skips it (libgit2's pathspec callback convention).
        let mut select = |path: &Path, vanished: Option<&mut Vec<PathBuf>>| -> i32 {
            let untracked_artifact = path
                .components()
                .any(|c| ARTIFACT_DIRS.iter().any(|a| c.as_os_str() == *a));
            if untracked_artifact {
                return 1;
            }
            match std::fs::symlink_metadata(root.join(path)) {
                Ok(meta) if meta.is_file() && meta.len() > MAX_COMMITTED_FILE_BYTES => {
                    too_big.push(format!(
                        "{} ({} bytes)",
                        crate::hostfs::quote_path(&path.to_string_lossy()),
                        meta.len()
                    ));
                    1
                }
                Ok(meta) if meta.is_file() || meta.is_symlink() || meta.is_dir() => 0,
                Ok(_) => {
                    // Appeared after the scrub: never opened, and not kept in the index either.
                    if let Some(v) = vanished {
                        v.push(path.to_path_buf());
                    }
                    1
                }
                Err(_) => 0,
            }
        };
        index
            .add_all(
                ["*"],
                IndexAddOption::DEFAULT,
                Some(&mut |path: &Path, _spec: &[u8]| select(path, None)),
            )
            .ctx(|| "staging the worktree".into())?;
        // add_all does not notice deletions; update_all removes entries whose files are gone.
        index
            .update_all(
                ["*"],
                Some(&mut |path: &Path, _spec: &[u8]| select(path, Some(&mut vanished))),
            )
            .ctx(|| "staging deletions".into())?;
        for path in &vanished {
            let _ = index.remove_path(path);
        }
        too_big.sort();
        too_big.dedup();
        for file in too_big {
            self.notes.push(format!(
                "not committed: {file} is over the {MAX_COMMITTED_FILE_BYTES}-byte limit for files the agent commits"
            ));
        }
        index.write().ctx(|| "writing the workspace index".into())?;
        index
            .write_tree()
            .ctx(|| "writing the snapshot tree".into())
    }

    fn changes(&self, old: &Tree<'_>, new: &Tree<'_>) -> Result<Vec<FileChange>, VcsError> {
        tree_changes(&self.scratch, old, new)
    }
}

/// Most bytes of an abandoned worktree's changes kept as a patch.
const MAX_ABANDONED_PATCH: usize = 16 << 20;

/// What became of an abandoned worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaimed {
    /// It held no change since its last commit, and is removed.
    Clean,
    /// Its changes were handed to `save`, and it is removed.
    Saved,
}

/// A worktree an interrupted run left behind (`kill -9`, a power cut, a crash): its changes since
/// its last commit are handed to `save` as patch text, then the folder is removed (it is kept when
/// `save` fails). Only a folder this module made is touched: directly in the temporary directory,
/// named `agent-work-…`, a real directory (not a link), holding a repository whose objects are
/// borrowed from `user_repo`'s. `Ok(None)` for anything else, or when the folder is gone already.
pub fn reclaim_abandoned(
    path: &Path,
    user_repo: &Path,
    save: impl FnOnce(&str) -> std::io::Result<()>,
) -> Result<Option<Reclaimed>, VcsError> {
    let ours = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        && path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("agent-work-"))
        && path.parent().and_then(|p| p.canonicalize().ok())
            == std::env::temp_dir().canonicalize().ok();
    if !ours {
        return Ok(None);
    }
    let Ok(user) = Repository::discover(user_repo) else {
        return Ok(None);
    };
    let borrowed = user.commondir().join("objects");
    let alternates =
        std::fs::read_to_string(path.join(".git/objects/info/alternates")).unwrap_or_default();
    if alternates.trim_end() != borrowed.display().to_string() {
        return Ok(None);
    }
    let patch = {
        let scratch = Repository::open(path).ctx(|| format!("opening {}", path.display()))?;
        let head = scratch
            .head()
            .and_then(|h| h.peel_to_tree())
            .ctx(|| format!("reading the last commit of {}", path.display()))?;
        let mut options = git2::DiffOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
        let diff = scratch
            .diff_tree_to_workdir(Some(&head), Some(&mut options))
            .ctx(|| format!("comparing {} with its last commit", path.display()))?;
        let mut text = Vec::new();
        // A print callback returning false stops the walk: the patch is capped, not the memory.
        let _ = diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                text.push(line.origin() as u8);
            }
            text.extend_from_slice(line.content());
            text.len() < MAX_ABANDONED_PATCH
        });
        String::from_utf8_lossy(&text).into_owned()
    };
    let reclaimed = if patch.is_empty() {
        Reclaimed::Clean
    } else {
        save(&patch).ctx(|| format!("saving the changes of {}", path.display()))?;
        Reclaimed::Saved
    };
    std::fs::remove_dir_all(path).ctx(|| format!("removing {}", path.display()))?;
    Ok(Some(reclaimed))
}

/// The changes a commit of the repository at `repo_dir` made to its first parent (to the empty tree
/// for a root commit), e.g. to show a recorded run's commits.
pub fn commit_changes(repo_dir: &Path, commit: &str) -> Result<Vec<FileChange>, VcsError> {
    let repo =
        Repository::discover(repo_dir).map_err(|_| VcsError::NotARepo(repo_dir.to_path_buf()))?;
    let oid = Oid::from_str(commit).ctx(|| format!("{commit} is not a commit id"))?;
    let commit = repo
        .find_commit(oid)
        .ctx(|| format!("commit {oid} is not in {}", repo_dir.display()))?;
    let new = commit.tree().ctx(|| format!("reading the tree of {oid}"))?;
    let old = match commit.parent(0) {
        Ok(parent) => parent
            .tree()
            .ctx(|| format!("reading the parent tree of {oid}"))?,
        Err(_) => {
            let empty = repo
                .treebuilder(None)
                .and_then(|b| b.write())
                .ctx(|| "writing the empty tree".into())?;
            repo.find_tree(empty)
                .ctx(|| "reading the empty tree".into())?
        }
    };
    tree_changes(&repo, &old, &new)
}

/// The files that differ between two trees, with their contents; a huge blob is shown by its size,
/// never loaded whole.
fn tree_changes(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
) -> Result<Vec<FileChange>, VcsError> {
    let diff = repo
        .diff_tree_to_tree(Some(old), Some(new), None)
        .ctx(|| "diffing trees".into())?;
    let odb = repo.odb().ctx(|| "opening the object database".into())?;
    let blob = |oid: Oid| -> Option<Vec<u8>> {
        if oid.is_zero() {
            return None;
        }
        match odb.read_header(oid) {
            Ok((size, _)) if size as u64 > MAX_COMMITTED_FILE_BYTES => {
                Some(format!("[{size} bytes, too large to show; object {oid}]\n").into_bytes())
            }
            _ => repo.find_blob(oid).ok().map(|b| b.content().to_vec()),
        }
    };
    Ok(diff
        .deltas()
        .map(|d| FileChange {
            path: d
                .new_file()
                .path()
                .or(d.old_file().path())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            old: blob(d.old_file().id()),
            new: blob(d.new_file().id()),
        })
        .collect())
}

/// The workspace's own config, written by the agent, turns off everything through which repository
/// content could make git run a program or write elsewhere: hooks, fsmonitor, a pager, filter and
/// and credential helpers. It holds
/// for libgit2 here and for the git CLI that commands in the sandbox run on the worktree (where
/// `.git` is read-only).
fn harden_config(repo: &Repository) -> Result<(), VcsError> {
    let mut config = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .ctx(|| "opening the workspace config".into())?;
    let empty = "/dev/null";
    for (key, value) in [
        ("core.hooksPath", empty),
        ("core.fsmonitor", "false"),
        ("core.pager", "cat"),
        ("core.sshCommand", "false"),
        ("credential.helper", ""),
        ("protocol.allow", "never"),
        ("protocol.file.allow", "never"),
        ("submodule.recurse", "false"),
        ("diff.external", ""),
        ("gc.auto", "0"),
    ] {
        config
            .set_str(key, value)
            .ctx(|| format!("setting {key} in the workspace config"))?;
    }
    for key in ["core.symlinks", "core.protectNTFS", "core.protectHFS"] {
        config
            .set_bool(key, true)
            .ctx(|| format!("setting {key} in the workspace config"))?;
    }
    Ok(())
}

/// Before the tree `tree` is written into `dir` (the worktree at `at`): remove every entry that is not
/// what the tree has at its path, so that checking the tree out writes only into real directories of
/// the worktree and never through a link. Untracked build-artifact directories stay.
fn clear_for_checkout(
    repo: &Repository,
    dir: &cap_std::fs::Dir,
    at: &Path,
    tree: Option<&Tree<'_>>,
) -> std::io::Result<()> {
    use cap_fs_ext::DirExt;
    use cap_std::fs::MetadataExt;
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        if at.as_os_str().is_empty() && name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        let tracked = tree.and_then(|t| name.to_str().and_then(|n| t.get_name(n)));
        let mode = tracked.as_ref().map(|e| e.filemode());
        let keep = match mode {
            // A tracked directory: keep the real directory, and clear inside it.
            Some(0o040000) if kind.is_dir() => {
                let sub_tree = tracked
                    .as_ref()
                    .and_then(|e| e.to_object(repo).ok())
                    .and_then(|o| o.into_tree().ok());
                let sub = dir.open_dir_nofollow(&name)?;
                clear_for_checkout(repo, &sub, &at.join(&name), sub_tree.as_ref())?;
                true
            }
            // A tracked file: a regular file with no other names is rewritten in place by checkout.
            Some(0o100644 | 0o100755) if kind.is_file() => entry.metadata()?.nlink() == 1,
            // A tracked link: checkout makes it again.
            Some(_) => false,
            // Untracked: only real artifact directories stay.
            None => kind.is_dir() && ARTIFACT_DIRS.iter().any(|a| name == *a),
        };
        if !keep {
            if kind.is_dir() {
                dir.remove_dir_all(&name)?;
            } else {
                dir.remove_file_or_symlink(&name)?;
            }
        }
    }
    Ok(())
}

/// The user's HEAD commit, or why there is none.
fn head_commit_of(repo: &Repository, repo_dir: &Path) -> Result<Oid, VcsError> {
    repo.head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id())
        .ok_or_else(|| VcsError::NoCommits(repo_dir.to_path_buf()))
}

fn unique_branch(repo: &Repository, slug: &str) -> String {
    let base = format!("refs/heads/agent/{slug}");
    (1..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|name| repo.find_reference(name).is_err())
        .unwrap_or(base)
}

fn copy_object(from: &git2::Odb<'_>, to: &git2::Odb<'_>, oid: Oid) -> Result<bool, VcsError> {
    if to.exists(oid) {
        return Ok(false);
    }
    let object = from.read(oid).ctx(|| format!("reading object {oid}"))?;
    to.write(object.kind(), object.data())
        .ctx(|| format!("writing object {oid} into the repository"))?;
    Ok(true)
}

/// Copy a tree and everything under it that the target lacks. A tree already present implies its
/// children are present, so unchanged subtrees cost one lookup. libgit2 reads the tree's entries;
/// the objects are copied byte for byte.
fn copy_tree(
    repo: &git2::Repository,
    from: &git2::Odb<'_>,
    to: &git2::Odb<'_>,
    tree: Oid,
) -> Result<(), VcsError> {
    if to.exists(tree) {
        return Ok(());
    }
    let entries = repo
        .find_tree(tree)
        .ctx(|| format!("reading tree {tree}"))?;
    for entry in entries.iter() {
        match entry.kind() {
            Some(ObjectType::Tree) => copy_tree(repo, from, to, entry.id())?,
            Some(ObjectType::Blob) => {
                copy_object(from, to, entry.id())?;
            }
            _ => {} // submodule commits live in other repositories
        }
    }
    copy_object(from, to, tree)?;
    Ok(())
}
