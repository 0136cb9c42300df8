//! Stored runs: every run has a directory under the state dir (`$XDG_STATE_HOME/agent/runs/<run-id>/`)
//! holding `run.json` (what was asked, where, with which command line) and `events.jsonl` (the
//! trajectory: every event in order, each line written as it happens). `agent log`, `agent replay` and
//! `agent resume` read them.
//!
//! The run directory lives outside the repository so a dry run never writes into it. This module
//! reads and writes those files only; it never runs the agent.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::replay::ScriptedTurn;
use crate::protocol::Event;
use crate::protocol::{PlanStep, ResumePoint, StepRecord};

pub fn runs_dir() -> PathBuf {
    crate::dirs::state_dir().join("runs")
}

/// What a run was asked to do; written once when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// The command line, to run it again the same way (`resume`, `replay`).
    pub argv: Vec<String>,
    /// The directory it was started in (relative paths in `argv` are relative to it).
    pub cwd: PathBuf,
    /// The task text (it may have come from stdin).
    pub task: String,
    /// The user's repository.
    pub repo: PathBuf,
    pub branch: String,
    pub base: String,
    pub dry_run: bool,
    /// The process that ran it (shown when a resume is refused; the lock file decides).
    pub pid: u32,
}

impl RunRecord {
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        // Written whole or not at all: a kill cannot leave half a record.
        let tmp = dir.join("run.json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, dir.join("run.json"))
    }

    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("run.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))
    }
}

/// An exclusive lock on `<run dir>/lock`, held by the process working on a run for as long as it
/// runs (the kernel drops it when the process ends, however it ends). `agent resume` refuses a run
/// whose lock is held: a process id alone can be reused by an unrelated process.
///
/// A POSIX record lock (`fcntl(F_SETLK)`), not `flock` (std's `File::lock`): an flock belongs to
/// the open file, which a child forked to run a command shares until it execs, so a `kill -9` in that
/// instant left the run locked by an orphan. A record lock belongs to the process alone. Its one
/// trap, that closing *any* descriptor of the file drops the process's lock, is why this process
/// keeps its own list of held locks and never opens a lock file it holds.
#[derive(Debug)]
pub struct RunLock {
    file: Option<std::fs::File>,
    key: PathBuf,
}

/// Lock files this process holds (canonical paths); guards every open of a lock file.
static HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn whole_file_lock() -> libc::flock {
    // SAFETY: flock is a plain C struct; all-zero is a valid value (start 0, length 0 = whole file).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

impl RunLock {
    /// Take the lock; `Ok(None)` when a process (this one included) holds it.
    pub fn acquire(dir: &Path) -> std::io::Result<Option<Self>> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(dir)?;
        let key = dir.canonicalize()?.join("lock");
        let mut held = held();
        if held.contains(&key) {
            return Ok(None);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&key)?;
        let lock = whole_file_lock();
        // SAFETY: F_SETLK reads a valid flock struct; the descriptor is open.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } != 0 {
            let error = std::io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
                _ => Err(error),
            };
        }
        held.push(key.clone());
        Ok(Some(Self {
            file: Some(file),
            key,
        }))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Close under the guard: once the key is gone, another thread may take the lock again.
        let mut held = held();
        held.retain(|k| *k != self.key);
        drop(self.file.take());
    }
}

/// The process working on the run in `dir`, if one is.
pub fn lock_holder(dir: &Path) -> Option<u32> {
    use std::os::fd::AsRawFd;
    // Only looks: no folder or lock file is made for a run that never had one.
    let key = dir.canonicalize().ok()?.join("lock");
    let held = held();
    if held.contains(&key) {
        return Some(std::process::id());
    }
    let file = std::fs::File::open(&key).ok()?;
    let mut lock = whole_file_lock();
    // SAFETY: F_GETLK reads and writes a valid flock struct; the descriptor is open.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return None;
    }
    (lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid as u32)
}

/// The directory of run `id`: an exact id, a unique prefix, or `last` (the newest run).
pub fn find(id: &str) -> Result<PathBuf, String> {
    let ids = list_ids();
    if ids.is_empty() {
        return Err(format!("no runs are recorded in {}", runs_dir().display()));
    }
    let found: Vec<&String> = if id == "last" {
        ids.last().into_iter().collect()
    } else if ids.iter().any(|i| i == id) {
        ids.iter().filter(|i| *i == id).collect()
    } else {
        ids.iter().filter(|i| i.starts_with(id)).collect()
    };
    match found.as_slice() {
        [one] => Ok(runs_dir().join(one)),
        [] => Err(format!(
            "no run {id:?} in {}; `agent log` lists the runs",
            runs_dir().display()
        )),
        many => Err(format!(
            "{id:?} matches {} runs ({} ...); give more of the id",
            many.len(),
            many[0]
        )),
    }
}

