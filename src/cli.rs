//! Command-line definitions (clap) and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::ToolCallMode;
use crate::sandbox::Choice;

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "A self-hosted software-development agent: it edits a repository through diffs, verifies each step \
             with your tests, and commits every verified step to its own branch.",
    after_help = "Exit codes: 0 task finished and the check passes; 1 gave up, budget exhausted, check failing or no check to verify with; 2 usage or configuration error."
)]
pub struct Cli {
    /// When to colour output: `auto` (on a terminal, unless NO_COLOR or CLICOLOR=0 is set), `always`,
    /// `never`.
    #[arg(long, global = true, value_enum, default_value_t = clap::ColorChoice::Auto, value_name = "WHEN")]
    pub color: clap::ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work on a task in a repository; verified steps land as commits on a new branch `agent/<slug>`.
    Run(Box<RunArgs>),
    /// Apply a patch (unified diff, `*** Begin Patch` envelope, or SEARCH/REPLACE blocks) to a
    /// directory, all files or none, tolerating the drift models produce.
    Apply(ApplyArgs),
    /// Continue an interrupted run (killed, crashed, out of budget) from its last accepted step.
    Resume(ResumeArgs),
    /// Show a recorded run's trajectory; without RUN, list the recorded runs.
    Log(LogArgs),
    /// Re-run a recorded run's model turns through the replay backend, in a throwaway copy, and check
    /// that it reaches the same outcome and the same commits.
    Replay(ReplayArgs),
    /// Measure the agent on benchmark tasks (the JSONL format of ../shared/eval): each task runs through
    /// `agent run` in a fresh repository and is judged with its original tests restored.
    Eval(EvalArgs),
    /// List the tools a run would offer besides the built-ins (plugins, with their permissions, and
    /// the tools of your config's MCP servers); or install a plugin into your config dir so every
    /// repository gets it.
    Tools(ToolsArgs),
    /// Run commands under the agent's sandbox (to debug it, or to use it from scripts).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Probe each protection layer on this machine (a planted secret, a loopback listener, a host
    /// socket, the fetch proxy, landlock, seccomp, cgroups); exits 1 when a required one is missing.
    Doctor,
    /// Show the effective settings and where each comes from, write a starter config file, or print
    /// the config file's JSON schema (docs/config.md).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve this agent's tools (`run`, `apply`, `log`) to an MCP client on stdin/stdout (docs/mcp.md).
    Mcp,
    /// Share one loaded model with yourself and your friends over HTTP: `agent run --model
    /// serve:URL` and OpenAI-compatible clients (editors) use it with per-user keys, limits and usage
    /// counts; prompts and replies are never logged or stored (docs/serve.md).
    Serve(ServeArgs),
    /// Print a shell completion script to stdout, e.g. `agent completions bash >
    /// ~/.local/share/bash-completion/completions/agent` (zsh: a `_agent` file on `$fpath`; fish:
    /// `~/.config/fish/completions/agent.fish`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout (`agent man | man -l -`), or write one page per command
    /// into a directory (`agent man --dir ~/.local/share/man/man1`).
    Man(ManArgs),
    /// Internal: applies landlock and seccomp inside the sandbox, then runs the command.
    #[command(name = "__sandbox-helper", hide = true)]
    SandboxHelper {
        /// A directory the command may write under.
        #[arg(long = "write")]
        writable: Vec<PathBuf>,
        /// Allow network sockets (the fetch profile).
        #[arg(long)]
        network: bool,
        /// The registry proxy's unix socket: forward 127.0.0.1 to it and set the proxy variables.
        #[arg(long)]
        proxy: Option<PathBuf>,
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
#[command(
    after_help = "Settings come from, highest first: the command line, the environment, the repository's .agent.toml, your config file ($XDG_CONFIG_HOME/agent/config.toml, else ~/.config/agent/config.toml), the defaults. A repository's file may set the check and the budgets and turn fetch or plugins off; it may not choose the model, change the sandbox or loosen verification."
)]
pub enum ConfigCommand {
    /// Print every setting of `agent run` with its effective value and where it comes from.
    Show {
        /// The repository whose .agent.toml is read.
        #[arg(long, value_name = "DIR", default_value = ".")]
        repo: PathBuf,
        /// Print the settings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a commented starter config file (and its JSON schema beside it, for editors).
    Init {
        /// Write this file instead of your config file (e.g. `.agent.toml` for a repository).
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the JSON schema of the config file.
    Schema,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `agent.1` and one `agent-COMMAND.1` per command into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 applied (or, with --dry-run, would apply); 1 refused, with the reason; 2 usage error.\n\n\
Hunks are located by content: line numbers are hints, and trailing/surrounding whitespace, typographic \
quotes and uniformly shifted indentation are tolerated. A hunk that matches in several places is refused."
)]
pub struct ApplyArgs {
    /// The patch file; `-` reads stdin.
    #[arg(value_name = "PATCHFILE")]
    pub patch: String,

