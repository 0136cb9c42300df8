//! `agent serve` and its `user` and `usage` subcommands: load the model once and hand it to the
//! server; manage the users file; print the usage counts.

use std::path::PathBuf;

use crate::cli::{ServeArgs, ServeCommand, ServeUserCommand};
use crate::model::ModelSpec;
use crate::serve::users::{UsageBook, Users};
use crate::serve::{self, Options};

pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| crate::dirs::state_dir().join("serve"));
    match args.command {
        Some(ServeCommand::User(command)) => user(&state, command),
        Some(ServeCommand::Usage) => usage(&state),
        None => start(&args, state),
    }
}

fn start(args: &ServeArgs, state: PathBuf) -> anyhow::Result<u8> {
    let spec = ModelSpec::parse(args.model.as_deref())?;
    if matches!(spec, ModelSpec::Serve { .. } | ModelSpec::OpenAi { .. }) {
        return Err(super::UsageError(format!(
            "--model {spec}: agent serve loads a model itself; give a .gguf file, a model folder or an hf: id"
        ))
        .into());
    }
    let users = Users::load(&state)?;
    if users.users.is_empty() {
        eprintln!(
            "note: no users yet, so every model request will be refused; add one with `agent serve user add NAME` (the server reads {} on every request)",
            Users::path(&state).display()
        );
    }
    eprintln!("loading {spec}");
    let model = spec.load(&args.model_options.options())?;
    let model_id = match &spec {
        ModelSpec::Gguf(path) | ModelSpec::HfFolder(path) | ModelSpec::Replay(path) => path
            .file_name()
            .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned()),
        _ => spec.to_string(),
    };
    let options = Options {
        listen: args.listen.clone(),
        state,
        queue: usize::from(args.queue),
        model_id,
        lanes: usize::from(args.parallel),
    };
    serve::serve(model, options, &mut |address| {
        eprintln!(
            "listening on http://{address} ({} requests may wait)",
            args.queue
        );
        if !address.ip().is_loopback() {
            eprintln!("warning: {address} answers the network in plain HTTP: keys and prompts cross it unencrypted unless a TLS proxy is in front (docs/serve.md)");
        }
    })?;
    Ok(0)
}

fn user(state: &std::path::Path, command: ServeUserCommand) -> anyhow::Result<u8> {
    let mut users = Users::load(state)?;
    match command {
        ServeUserCommand::Add {
            name,
            requests_per_minute,
            tokens_per_day,
        } => {
            let key = users.add(&name, requests_per_minute, tokens_per_day)?;
            users.save(state)?;
            eprintln!(
                "added {name}; their key, shown this once (only its hash is kept in {}):",
                Users::path(state).display()
            );
            println!("{key}");
        }
        ServeUserCommand::List => {
            if users.users.is_empty() {
                eprintln!("no users; add one with `agent serve user add NAME`");
            }
            for u in &users.users {
                let limit = |n: Option<String>| n.unwrap_or_else(|| "no limit".into());
                println!(
                    "{}\trequests/min: {}\ttokens/day: {}",
                    u.name,
                    limit(u.requests_per_minute.map(|n| n.to_string())),
                    limit(u.tokens_per_day.map(|n| n.to_string())),
                );
            }
        }
        ServeUserCommand::Remove { name } => {
            if !users.remove(&name) {
                return Err(super::UsageError(format!(
                    "no user named {name:?} (agent serve user list shows them)"
                ))
                .into());
            }
            users.save(state)?;
            eprintln!("removed {name}; their key no longer works");
        }
    }
    Ok(0)
}

fn usage(state: &std::path::Path) -> anyhow::Result<u8> {
    let book = UsageBook::load(state)?;
    let today = crate::serve::users::today();
    println!("user\trequests today\ttokens today\trequests in total\tprompt tokens\tcompletion tokens\tmodel time");
    for (name, u) in &book.users {
        let day = if u.day == today {
            u.today
        } else {
            Default::default()
        };
        println!(
            "{name}\t{}\t{}\t{}\t{}\t{}\t{:.1} s",
            day.requests,
            day.tokens(),
            u.total.requests,
            u.total.prompt_tokens,
            u.total.completion_tokens,
            u.total.model_ms as f64 / 1000.0
        );
    }
    Ok(0)
}
