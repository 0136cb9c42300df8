//! `agent completions` and `agent man`: the scripts and pages are generated from the real flags, so the
//! tests load them the way a user would (bash sources the script and completes; the man pages are
//! written where `man` finds them) and look for flags that exist today.

mod common;

use std::process::Command;

use common::*;

/// What bash completes for the words of `line` after sourcing `agent completions bash`.
fn bash_completes(line: &str) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    let script = home.path().join("agent.bash");
    let output = agent(home.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    std::fs::write(&script, &output.stdout).unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "source {script}\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT={point}\n\
         _agent agent '{current}' '{previous}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        cword = words.len() - 1,
        point = line.len(),
        current = words[words.len() - 1],
        previous = words[words.len() - 2],
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_flags_and_their_values() {
    let commands = bash_completes("agent ");
    for command in [
        "run",
        "apply",
        "log",
        "eval",
        "doctor",
        "completions",
        "man",
    ] {
        assert!(
            commands.iter().any(|c| c == command),
            "{command}: {commands:?}"
        );
    }
    assert!(
        !commands.iter().any(|c| c.starts_with("__")),
        "an internal command is offered: {commands:?}"
    );
    assert_eq!(bash_completes("agent run --tool-c"), ["--tool-calls"]);
    assert_eq!(
        bash_completes("agent run --tool-calls "),
        ["auto", "constrained", "native"]
    );
    assert_eq!(
        bash_completes("agent --color "),
        ["auto", "always", "never"]
    );
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let home = tempfile::tempdir().unwrap();
    for (shell, marker) in [("zsh", "#compdef agent"), ("fish", "complete -c agent")] {
        let output = agent(home.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in [
            "run", "apply", "resume", "replay", "eval", "tools", "sandbox",
        ] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
}

#[test]
fn man_pages_cover_each_command_and_its_flags() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("man1");
    let output = agent(home.path())
        .args(["man", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let run = std::fs::read_to_string(dir.join("agent-run.1")).unwrap();
    assert!(
        run.starts_with(".ie") || run.contains(".TH agent-run 1"),
        "{run}"
    );
    // roff escapes hyphens in flag names.
    for flag in [
        r"\-\-tool\-calls",
        r"\-\-dry\-run",
        r"\-\-check",
        r"\-\-max\-turns",
    ] {
        assert!(run.contains(flag), "agent-run.1 lacks {flag}");
    }
    for page in [
        "agent.1",
        "agent-apply.1",
        "agent-log.1",
        "agent-sandbox-exec.1",
    ] {
        assert!(dir.join(page).is_file(), "no {page}");
    }
    assert!(
        !std::fs::read_dir(&dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("__")),
        "a page for an internal command"
    );
    // Without --dir the main page goes to stdout.
    let output = agent(home.path()).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(page.contains(".TH agent 1"), "{page}");
    assert!(page.contains("completions"), "{page}");
}