/// Run ids, oldest first.
pub fn list_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(runs_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("events.jsonl").is_file() || e.path().join("run.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Ids start with the start time in seconds, then microseconds: sorting by the numbers is by age.
    ids.sort_by_key(|id| {
        let mut parts = id.split('-').map(|p| p.parse::<u64>().unwrap_or(u64::MAX));
        (parts.next(), parts.next(), id.clone())
    });
    ids
}

/// The events of a run, in order. A last line torn by a kill is skipped; any other damage is an error.
pub fn read_events(dir: &Path) -> Result<Vec<Event>, String> {
    let path = dir.join("events.jsonl");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Event>(line) {
            Ok(event) => events.push(event),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => return Err(format!("{} line {}: {e}", path.display(), i + 1)),
        }
    }
    Ok(events)
}

/// The model turns of a recorded run, as a replay script. Turns of an attempt that was interrupted and
/// redone after `agent resume` are dropped, so the script is what the finished trajectory used.
pub fn replay_turns(events: &[Event]) -> Vec<ScriptedTurn> {
    let mut turns = Vec::new();
    for event in events {
        match event {
            Event::ModelTurn {
                content,
                tool_calls,
                ..
            } => turns.push(ScriptedTurn {
                content: content.clone(),
                tool_calls: tool_calls.clone(),
                abort: false,
            }),
            Event::RunResumed { turns: kept, .. } => turns.truncate(*kept),
            _ => {}
        }
    }
    turns
}

/// What the commit trailers of an accepted step say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTrailers {
    pub step: usize,
    pub of: usize,
    pub run_id: String,
    pub turns: usize,
}

pub fn step_trailers(message: &str) -> Option<StepTrailers> {
    let value = |key: &str| {
        message
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let (step, of) = value("Agent-Step:")?
        .split_once('/')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))?;
    Some(StepTrailers {
        step,
        of,
        run_id: value("Agent-Run:")?,
        turns: value("Agent-Turns:")?.parse().ok()?,
    })
}

