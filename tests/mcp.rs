//! `agent mcp`, driven by rmcp's own client over the real binary's stdio: the tools are listed with
//! their schemas, `apply` checks and applies a patch, `run` takes a task to a verified branch in a real
//! repository (the model comes from the user's config: a replay script), and `log` lists that run.

mod common;

use std::path::Path;

use common::*;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::json;

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn call(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_string())
        .with_arguments(arguments.as_object().unwrap().clone())
}

async fn client(home: &Path) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let transport = TokioChildProcess::new(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_agent")).configure(|cmd| {
            cmd.arg("mcp")
                .env("XDG_STATE_HOME", home.join("state"))
                .env("XDG_CACHE_HOME", home.join("cache"))
                .env("XDG_CONFIG_HOME", home.join("config"))
                .env_remove("AGENT_MODEL")
                .env_remove("AGENT_MODEL_SPEC");
        }),
    )
    .unwrap();
    ().serve(transport).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_applies_a_patch_runs_a_task_and_reads_the_log() {
    let home = tempfile::tempdir().unwrap();
    let repo = repo_with(&[
        ("greet.py", "def greet():\n    return 'hi'\n"),
        (".agent.toml", "[sandbox]\nmode = \"none\"\n"),
    ]);
    let client = client(home.path()).await;

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["apply", "log", "run"]);
    let run_tool = tools.iter().find(|t| t.name == "run").unwrap();
    let schema = serde_json::Value::Object(run_tool.input_schema.as_ref().clone());
    assert_eq!(schema["required"], json!(["task", "repo"]), "{schema}");

    // apply: checked first (nothing changes), then for real.
    let patch = "--- a/greet.py\n+++ b/greet.py\n@@ -1,2 +1,2 @@\n def greet():\n-    return 'hi'\n+    return 'hello'\n";
    let repo_arg = repo.path().display().to_string();
    let checked = client
        .call_tool(call(
            "apply",
            json!({"patch": patch, "repo": repo_arg, "dry_run": true}),
        ))
        .await
        .unwrap();
    assert_ne!(checked.is_error, Some(true), "{}", text(&checked));
    assert!(
        text(&checked).contains("applies cleanly"),
        "{}",
        text(&checked)
    );
    let greet = repo.path().join("greet.py");
    assert!(std::fs::read_to_string(&greet).unwrap().contains("'hi'"));
    let applied = client
        .call_tool(call("apply", json!({"patch": patch, "repo": repo_arg})))
        .await
        .unwrap();
    assert_ne!(applied.is_error, Some(true), "{}", text(&applied));
    assert!(std::fs::read_to_string(&greet).unwrap().contains("'hello'"));
    git(repo.path(), &["checkout", "greet.py"]);

    // A relative repository path is refused as invalid parameters.
    let relative = client
        .call_tool(call("apply", json!({"patch": patch, "repo": "some/where"})))
        .await;
    assert!(relative.is_err(), "{relative:?}");

    // run: the model comes from the user's config, never from the client.
    let fix = "--- a/greet.py\n+++ b/greet.py\n@@ -1,2 +1,2 @@\n-def greet():\n-    return 'hi'\n+def greet(name):\n+    return f'hi {name}'\n";
    let script = replay_script(
        home.path(),
        json!([
            plan_turn(&["Greet by name"]),
            {"content": "", "tool_calls": [{"name": "apply_patch", "arguments": {"patch": fix}}]},
            {"content": "", "tool_calls": [{"name": "finish", "arguments": {"summary": "greets by name"}}]}
        ]),
    );
    let config = home.path().join("config/agent");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        format!("model = \"{script}\"\n"),
    )
    .unwrap();
    let ran = client
        .call_tool(call(
            "run",
            json!({"task": "-make greet take a name", "repo": repo_arg, "check": "python3 -c 'import greet; assert greet.greet(\"x\") == \"hi x\"'"}),
        ))
        .await
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&text(&ran)).unwrap_or_else(|e| panic!("{e}: {}", text(&ran)));
    assert_eq!(summary["outcome"], "finished", "{summary}");
    // The repository's refused setting reaches the client as a warning.
    assert!(
        summary["warnings"][0]
            .as_str()
            .unwrap()
            .contains("`sandbox.mode`"),
        "{summary}"
    );
    let branch = summary["branch"].as_str().unwrap();
    let commit = summary["commits"][0].as_str().unwrap();
    assert_eq!(git(repo.path(), &["rev-parse", branch]).trim(), commit);
    assert!(git(repo.path(), &["show", &format!("{branch}:greet.py")]).contains("def greet(name)"));
    assert!(
        std::fs::read_to_string(&greet).unwrap().contains("'hi'"),
        "the checkout was touched"
    );

    let log = client.call_tool(call("log", json!({}))).await.unwrap();
    let run_id = summary["run_id"].as_str().unwrap();
    assert!(text(&log).contains(run_id), "{}", text(&log));
    let one = client
        .call_tool(call("log", json!({"run": run_id})))
        .await
        .unwrap();
    assert!(text(&one).contains("Greet by name"), "{}", text(&one));

    client.cancel().await.unwrap();
}