    /// Only report what would happen; change nothing (as `agent run --dry-run`; `--check` is the
    /// old spelling).
    #[arg(long = "dry-run", alias = "check")]
    pub check: bool,

    /// The directory the patch's paths are relative to; no path may leave it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    agent run \"make the tests in tests/acronym.rs pass\" --repo path/to/repo --check \"cargo test\"\n  \
    agent run --task-file tasks/examples/hello.md --repo path/to/repo --dry-run\n  \
    echo \"fix the typo in README.md\" | agent run - --json\n\n\
Your checkout (HEAD, index, working tree, untracked files, other branches) is never modified: the agent \
works in a temporary copy starting at HEAD and only creates its own branch. Only work that passed the \
task's check is committed; without a check (none given, none detected) the work is saved as \
unverified.patch and the run exits 1, unless --allow-unverified.")]
pub struct RunArgs {
    /// The task in plain words; `-` reads it from stdin.
    #[arg(
        value_name = "TASK",
        conflicts_with = "task_file",
        required_unless_present_any = ["task_file", "github_event"]
    )]
    pub task: Option<String>,

    /// Read the task from a (Markdown) file instead.
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,

    /// The git repository to work on.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,

    /// The model (see docs/models.md):
    ///   PATH.gguf                       a local GGUF file, run in-process by mistral.rs;
    ///   DIR                             a local Hugging Face folder (config.json + safetensors);
    ///   hf:ORG/NAME[:FILE.gguf]         a Hugging Face repo, downloaded into the HF cache
    ///                                   (HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_ENDPOINT and
    ///                                   HF_HUB_OFFLINE are honoured);
    ///   openai:http://HOST:PORT/v1#NAME an OpenAI-compatible server (Ollama, llama.cpp, vLLM,
    ///                                   mistralrs serve); key from AGENT_API_KEY or OPENAI_API_KEY;
    ///   replay:FILE                     scripted turns, for tests.
    /// Default: $AGENT_MODEL (any of the above; $AGENT_MODEL_SPEC is its old name), else the
    /// config file's `model`, else Qwen2.5-Coder-1.5B-Instruct Q4_K_M, installed by
    /// scripts/setup.sh (scripts/fetch-model.py qwen2.5-coder-1.5b).
    #[arg(long, value_name = "SPEC", env = "AGENT_MODEL", verbatim_doc_comment)]
    pub model: Option<String>,

    #[command(flatten)]
    pub model_options: ModelArgs,

    /// The verification command run after each edit (e.g. "cargo test"). Default: detected from the
    /// repository (Cargo.toml → cargo test, *_test.py → unittest, package.json → npm test, ...).
    #[arg(long, value_name = "CMD")]
    pub check: Option<String>,

    /// Commit steps even when the run has no check (neither --check nor one detected): each such commit
    /// carries an `Agent-Verified: no` trailer and a pull request says so in its title and body.
    /// Without it, a run with no check commits nothing: its work is saved as unverified.patch and it
    /// exits 1.
    #[arg(long)]
    pub allow_unverified: bool,

    /// Let steps change existing test files while the check is failing. By default, when the task's
    /// check fails before the run (a bug to fix, tests to make pass), edits to existing test files
    /// (test_*.py, *_test.py, tests/, *.test.js, *_test.go, ...) are undone and the model is told to
    /// change the code instead: a check passed by rewriting its tests proves nothing. New test files
    /// are always allowed.
    #[arg(long)]
    pub allow_test_edits: bool,

    /// Go straight to tools: no whole-file first try. By default, when the task's check fails
    /// before the run and the step names short files (three at most, 8 KB together), the model is
    /// first shown them and asked for the files it changes back whole in plain text (up to two
    /// tries, each checked and rolled back when it fails), as Aider's whole-file format does; small
    /// models fix a file they copy more reliably than they write a patch.
    #[arg(long)]
    pub no_whole_file_first: bool,

    /// Most model turns (planning included) before the run stops, keeping its accepted steps.
    #[arg(long, value_name = "N", default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_turns: u64,

    /// Most plan steps the run starts (a plan has at most 6; re-planned steps count again).
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_steps: u64,

    /// Most tokens (prompt + generated, all turns together). Default: no limit.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,

    /// Wall-clock limit for the run, in seconds. Default: no limit.
    #[arg(long, value_name = "SECS")]
    pub time_limit: Option<u64>,

    /// Checks a step may fail before its changes are rolled back and the rest of the plan is revised.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub step_tries: u64,

    /// Only show the proposed patch: do the work in a throwaway copy and change nothing in the repository.
    #[arg(long)]
    pub dry_run: bool,

    /// Emit one JSON event per line on stdout instead of human-readable progress.
    #[arg(long)]
    pub json: bool,

    /// Time limit for each command the model runs, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub command_timeout: u64,

    /// Time limit for each run of the check command, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub check_timeout: u64,

    /// How commands (the `run` tool, the check) are confined. `auto` uses bubblewrap when it works here
    /// and warns loudly when it does not.
    #[arg(long, value_enum, default_value = "auto")]
    pub sandbox: Choice,

    /// The sandbox profile for builds and tests (see `agent sandbox exec --help`).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub sandbox_profile: String,

    /// Take the task from a GitHub Actions event file (`$GITHUB_EVENT_PATH`): an issue, a comment
    /// mentioning @agent on an issue, or a workflow_dispatch with a `task` input. The task branch is
    /// then `agent/issue-N`, so a new run for the same issue continues it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["task", "task_file"])]
    pub github_event: Option<PathBuf>,

    /// Who may start a run from --github-event: the comment's (or opened issue's) author_association
    /// must be one of these (comma-separated; GitHub's values: OWNER, MEMBER, COLLABORATOR,
    /// CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, NONE). Anyone else is refused before any work.
    #[arg(long, value_name = "LIST", default_value = crate::ci::event::DEFAULT_ASSOCIATIONS, env = "AGENT_ALLOW_ASSOCIATION")]
    pub allow_association: String,

    /// After the run, push the task branch and open (or update) a draft pull request — through the
    /// GitHub API when GITHUB_TOKEN and GITHUB_REPOSITORY are set, else by printing the `gh` command.
    /// A run that accepted no step opens nothing and exits 1.
    #[arg(long, conflicts_with = "dry_run")]
    pub pr: bool,

    /// Write the pull request's body (or, when nothing was accepted, the explanation) to this file.
    #[arg(long, value_name = "FILE")]
    pub pr_body_out: Option<PathBuf>,

    /// The remote the task branch is pushed to (a name or a URL).
    #[arg(long, value_name = "REMOTE", default_value = "origin")]
    pub remote: String,

    /// The branch the pull request targets. Default: the remote's default branch.
    #[arg(long, value_name = "BRANCH")]
    pub pr_base: Option<String>,

    /// Skip the dependency-fetch phase (`cargo fetch`, `npm install`) that runs with network, under the
    /// `fetch` profile, before the offline work.
    #[arg(long)]
    pub no_fetch: bool,

    /// Let the dependency-fetch phase also reach HOST over HTTPS, through the registry proxy
    /// (repeatable; `*.example.org` for its subdomains): a company registry or mirror, a git host
    /// a manifest names. The `fetch` profile already allows crates.io, PyPI and npm.
    #[arg(long = "registry", value_name = "HOST", value_parser = registry_host)]
    pub registries: Vec<String>,

    /// Offer only the built-in tools: no plugin from the repository's tools/ or your config dir.
    #[arg(long)]
    pub no_plugins: bool,

    /// Offer the tools of this MCP server (repeatable), named NAME__TOOL. `NAME=COMMAND` starts
    /// COMMAND (a shell command line speaking MCP on stdin/stdout) inside the run's sandbox, in the
    /// worktree, with no network; `NAME={JSON}` takes the keys of a config entry (command, network,
    /// allow_hosts, timeout). Default: the `[mcp_servers]` of your config file (docs/mcp.md).
    #[arg(long = "mcp-server", value_name = "NAME=COMMAND")]
    pub mcp_servers: Vec<crate::tools::mcp::NamedServer>,

    /// Start no MCP server, not even those of the config file.
    #[arg(long)]
    pub no_mcp: bool,

    /// The command line the run was started with, the config files' settings included as flags
    /// (what its record keeps, so that `resume` and `replay` run with the same settings).
    #[arg(skip)]
    pub argv: Vec<String>,

    /// The settings taken from config files (for the run's log).
    #[arg(skip)]
    pub configured: Vec<crate::config::Setting>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Plugins are found in the repository's tools/<name>/tool.toml and in $XDG_CONFIG_HOME/agent/tools/<name>/ (else ~/.config/agent/tools/); the repository's win a name clash. Each is a WASI module that sees only the worktree (read-only unless its manifest says workspace = \"write\"), has no network, and is stopped by its time and memory limits. Writing one: docs/plugins.md.\n\nMCP servers named in your config file ([mcp_servers.NAME], docs/mcp.md) are started in an empty folder, under the config's sandbox, to list their tools (NAME__TOOL) and what was refused.\n\nExamples:\n  agent tools\n  agent tools --repo path/to/repo --json\n  agent tools install tools/outline\n  agent tools call outline '{\"path\": \"src/main.rs\"}'"
)]
pub struct ToolsArgs {
    #[command(subcommand)]
    pub command: Option<ToolsCommand>,

