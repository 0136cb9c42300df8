//! `agent config show|init|schema`, and the config files' part in `agent run`: the files' settings
//! become flags on the run's command line wherever the user gave neither the flag nor its environment
//! variable, so that one parser (clap's) validates them and the run's record keeps the command line
//! the run really had (`resume` and `replay` then use the same settings).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::UsageError;
use crate::cli::{Cli, Command, ConfigCommand, RunArgs};
use crate::config::{self, Layers, Setting, KEYS};

/// `args` with the config files' settings applied below the command line and the environment.
pub fn for_run(mut args: RunArgs, matches: &ArgMatches) -> anyhow::Result<RunArgs> {
    let argv: Vec<String> = std::env::args().collect();
    let old_model_env = std::env::var(OLD_MODEL_ENV).ok().filter(|v| !v.is_empty());
    if args.model.is_none() {
        args.model.clone_from(&old_model_env);
    }
    let layers = load(&args.repo)?;
    let (settings, refused) = layers.settings();
    for refusal in &refused {
        eprintln!(
            "warning: {} sets `{}`, ignored: {}",
            refusal.path.display(),
            refusal.key,
            refusal.reason
        );
    }
    // A profile's options belong to its model: a model given on the command line or in the
    // environment takes none of them.
    let model_given = given(matches, "model");
    let applied: Vec<&Setting> = settings
        .iter()
        .filter(|s| !given(matches, s.field))
        .filter(|s| !(model_given && config::PROFILE_KEYS.contains(&s.key)))
        .collect();
    if applied.is_empty() {
        args.argv = argv;
        return Ok(args);
    }
    let full = with_settings(&argv, &applied);
    let mut parsed = parse_run(&full).map_err(|_| invalid_setting(&argv, &applied))?;
    if parsed.model.is_none() {
        parsed.model = old_model_env;
    }
    parsed.argv = full;
    parsed.configured = applied.into_iter().cloned().collect();
    Ok(parsed)
}

