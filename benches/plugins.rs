//! Plugin call latency (criterion): a cold call (the module compiled with Cranelift, then run), a warm
//! call (the compiled module already in memory), and a call in a new `agent` process that finds the
//! compiled module in the on-disk `.cwasm` cache, next to the same process doing nothing, for its start-up
//! cost.
//!
//! Reproduce: `scripts/setup.sh` (builds tools/), then `cargo bench --bench plugins`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agent::sandbox::none::NoSandbox;
use agent::tools::plugin::{self, Origin};
use agent::tools::{ToolContext, Toolbox};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

/// The module with a custom section holding `n` appended: valid, but a different hash, so every
/// variant is compiled afresh (a custom section may appear at the end of a module).
fn variant(module: &[u8], n: u64) -> Vec<u8> {
    let name = b"bench";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = module.to_vec();
    out.push(0); // custom section id
    out.push(size as u8); // LEB128, < 128
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("AGENT_PLUGIN_CACHE", cache.path());
    let outline = plugin::load(&root.join("tools/outline"), Origin::Repository).unwrap();
    assert!(
        outline.module_present(),
        "build the plugins first: scripts/setup.sh (or cargo build --release --target wasm32-wasip1 \
         --manifest-path tools/Cargo.toml --target-dir tools/target)"
    );
    let ctx = ToolContext {
        root,
        sandbox: &NoSandbox,
        command_timeout: Duration::from_secs(10),
        output_limit: 16 * 1024,
        command_env: &[],
    };
    let args = json!({"path": "src/agent/mod.rs"});
    let module = std::fs::read(&outline.module).unwrap();
    let scratch = tempfile::tempdir().unwrap();

    let mut group = c.benchmark_group("plugin call (outline of src/agent/mod.rs)");
    group.sample_size(20);
    let mut n = 0;
    group.bench_function("cold: compile + run", |b| {
        b.iter(|| {
            n += 1;
            let path = scratch.path().join(format!("v{n}.wasm"));
            std::fs::write(&path, variant(&module, n)).unwrap();
            let mut fresh = outline.clone();
            fresh.module = path;
            Toolbox::with_plugins(vec![fresh.clone()])
                .call(&ctx, "outline", &args)
                .unwrap()
        })
    });
    let toolbox = Toolbox::with_plugins(vec![outline.clone()]);
    toolbox.call(&ctx, "outline", &args).unwrap();
    group.bench_function("warm: module in memory", |b| {
        b.iter(|| toolbox.call(&ctx, "outline", &args).unwrap())
    });

    // A new process: the compiled module comes from the disk cache (filled by the calls above).
    let exe = env!("CARGO_BIN_EXE_agent");
    let user_config = tempfile::tempdir().unwrap();
    let spawn = |arguments: &[&str]| {
        let status = Command::new(exe)
            .args(arguments)
            .current_dir(root)
            .env("AGENT_PLUGIN_CACHE", cache.path())
            .env("XDG_CONFIG_HOME", user_config.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "agent {arguments:?} failed");
    };
    let arguments = args.to_string();
    group.bench_function("new process: module from the .cwasm cache", |b| {
        b.iter(|| spawn(&["tools", "call", "outline", &arguments]))
    });
    group.bench_function("new process: `agent --version` (start-up alone)", |b| {
        b.iter(|| spawn(&["--version"]))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
