//! `agent eval`: run benchmark tasks through the real `agent run` (one child process per task, so a
//! crash in one task never takes the others down), judge each with its original tests restored, and
//! append the results as JSON lines that a later run with the same `--out` resumes from.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use super::run::command_env;
use super::UsageError;
use crate::cli::EvalArgs;
use crate::eval::{self, Task, TaskResult};
use crate::report::Event;
use crate::sandbox::{self, Choice};

pub fn eval(args: EvalArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut tasks = eval::load(&args.file).map_err(UsageError)?;
    if let Some(pattern) = &args.filter {
        let matcher = globset::Glob::new(pattern)
            .map_err(|e| UsageError(format!("--filter {pattern:?}: {e}")))?
            .compile_matcher();
        tasks.retain(|t| matcher.is_match(&t.id));
    }
    if let Some(limit) = args.limit {
        tasks.truncate(limit);
    }
    if tasks.is_empty() {
        return Err(UsageError(format!("no task in {} matches", args.file.display())).into());
    }
    if let Some(spec) = &args.model {
        crate::model::ModelSpec::parse(Some(spec))?;
    }
    let out = args.out.clone().unwrap_or_else(|| {
        crate::dirs::state_dir()
            .join("evals")
            .join(format!("{}", chrono_like_stamp()))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let results_path = out.join("results.jsonl");
    let mut results = previous_results(&results_path)?;
    let done: Vec<String> = results.iter().map(|r| r.id.clone()).collect();
    let todo: Vec<&Task> = tasks.iter().filter(|t| !done.contains(&t.id)).collect();
    results.retain(|r| tasks.iter().any(|t| t.id == r.id));
    eprintln!(
        "eval of {} task(s) from {} ({} already done in {}), {} at a time",
        tasks.len(),
        args.file.display(),
        tasks.len() - todo.len(),
        out.display(),
        args.jobs
    );

    let bar = progress(todo.len());
    let file = Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&results_path)
            .with_context(|| format!("opening {}", results_path.display()))?,
    );
    let new_results = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(task) = todo.get(i) else { break };
                let result = run_task(&args, task, &out);
                let line = serde_json::to_string(&result).unwrap_or_default();
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
                let mark = if result.solved { "solved" } else { "FAILED" };
                let detail = result
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("{} turns, {}", result.turns, result.judge));
                let line = format!("{mark:<7} {}  ({detail})", result.id);
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
                bar.inc(1);
                if let Ok(mut all) = new_results.lock() {
                    all.push(result);
                }
            });
        }
    });
    bar.finish_and_clear();
    results.extend(new_results.into_inner().unwrap_or_default());
    let summary = eval::summarize(&results, started.elapsed());
    std::fs::write(out.join("summary.txt"), &summary)?;
    print!("{summary}");
    eprintln!("results: {}", results_path.display());
    Ok(if results.iter().all(|r| r.solved) {
        0
    } else {
        1
    })
}

/// One task: materialise, run `agent run` on it, judge.
fn run_task(args: &EvalArgs, task: &Task, out: &Path) -> TaskResult {
    let mut result = TaskResult {
        id: task.id.clone(),
        language: task.language.clone(),
        difficulty: task.difficulty,
        ..TaskResult::default()
    };
    if let Err(e) = run_and_judge(args, task, out, &mut result) {
        result.error = Some(e);
    }
    result
}

fn run_and_judge(
    args: &EvalArgs,
    task: &Task,
    out: &Path,
    result: &mut TaskResult,
) -> Result<(), String> {
    let scratch = tempfile::Builder::new()
        .prefix("agent-eval-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let repo = scratch.path().join("repo");
    std::fs::create_dir(&repo).map_err(|e| e.to_string())?;
    eval::materialise(task, &repo)?;
    let task_file = scratch.path().join("task.md");
    std::fs::write(&task_file, &task.instructions).map_err(|e| e.to_string())?;
    let model = if args.oracle {
        let script = out
            .join("oracle")
            .join(format!("{}.json", safe_name(&task.id)));
        std::fs::create_dir_all(script.parent().unwrap_or(out)).map_err(|e| e.to_string())?;
        let turns = eval::oracle_script(task)?;
        std::fs::write(&script, turns.to_string()).map_err(|e| e.to_string())?;
        Some(format!("replay:{}", script.display()))
    } else {
        args.model.clone()
    };

    // This very binary, even when a rebuild has replaced the file during a long eval (the path then
    // names the new file or nothing; /proc/self/exe still names the running one).
    let proc_exe = Path::new("/proc/self/exe");
    let exe = if proc_exe.exists() {
        proc_exe.to_path_buf()
    } else {
        std::env::current_exe().map_err(|e| e.to_string())?
    };
    let mut command = Command::new(exe);
    command
        .args(["run", "--json", "--check", &task.test_command])
        .args(["--max-turns", &args.max_turns.to_string()])
        .args(["--time-limit", &args.time_limit.to_string()])
        .arg("--task-file")
        .arg(&task_file)
        .arg("--repo")
        .arg(&repo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(model) = &model {
        command.args(["--model", model]);
    }
    if let Some(mode) = args.tool_calls.and_then(|m| m.to_possible_value()) {
        command.args(["--tool-calls", mode.get_name()]);
    }
    if args.code_in_json {
        command.arg("--code-in-json");
    }
    // The oracle's script is the tool loop's: a whole-file turn would take its first write.
    if args.no_whole_file_first || args.oracle {
        command.arg("--no-whole-file-first");
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting agent run: {e}"))?;
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    });
    let mut events: Vec<Event> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(event) = serde_json::from_str::<Event>(&line) {
                events.push(event);
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    result.wall_ms = eval::ms_since(started);
    let stderr = errors.join().unwrap_or_default();
    result.absorb(&events);
    if !matches!(status.code(), Some(0 | 1)) {
        let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        result.error = Some(format!("agent run exited with {status}: {tail}"));
    }

    let (judge_sandbox, _) = sandbox::select(Choice::Auto, Vec::new(), "default")?;
    let judged = Instant::now();
    let branch = eval::branch_of(&events);
    let (solved, status_line) = eval::judge(
        task,
        &repo,
        branch.as_deref(),
        judge_sandbox.as_ref(),
        &command_env(&repo, &repo),
        Duration::from_secs(args.time_limit.max(60)),
    )?;
    result.judge_ms = eval::ms_since(judged);
    result.solved = solved;
    result.judge = format!(
        "tests {} ({status_line})",
        if solved { "pass" } else { "fail" }
    );
    Ok(())
}

fn previous_results(path: &Path) -> anyhow::Result<Vec<TaskResult>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    // A line torn by an interrupted eval is dropped: that task simply runs again.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<TaskResult>(l).ok())
        .collect())
}

fn progress(len: usize) -> ProgressBar {
    let interactive = console::Term::stderr().is_term() && std::env::var_os("CI").is_none();
    if !interactive {
        // Plain lines instead, for CI logs and pipes.
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan} {pos}/{len} tasks [{elapsed_precise}, eta {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Seconds since the epoch: a sortable, unique enough directory name.
fn chrono_like_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