/// Whether the user gave this argument on the command line or through its environment variable
/// (both outrank the files). `AGENT_MODEL_SPEC`, the old name of `AGENT_MODEL`, counts too.
fn given(matches: &ArgMatches, field: &str) -> bool {
    let explicit = matches!(
        matches.value_source(field),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    explicit || (field == "model" && env_set(OLD_MODEL_ENV))
}

/// The old name of `AGENT_MODEL`, still honoured below it.
const OLD_MODEL_ENV: &str = "AGENT_MODEL_SPEC";

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The config files for a repository at (or above) `dir`; a broken file is a usage error naming it.
fn load(dir: &Path) -> anyhow::Result<Layers> {
    let toplevel = crate::vcs::toplevel(dir);
    Layers::load(toplevel.as_deref()).map_err(|e| {
        UsageError(format!(
            "{e}\n(see docs/config.md, or `agent config schema`)"
        ))
        .into()
    })
}

/// `argv` with the settings' flags inserted right after the `run` subcommand (before any task
/// text or `--`, so they are read as flags).
fn with_settings(argv: &[String], settings: &[&Setting]) -> Vec<String> {
    let at = argv
        .iter()
        .skip(1)
        .position(|a| a == "run")
        .map_or(argv.len(), |i| i + 2);
    let mut full = argv[..at].to_vec();
    full.extend(settings.iter().flat_map(|s| s.args.iter().cloned()));
    full.extend_from_slice(&argv[at..]);
    full
}

fn parse_run(argv: &[String]) -> Result<RunArgs, clap::Error> {
    let matches = Cli::command().try_get_matches_from(argv)?;
    match Cli::from_arg_matches(&matches)?.command {
        Command::Run(args) => Ok(*args),
        _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
    }
}

/// The error for settings clap refused: the first one that fails on its own, with its file.
fn invalid_setting(argv: &[String], applied: &[&Setting]) -> anyhow::Error {
    for setting in applied {
        if let Err(e) = parse_run(&with_settings(argv, &[setting])) {
            let reason = e.kind().as_str().unwrap_or("invalid value").to_string();
            let detail = e
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            return UsageError(format!(
                "{}: `{} = {}` is not valid ({reason}: {detail})",
                setting.origin, setting.key, setting.value
            ))
            .into();
        }
    }
    UsageError("the config files' settings do not fit together with this command line".into())
        .into()
}

/// `agent config ...`.
pub fn config(command: ConfigCommand) -> anyhow::Result<u8> {
    match command {
        ConfigCommand::Show { repo, json } => show(&repo, json),
        ConfigCommand::Init { path, force } => init(path, force),
        ConfigCommand::Schema => {
            println!("{}", schema_text());
            Ok(0)
        }
    }
}

/// The config file's JSON schema, as written to docs/config.schema.json.
pub fn schema_text() -> String {
    serde_json::to_string_pretty(&config::schema()).unwrap_or_default()
}

/// One line of `agent config show`.
#[derive(Debug, serde::Serialize)]
struct Shown {
    key: &'static str,
    value: String,
    from: String,
}

fn show(repo: &Path, json: bool) -> anyhow::Result<u8> {
    let layers = load(repo)?;
    let (settings, refused) = layers.settings();
    let run = Cli::command();
    let run = run
        .find_subcommand("run")
        .context("the run command is missing")?;
    let shown: Vec<Shown> = KEYS
        .iter()
        .map(|&(key, field)| {
            let arg = run.get_arguments().find(|a| a.get_id() == field);
            shown_value(key, field, arg, &settings)
        })
        .collect();
    if json {
        let refused: Vec<serde_json::Value> = refused
            .iter()
            .map(|r| serde_json::json!({"key": r.key, "file": r.path, "reason": r.reason}))
            .collect();
        let files = serde_json::json!({
            "user": config::user_path(),
            "repository": layers.repo_file,
        });
        let out = serde_json::json!({"files": files, "settings": shown, "refused": refused});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let mut out = String::new();
    let describe = |path: Option<PathBuf>, loaded: bool| match path {
        Some(p) if loaded => format!("{}", p.display()),
        Some(p) => format!("{} (none)", p.display()),
        None => "(no home directory)".into(),
    };
    out += &format!(
        "user config        {}\n",
        describe(config::user_path(), layers.user.is_some())
    );
    out += &format!(
        "repository config  {}\n\n",
        describe(layers.repo_file.clone(), layers.repo.is_some())
    );
    let width = KEYS.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for line in &shown {
        out += &format!(
            "{:width$}  {}  [{}]\n",
            line.key,
            crate::report::terminal_safe(&line.value),
            line.from
        );
    }
    for refusal in &refused {
        out += &format!(
            "\nignored: {} sets `{}`: {}",
            refusal.path.display(),
            refusal.key,
            refusal.reason
        );
    }
    println!("{}", out.trim_end());
    Ok(0)
}

/// A key's effective value for a run with no flags: the environment, else the files, else the
/// default.
fn shown_value(
    key: &'static str,
    field: &str,
    arg: Option<&clap::Arg>,
    settings: &[Setting],
) -> Shown {
    let from_env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| Shown {
                key,
                value: v,
                from: format!("env {name}"),
            })
    };
    if let Some(env) = arg.and_then(|a| a.get_env()).and_then(|e| e.to_str()) {
        if let Some(shown) = from_env(env) {
            return shown;
        }
    }
    if field == "model" {
        if let Some(shown) = from_env(OLD_MODEL_ENV) {
            return shown;
        }
    }
    let model_from_env = ["AGENT_MODEL", OLD_MODEL_ENV].into_iter().any(env_set);
    let setting = settings
        .iter()
        .find(|s| s.key == key)
        .filter(|s| !(model_from_env && config::PROFILE_KEYS.contains(&s.key)));
    if let Some(setting) = setting {
        return Shown {
            key,
            value: setting.value.clone(),
            from: setting.origin.to_string(),
        };
    }
    let default: Vec<String> = arg
        .map(|a| {
            a.get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let value = match (key, default.first()) {
        (_, Some(v)) if arg.is_some_and(|a| a.get_action().takes_values()) => v.clone(),
        ("model", _) => crate::model::default_model_path().display().to_string(),
        ("run.check", _) => "detected from the repository".into(),
        ("run.fetch" | "run.plugins" | "run.mcp" | "run.whole_file_first", _) => "true".into(),
        ("run.allow_unverified" | "run.allow_test_edits", _) => "false".into(),
        ("run.max_tokens" | "run.time_limit", _) => "no limit".into(),
        ("sandbox.registries", _) => "the fetch profile's".into(),
        ("context_window", _) => "the model's".into(),
        ("threads", _) => "all cores".into(),
        ("chat_template", _) => "the model's own".into(),
        _ => "none".into(),
    };
    Shown {
        key,
        value,
        from: "default".into(),
    }
}

/// The starter file `agent config init` writes: every key, commented out, with its default.
const STARTER: &str = include_str!("config_starter.toml");

fn init(path: Option<PathBuf>, force: bool) -> anyhow::Result<u8> {
    let path = match path {
        Some(p) => p,
        None => config::user_path().ok_or_else(|| {
            UsageError("no home directory: pass --path FILE to say where to write".into())
        })?,
    };
    if path.exists() && !force {
        return Err(UsageError(format!(
            "{} already exists; `agent config show` shows what it sets (--force replaces it)",
            path.display()
        ))
        .into());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let schema = dir.join("agent-config.schema.json");
    std::fs::write(&schema, schema_text() + "\n")
        .with_context(|| format!("cannot write {}", schema.display()))?;
    let text = format!("#:schema ./agent-config.schema.json\n{STARTER}");
    // Written whole or not at all: a half-written config would break every later run.
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    file.write_all(text.as_bytes())?;
    file.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The starter must parse as it is (everything in it is commented out).
    config::read(&path)?;
    eprintln!(
        "wrote {} (every setting commented out, with its default) and {} for editors",
        path.display(),
        schema.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_key_stands_for_an_argument_of_run() {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").unwrap();
        for (key, field) in KEYS {
            assert!(
                run.get_arguments().any(|a| a.get_id() == *field),
                "{key} names `{field}`, which `agent run` does not have"
            );
        }
    }

    #[test]
    fn settings_go_right_after_the_run_subcommand() {
        let argv: Vec<String> = ["agent", "--color", "never", "run", "--", "--odd task"]
            .map(String::from)
            .to_vec();
        let setting = Setting {
            key: "run.max_turns",
            value: "7".into(),
            args: vec!["--max-turns".into(), "7".into()],
            field: "max_turns",
            origin: config::Origin::User(PathBuf::from("/c.toml")),
        };
        let full = with_settings(&argv, &[&setting]);
        assert_eq!(
            full,
            [
                "agent",
                "--color",
                "never",
                "run",
                "--max-turns",
                "7",
                "--",
                "--odd task"
            ]
        );
        let args = parse_run(&full).unwrap();
        assert_eq!(
            (args.max_turns, args.task.as_deref()),
            (7, Some("--odd task"))
        );
    }

    #[test]
    fn the_starter_file_is_valid_and_the_schema_in_docs_is_current() {
        let file: config::ConfigFile = toml::from_str(STARTER).unwrap();
        assert_eq!(file, config::ConfigFile::default());
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.schema.json"),
        )
        .unwrap();
        assert_eq!(
            docs.trim_end(),
            schema_text(),
            "docs/config.schema.json is stale: agent config schema > docs/config.schema.json"
        );
    }
}
