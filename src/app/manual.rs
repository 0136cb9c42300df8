//! `agent completions` and `agent man`: shell completion scripts and manual pages, generated from the
//! clap definitions in `cli`, so they never drift from the real flags.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

pub fn completions(args: CompletionsArgs) -> anyhow::Result<u8> {
    // clap_complete offers hidden subcommands too (bash's script would offer `__sandbox-helper`): the
    // command is rebuilt from the visible ones.
    let full = Cli::command();
    let mut command = clap::Command::new("agent")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "agent", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script to stdout")?;
    Ok(0)
}

pub fn man(args: ManArgs) -> anyhow::Result<u8> {
    let command = Cli::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            eprintln!("manual pages written to {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the manual page")?;
            std::io::stdout()
                .write_all(&page)
                .context("cannot write the manual page to stdout")?;
        }
    }
    Ok(0)
}