/// Where to continue a run whose branch's last commit is step `tip` (None: no step committed yet):
/// the accepted steps up to it (from the log, or from the commit when the log missed it), and the
/// rest of the newest plan that covers the next step.
pub fn resume_point(events: &[Event], tip: Option<(&StepTrailers, &str)>) -> ResumePoint {
    let Some((trailers, commit)) = tip else {
        return ResumePoint::default();
    };
    let mut done: Vec<StepRecord> = Vec::new();
    for event in events {
        if let Event::StepAccepted { record, .. } = event {
            if record.step <= trailers.step {
                done.retain(|r| r.step != record.step);
                done.push(record.clone());
            }
        }
    }
    done.sort_by_key(|r| r.step);
    if !done.iter().any(|r| r.step == trailers.step) {
        done.push(StepRecord {
            step: trailers.step,
            title: format!("step {}", trailers.step),
            summary: String::new(),
            commit: Some(commit.to_string()),
            check: "verified before the interruption".into(),
        });
    }
    let next = trailers.step + 1;
    let remaining: Vec<PlanStep> = events
        .iter()
        .rev()
        .find_map(|event| match event {
            Event::PlanMade {
                first_step, steps, ..
            } if *first_step <= next => {
                Some(steps.iter().skip(next - first_step).cloned().collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    ResumePoint {
        done,
        remaining,
        turns: trailers.turns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forked child, killed and reaped when dropped (also when an assertion fails first).
    struct Forked(libc::pid_t);

    impl Drop for Forked {
        fn drop(&mut self) {
            // SAFETY: `self.0` is this process's own child.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), 0);
            }
        }
    }

    /// Forks a child that runs `child` (async-signal-safe calls only) and then waits to be killed.
    fn fork_then_pause(child: impl FnOnce()) -> Forked {
        // SAFETY: the child makes only async-signal-safe calls (fcntl, write, pause).
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                child();
                loop {
                    // SAFETY: pause(2) has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            pid => Forked(pid),
        }
    }

    #[test]
    fn a_run_is_running_while_its_lock_is_held_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lock_holder(dir.path()), None, "no lock yet");
        let lock = RunLock::acquire(dir.path()).unwrap().expect("free");
        assert_eq!(lock_holder(dir.path()), Some(std::process::id()));
        assert!(RunLock::acquire(dir.path()).unwrap().is_none());
        assert_eq!(
            lock_holder(dir.path()),
            Some(std::process::id()),
            "a refused second take in the same process leaves the first one held"
        );
        drop(lock);
        assert_eq!(
            lock_holder(dir.path()),
            None,
            "released when its holder goes"
        );
    }

    #[test]
    fn a_lock_held_by_another_process_is_seen_and_goes_with_it() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("lock")).unwrap();
        let (fd, lock) = (file.as_raw_fd(), whole_file_lock());
        let mut pipe = [0; 2];
        // SAFETY: pipe(2) fills two descriptors.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        let holder = fork_then_pause(|| {
            // SAFETY: fcntl and write on open descriptors, with a valid struct and buffer.
            unsafe {
                libc::fcntl(fd, libc::F_SETLK, &lock);
                libc::write(pipe[1], b"x".as_ptr().cast(), 1);
            }
        });
        let mut byte = [0u8];
        // SAFETY: read(2) into a one-byte buffer.
        assert_eq!(
            unsafe { libc::read(pipe[0], byte.as_mut_ptr().cast(), 1) },
            1
        );
        assert_eq!(lock_holder(dir.path()), Some(holder.0 as u32));
        assert!(RunLock::acquire(dir.path()).unwrap().is_none());
        drop(holder);
        assert_eq!(lock_holder(dir.path()), None);
        assert!(RunLock::acquire(dir.path()).unwrap().is_some());
    }

    #[test]
    fn a_child_forked_while_the_lock_is_held_does_not_keep_it() {
        // The child shares the lock file's descriptor, as a child forked to exec a command does in
        // the instant before its exec; it must not keep the run locked once the holder is gone.
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap().expect("free");
        let child = fork_then_pause(|| {});
        drop(lock);
        let holder = lock_holder(dir.path());
        let retaken = RunLock::acquire(dir.path()).unwrap().is_some();
        drop(child);
        assert_eq!(holder, None, "the forked child kept the run locked");
        assert!(retaken);
    }

    #[test]
    fn trailers_round_trip_from_a_commit_message() {
        let message = "Add parse\n\nintent\n\nCheck: `x` passed\n\nAgent-Step: 2/3\nAgent-Run: 17-1-2\nAgent-Turns: 9\n";
        assert_eq!(
            step_trailers(message),
            Some(StepTrailers {
                step: 2,
                of: 3,
                run_id: "17-1-2".into(),
                turns: 9
            })
        );
        assert_eq!(step_trailers("a normal commit\n"), None);
    }

    #[test]
    fn resume_continues_with_the_newest_plan_covering_the_next_step() {
        let step = |t: &str| PlanStep {
            title: t.into(),
            intent: String::new(),
            files: vec![],
            check: String::new(),
        };
        let record = |n: usize| StepRecord {
            step: n,
            title: format!("s{n}"),
            summary: "ok".into(),
            commit: Some("c".into()),
            check: "passed".into(),
        };
        let events = vec![
            Event::PlanMade {
                revision: 1,
                first_step: 1,
                steps: vec![step("a"), step("b"), step("c")],
                reason: None,
            },
            Event::StepAccepted {
                record: record(1),
                of: 3,
            },
            Event::PlanMade {
                revision: 2,
                first_step: 2,
                steps: vec![step("b2"), step("c2")],
                reason: Some("b failed".into()),
            },
            Event::StepAccepted {
                record: record(2),
                of: 3,
            },
        ];
        let tip = StepTrailers {
            step: 2,
            of: 3,
            run_id: "r".into(),
            turns: 7,
        };
        let point = resume_point(&events, Some((&tip, "abc")));
        assert_eq!(point.done.len(), 2);
        assert_eq!(point.remaining, vec![step("c2")]);
        assert_eq!(point.turns, 7);
        // Killed after the commit but before its event: the commit stands in for the record.
        let point = resume_point(&events[..3], Some((&tip, "abc")));
        assert_eq!(point.done.len(), 2);
        assert_eq!(point.done[1].commit.as_deref(), Some("abc"));
        assert!(resume_point(&events, None).remaining.is_empty());
    }
}