    /// The repository whose tools/ folder is searched (default: the current directory's repository).
    #[arg(long, value_name = "DIR", default_value = ".", global = true)]
    pub repo: PathBuf,

    /// Print the plugins as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Copy a plugin (its tool.toml, schema file and built module) into your config dir, compile it
    /// once, and check that it loads.
    Install {
        /// The plugin's folder (the one with tool.toml).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Replace an installed plugin of the same name.
        #[arg(long)]
        force: bool,
    },
    /// Call a plugin as the model would (arguments checked against its schema, the same sandbox), on
    /// --repo's working tree; for trying a plugin while writing it. Prints its result; exit 0 on
    /// success, 1 when it failed or was stopped (the reason on stderr).
    Call {
        /// The plugin's name (see `agent tools`).
        #[arg(value_name = "NAME")]
        name: String,
        /// The arguments as one JSON object.
        #[arg(value_name = "JSON", default_value = "{}")]
        arguments: String,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "The run continues on its task branch from the last accepted step: the plan is read \
from its log and the branch's commits (their Agent-Step trailers). Work that no check had accepted when it \
stopped is redone. Dry runs publish nothing and cannot be resumed."
)]
pub struct ResumeArgs {
    /// The run id (see `agent log`), a unique prefix of it, or `last`.
    #[arg(value_name = "RUN")]
    pub run: String,

