//! `agent log RUN --html FILE`, opened in a real headless browser (Debian's chromium, installed by
//! scripts/setup.sh): the rendered DOM has the run's parts, and hostile text from the task, the model
//! and the files stays text: no element it spells is created, and nothing it points at is fetched.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The DOM chromium renders for `page` (after parsing, styles and any script).
fn rendered_dom(page: &Path, scratch: &Path) -> String {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no headless browser: scripts/setup.sh installs Debian's chromium");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("the browser did not finish rendering in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut dom = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut dom)
        .unwrap();
    dom
}

#[test]
fn the_html_report_renders_every_part_and_keeps_hostile_text_inert() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let fetch_me = format!("<img src=\"http://127.0.0.1:{port}/img.png\">");
    let script = "<script>document.title='pwned'</script>";

    let repo = repo_with(&[("a.txt", "a\n")]);
    let home = tempfile::tempdir().unwrap();
    let file = format!("html = '''{fetch_me}{script}</pre></details>'''\n");
    let model = replay_script(
        home.path(),
        json!([
            plan_turn(&["Write the page", "Describe it in the readme"]),
            {"content": format!("I will write {fetch_me} now {script}"), "tool_calls": [{"name": "write_file", "arguments": {"path": "page.py", "content": file}}]},
            {"content": "", "tool_calls": [{"name": "finish", "arguments": {"summary": format!("done {script}")}}]},
            {"content": "", "tool_calls": [{"name": "write_file", "arguments": {"path": "README.md", "content": "# page\n"}}]},
            {"content": "", "tool_calls": [{"name": "finish", "arguments": {"summary": "described"}}]}
        ]),
    );
    let task = format!("Write page.py {script}");
    let output = agent(home.path())
        .args([
            "run", &task, "--json", "--check", "true", "--model", &model, "--repo",
        ])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = events(&output);
    let commits = of_kind(&events, "finished")[0]["commits"].clone();
    assert_eq!(
        commits.as_array().unwrap().len(),
        2,
        "{}",
        describe(&output)
    );
    let commit = commits[0].as_str().unwrap().to_string();

    let page = home.path().join("report.html");
    let written = agent(home.path())
        .args(["log", "last", "--html"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(written.status.code(), Some(0), "{}", describe(&written));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("src=\"http"),
        "the page loads no external asset"
    );

    let dom = rendered_dom(&page, home.path());
    assert!(dom.contains("<title>agent run: Write page.py"), "{dom}");
    // Hostile markup is text: no script or image element exists, and the title was not rewritten.
    assert!(!dom.contains("<script"), "a script element was created");
    assert!(!dom.contains("<img"), "an img element was created");
    assert!(!dom.contains("pwned</title>"));
    assert!(dom.contains("&lt;script&gt;document.title="));
    // The parts: planning plus two steps, a chart bar of each kind per part, the plan's steps, the
    // commit (linked from the outcome) with its coloured diff, the checks and the calls.
    assert_eq!(dom.matches("<section class=\"step\"").count(), 3, "{dom}");
    assert_eq!(dom.matches("class=\"bar tokens\"").count(), 3);
    assert_eq!(dom.matches("class=\"bar time\"").count(), 3);
    assert!(
        dom.contains("<b>Write the page</b>") && dom.contains("<b>Describe it in the readme</b>")
    );
    assert!(dom.contains(&format!("id=\"commit-{commit}\"")));
    assert!(dom.contains(&format!("href=\"#commit-{commit}\"")));
    assert!(
        dom.contains("<span class=\"add\">+html = '''&lt;img"),
        "{dom}"
    );
    assert!(dom.contains("class=\"check pass\""));
    assert!(dom.contains("<summary>write_file <code>{\"path\":\"page.py\"}</code>"));
    assert!(dom.contains("Outcome: Finished"));

    assert!(
        listener.accept().is_err(),
        "the browser fetched an address from the run's content"
    );
}

#[test]
fn html_needs_a_run_and_a_writable_place() {
    let home = tempfile::tempdir().unwrap();
    let output = agent(home.path())
        .args(["log", "--html", "x.html"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let output = agent(home.path())
        .args(["log", "nosuchrun", "--html", "x.html"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(!home.path().join("x.html").exists());
}