    /// Emit JSON events on stdout.
    #[arg(long)]
    pub json: bool,

    /// A new turn budget, e.g. for a run that stopped because it ran out.
    #[arg(long, value_name = "N")]
    pub max_turns: Option<u64>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    agent eval ../shared/eval/exercism-python.jsonl --oracle -j 2          # the harness must solve everything\n  \
    agent eval ../shared/eval/exercism-rust.jsonl --limit 5 --out runs/smol # the default model on 5 tasks\n  \
    agent eval tasks.jsonl --model openai:http://127.0.0.1:11434/v1#qwen2.5-coder:14b --filter '*/bob*'\n\n\
Each result is appended to DIR/results.jsonl as soon as its task is judged; running again with the same \
--out skips the tasks already there. The summary (pass rate per language and difficulty, where the time \
went) ends with `N passed, M failed`.\n\n\
Exit codes: 0 every selected task solved; 1 some not solved; 2 usage error.")]
pub struct EvalArgs {
    /// The tasks: one JSON object per line (id, language, difficulty, instructions, files,
    /// test_files, test_command, reference).
    #[arg(value_name = "FILE.jsonl")]
    pub file: PathBuf,

    /// The model, as for `agent run --model`.
    #[arg(long, value_name = "SPEC", conflicts_with = "oracle")]
    pub model: Option<String>,

    /// Instead of a model, replay each task's reference solution through the real tools and the whole
    /// loop (its tool path: no whole-file first try): measures the harness, and must solve every task.
    #[arg(long)]
    pub oracle: bool,

    /// Tasks run in parallel.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,

    /// Only tasks whose id matches this glob (e.g. `exercism-rust/*` or `*/bob`).
    #[arg(long, value_name = "GLOB")]
    pub filter: Option<String>,

    /// Only the first N (matching) tasks.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Where results go (results.jsonl, summary.txt); re-running with it resumes. Default: a new
    /// directory under the state dir.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Most model turns per task.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub max_turns: u64,

    /// Wall-clock limit per task, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub time_limit: u64,

    /// How each run's tool calls are produced, as for `agent run --tool-calls` (to compare the formats
    /// on the same tasks).
    #[arg(long, value_enum, value_name = "MODE")]
    pub tool_calls: Option<ToolCallMode>,

    /// Each run with `agent run --code-in-json` (file contents and patches inside the call's JSON), to
    /// compare with code written after the call.
    #[arg(long)]
    pub code_in_json: bool,

    /// Each run with `agent run --no-whole-file-first`, to compare with the whole-file first try.
    #[arg(long)]
    pub no_whole_file_first: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The run id, a unique prefix of it, or `last`. Without it, the recorded runs are listed.
    #[arg(value_name = "RUN")]
    pub run: Option<String>,

    /// Print the raw events (JSON lines) instead of the readable form.
    #[arg(long, conflicts_with = "html")]
    pub json: bool,

    /// Write the run as one self-contained HTML page (no scripts, no network): the task, the plans,
    /// every step with its tool calls, checks and coloured diffs, tokens and time per step, the outcome.
    #[arg(long, value_name = "FILE", requires = "run")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 the replay reached the recorded outcome with identical commits (same \
trees); 1 it diverged (the differences are listed); 2 the run cannot be replayed."
)]
pub struct ReplayArgs {
    /// The run id, a unique prefix of it, or `last`.
    #[arg(value_name = "RUN")]
    pub run: String,

    /// Emit JSON events on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How to run the model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// How tool calls are produced. `auto`: in-process, a model whose chat template writes Hermes-style
    /// `<tool_call>` calls (Qwen2.5, Qwen3, ...) is decoded in that format under a grammar of it; any
    /// other model, and every server, as `constrained`. `constrained`: a generic JSON call under a
    /// schema that admits only valid calls of the offered tools (any model; on a server, through
    /// response_format). `native`: the model's own format (in-process and Hermes-style: constrained;
    /// otherwise unconstrained, arguments checked afterwards).
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub tool_calls: ToolCallMode,

    /// A chat template replacing the model's own: a .jinja file, or a JSON file with a `chat_template`
    /// field (such as a tokenizer_config.json).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,

    /// CPU threads for the in-process model (default: all cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Quantise a safetensors model in place as it loads (e.g. Q4K, Q8_0, or 4/8 for the best type
    /// of that width on this device). GGUF files are already quantised.
    #[arg(long, value_name = "TYPE")]
    pub isq: Option<String>,

    /// The context window in tokens, when the server does not report it (Ollama), or to use less of it.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u32).range(512..))]
    pub context_window: Option<u32>,

    /// Have the model write file contents and patches inside the call's JSON, escaped, even where
    /// its format takes them as plain text after the call (the `<tool_call>` format in-process does
    /// by default, so that code is written as code). For comparing the two, and for files holding a
    /// line that starts with ``` (a block after the call ends at such a line).
    #[arg(long)]
    pub code_in_json: bool,
}

impl ModelArgs {
    pub fn options(&self) -> crate::model::ModelOptions {
        crate::model::ModelOptions {
            chat_template: self.chat_template.clone(),
            threads: self.threads.map(usize::from),
            tool_calls: self.tool_calls,
            isq: self.isq.clone(),
            context_window: self.context_window.map(|n| n as usize),
            prefix_cache: true,
            code_in_json: self.code_in_json,
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the command's own; 124 when it timed out; 125 when the sandbox could not start it."
)]
pub struct SandboxExecArgs {
    /// The directory the command runs in and may write to (the worktree; `--dir` is the old
    /// spelling).
    #[arg(long = "repo", alias = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// Wall-clock limit in seconds; the whole process tree is killed when it runs out (as `agent run
    /// --command-timeout`; `--timeout` is the old spelling).
    #[arg(
        long = "command-timeout",
        alias = "timeout",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub timeout: u64,

    #[arg(long, value_enum, default_value = "bwrap")]
    pub sandbox: Choice,

    /// The sandbox profile: `default` (offline), `fetch` (HTTPS to the package registries only,
    /// through the agent's proxy; package caches writable), a name in ~/.config/agent/sandboxes/, or a
    /// path to a .toml file.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub profile: String,

    /// With a profile whose network goes through the registry proxy (`fetch`), also let HOST
    /// through (repeatable; as `agent run --registry`).
    #[arg(long = "registry", value_name = "HOST", value_parser = registry_host)]
    pub registries: Vec<String>,

    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A `--registry` value: a host name the registry proxy may let through.
fn registry_host(value: &str) -> Result<String, String> {
    match crate::sandbox::profile::check_host(value) {
        Some(problem) => Err(problem),
        None => Ok(value.to_string()),
    }
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Run one command under exactly the sandbox the agent uses.
    Exec(SandboxExecArgs),
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  agent serve user add alice            # prints alice's key once\n  agent serve --listen 0.0.0.0:8080     # then, on alice's machine:\n  AGENT_API_KEY=agent-... agent run \"fix the test\" --model serve:http://HOST:8080\n  agent serve usage\n\nRequests: GET /health, GET /v1/models, POST /v1/chat/completions (OpenAI-compatible), POST /agent/v1/turn (agent run --model serve:URL). Each needs `Authorization: Bearer KEY`, except /health. Put TLS in front of it (a reverse proxy, docs/serve.md) before listening beyond your machine."
)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,

    /// The model to load once and share (as `agent run --model`; an in-process model, or a
    /// replay: script for tests). Default: $AGENT_MODEL, else Qwen2.5-Coder-1.5B-Instruct.
    #[arg(long, value_name = "SPEC", env = "AGENT_MODEL")]
    pub model: Option<String>,

    #[command(flatten)]
    pub model_options: ModelArgs,

    /// Address and port to listen on. The default answers this machine only; 0.0.0.0:8080 answers
    /// the network (use TLS in front of it). Port 0 picks a free port (printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Model requests that may wait while the model answers another; one more is answered 429 with
    /// Retry-After.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub queue: u16,

    /// Requests the in-process model works on at once: the engine batches them, so several
    /// friends' turns share each pass over the weights, but a code completion then waits for the
    /// others' prompts too. 1 answers one at a time, completions first (docs/serve.md). Default: 4
    /// in a GPU build, 1 on the CPU (where batching measured 1.8x the throughput with 4 clients but
    /// 5x the completion latency).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PARALLEL, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: u16,

    /// The folder of users.toml (users and their key hashes) and usage.json (default:
    /// $XDG_STATE_HOME/agent/serve, else ~/.local/state/agent/serve).
    #[arg(long, value_name = "DIR", global = true, env = "AGENT_SERVE_STATE")]
    pub state: Option<PathBuf>,
}

/// `agent serve --parallel`'s default: batching pays on a GPU; on a CPU it delays completions.
pub const DEFAULT_PARALLEL: u16 = if cfg!(any(feature = "cuda", feature = "metal")) {
    4
} else {
    1
};

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Add, list or remove the server's users.
    #[command(subcommand)]
    User(ServeUserCommand),
    /// Requests and tokens per user, today (UTC) and in total.
    Usage,
}

#[derive(Debug, Subcommand)]
pub enum ServeUserCommand {
    /// Add a user and print their API key: it is shown this once and stored only as a hash.
    Add {
        /// Letters, digits, '-', '_', '.' or '@'.
        name: String,
        /// Model requests a minute this user may send (default: no limit).
        #[arg(long, value_name = "N")]
        requests_per_minute: Option<u32>,
        /// Prompt and completion tokens a day (UTC) this user may use (default: no limit).
        #[arg(long, value_name = "N")]
        tokens_per_day: Option<u64>,
    },
    /// List the users and their limits (never their keys).
    List,
    /// Remove a user: their key stops working at once, even on a running server.
    Remove { name: String },
}
