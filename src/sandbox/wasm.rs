//! The WebAssembly sandbox for plugin tools: run one WASI (preview 1) module with wasmtime under a
//! capability model — the worktree pre-opened read-only or read-write as `.`, nothing else of the file
//! system, no sockets, no environment, no sleeping; an epoch deadline and a memory cap stop it.
//!
//! Arguments go in on stdin, the result comes back from stdout, errors from stderr and the exit code.
//! Compiled modules are cached on disk (`.cwasm`, keyed by the module's hash and the engine's
//! compatibility hash) and in memory, so only the first call of a module pays for compilation.
//!
//! This module never decides what a plugin is for or what the model sees; `tools::plugin` does.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::WorkspaceAccess;
use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{DirPerms, FilePerms, I32Exit, WasiCtxBuilder};

/// Most bytes a plugin may write to stdout / stderr before it is stopped.
pub const STDOUT_CAPACITY: usize = 8 << 20;
const STDERR_CAPACITY: usize = 256 << 10;
/// WASI errno `nosys`: what a plugin gets when it asks to sleep or poll.
const ERRNO_NOSYS: i32 = 52;

/// One plugin call.
#[derive(Debug, Clone)]
pub struct WasmRun<'a> {
    /// Used in messages ("plugin outline ...").
    pub name: &'a str,
    pub module: &'a Path,
    /// Pre-opened as `.`; nothing else is visible.
    pub workspace: &'a Path,
    pub access: WorkspaceAccess,
    pub stdin: Vec<u8>,
    pub time_limit: Duration,
    pub memory_limit: u64,
}

/// How a call ended (when the module ran at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmOutcome {
    /// 0 when the module returned normally.
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Whether the compiled module came from a cache (memory or disk) rather than a fresh compile.
    pub cached: bool,
    pub elapsed: Duration,
}

/// Why a call produced no outcome. The text is for the model and the user: it says what happened.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("plugin {name}: cannot read its module {path}: {reason}")]
    Module {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin {name}: cannot set up its sandbox: {reason}")]
    Setup { name: String, reason: String },
    #[error("plugin {name} was stopped: it ran past its time limit of {limit:?}")]
    TimedOut { name: String, limit: Duration },
    #[error(
        "plugin {name} was stopped: it asked for {asked} of memory, over its limit of {limit}"
    )]
    OutOfMemory {
        name: String,
        asked: String,
        limit: String,
    },
    #[error("plugin {name} was stopped: it wrote more than {limit} bytes of output")]
    OutputTooLarge { name: String, limit: usize },
    #[error("plugin {name} crashed: {reason}{stderr}")]
    Trapped {
        name: String,
        reason: String,
        stderr: String,
    },
}

/// The process-wide engine and the compiled-module cache.
struct Host {
    engine: Engine,
    modules: Mutex<HashMap<[u8; 32], Module>>,
    cache_dir: Option<PathBuf>,
}

fn host() -> Result<&'static Host, String> {
    static HOST: OnceLock<Result<Host, String>> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e}"))?;
        let cache_dir = std::env::var_os("AGENT_PLUGIN_CACHE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| Some(crate::dirs::cache_dir().join("plugins")));
        Ok(Host {
            engine,
            modules: Mutex::new(HashMap::new()),
            cache_dir,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The file a compiled module is cached in: `<cache>/<sha256 of module + engine>.cwasm`.
fn cwasm_path(host: &Host, module_hash: &[u8; 32]) -> Option<PathBuf> {
    // The engine's compatibility hash is fed straight into SHA-256 (not `DefaultHasher`, whose output
    // may change between Rust releases), so the on-disk key is stable for the same engine.
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // never asked: the digest is read from the inner state
        }
    }
    let mut key = Sha256Hasher(Sha256::new());
    key.0.update(module_hash);
    host.engine.precompile_compatibility_hash().hash(&mut key);
    let mut key = key.0;
    key.update(env!("CARGO_PKG_VERSION").as_bytes());
    let hex: String = key.finalize().iter().map(|b| format!("{b:02x}")).collect();
    host.cache_dir
        .as_ref()
        .map(|d| d.join(format!("{hex}.cwasm")))
}

/// The compiled module for `path`, from memory, the disk cache, or a fresh compile (which is then
/// cached). Returns whether it was cached.
fn load_module(host: &Host, name: &str, path: &Path) -> Result<(Module, bool), WasmError> {
    let module_error = |reason: String| WasmError::Module {
        name: name.into(),
        path: path.into(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| module_error(e.to_string()))?;
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    if let Some(module) = host.modules.lock().ok().and_then(|m| m.get(&hash).cloned()) {
        return Ok((module, true));
    }
    let cached_file = cwasm_path(host, &hash);
    if let Some(file) = cached_file.as_ref().filter(|f| f.is_file()) {
        // SAFETY: the file was written by `precompile_module` of an engine with the same compatibility
        // hash (it is part of the name) into the agent's own cache directory; wasmtime checks the
        // header again and refuses incompatible artifacts, in which case the module is recompiled.
        if let Ok(module) = unsafe { Module::deserialize_file(&host.engine, file) } {
            remember(host, hash, &module);
            return Ok((module, true));
        }
    }
    let compiled = host
        .engine
        .precompile_module(&bytes)
        .map_err(|e| module_error(format!("not a valid WebAssembly module: {e}")))?;
    // SAFETY: `compiled` was produced just now by this engine.
    let module = unsafe { Module::deserialize(&host.engine, &compiled) }
        .map_err(|e| module_error(e.to_string()))?;
    if let Some(file) = cached_file {
        // A cache that cannot be written only costs the next call a compile.
        let _ = write_atomically(&file, &compiled);
    }
    remember(host, hash, &module);
    Ok((module, false))
}

fn remember(host: &Host, hash: [u8; 32], module: &Module) {
    if let Ok(mut modules) = host.modules.lock() {
        modules.insert(hash, module.clone());
    }
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// Per-call state: the WASI context and the memory accounting.
struct State {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

struct Limiter {
    memory_limit: u64,
    /// The largest memory size the plugin asked for and was refused.
    refused: Option<u64>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit {
            self.refused = Some(self.refused.unwrap_or(0).max(desired as u64));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element is a pointer; count tables against the same budget.
        Ok((desired as u64).saturating_mul(8) <= self.memory_limit)
    }
}

/// "64 MiB", "1.0 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

/// Compile (or fetch from the cache) the module at `path` without running it. Returns whether it was
/// already cached.
pub fn precompile(name: &str, path: &Path) -> Result<bool, WasmError> {
    let host = host().map_err(|reason| WasmError::Setup {
        name: name.into(),
        reason,
    })?;
    load_module(host, name, path).map(|(_, cached)| cached)
}

/// Run one plugin call to its end.
pub fn run(call: &WasmRun<'_>) -> Result<WasmOutcome, WasmError> {
    let started = Instant::now();
    let name = call.name.to_string();
    let setup = |reason: String| WasmError::Setup {
        name: name.clone(),
        reason,
    };
    let host = host().map_err(&setup)?;
    let (module, cached) = load_module(host, call.name, call.module)?;

    let stdout = MemoryOutputPipe::new(STDOUT_CAPACITY);
    let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
    let (dir_perms, file_perms) = match call.access {
        WorkspaceAccess::Read => (DirPerms::READ, FilePerms::READ),
        WorkspaceAccess::Write => (DirPerms::all(), FilePerms::all()),
    };
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdin(MemoryInputPipe::new(call.stdin.clone()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .args(&[call.name])
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder
        .preopened_dir(call.workspace, ".", dir_perms, file_perms)
        .map_err(|e| setup(format!("cannot open {}: {e}", call.workspace.display())))?;
    let mut store = Store::new(
        &host.engine,
        State {
            wasi: builder.build_p1(),
            limiter: Limiter {
                memory_limit: call.memory_limit,
                refused: None,
            },
        },
    );
    store.limiter(|state| &mut state.limiter);
    // The epoch is shared by every call in the process: a watchdog advances it when this call's time is
    // up, and the callback stops only a call whose own deadline has passed.
    let deadline = Instant::now() + call.time_limit;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let engine = host.engine.clone();
    let time_limit = call.time_limit;
    std::thread::Builder::new()
        .name("plugin-watchdog".into())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                finished.recv_timeout(time_limit)
            {
                engine.increment_epoch();
            }
        })
        .map_err(|e| setup(format!("watchdog thread: {e}")))?;

    let mut linker: Linker<State> = Linker::new(&host.engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut State| &mut state.wasi)
        .map_err(|e| setup(e.to_string()))?;
    // Sleeping or waiting on clocks would block the host thread where the epoch deadline cannot reach
    // it: plugins get "not supported" instead.
    linker.allow_shadowing(true);
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "poll_oneoff",
            |_: i32, _: i32, _: i32, _: i32| -> i32 { ERRNO_NOSYS },
        )
        .map_err(|e| setup(e.to_string()))?;

    let result = linker
        .instantiate(&mut store, &module)
        .and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
    drop(done);
    let refused = store.data().limiter.refused;
    drop(store);
    let stdout = stdout.contents().to_vec();
    let stderr = stderr.contents().to_vec();
    let exit_code = match result {
        Ok(()) => 0,
        Err(error) => {
            if let Some(exit) = error.downcast_ref::<I32Exit>() {
                exit.0
            } else if let Some(asked) = refused {
                return Err(WasmError::OutOfMemory {
                    name,
                    asked: human_bytes(asked),
                    limit: human_bytes(call.memory_limit),
                });
            } else if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                return Err(WasmError::TimedOut {
                    name,
                    limit: call.time_limit,
                });
            } else if stdout.len() >= STDOUT_CAPACITY {
                return Err(WasmError::OutputTooLarge {
                    name,
                    limit: STDOUT_CAPACITY,
                });
            } else {
                let text = String::from_utf8_lossy(&stderr);
                let tail = text.trim();
                return Err(WasmError::Trapped {
                    name,
                    // The trap itself, not wasmtime's whole backtrace: the model needs what happened.
                    reason: match error.downcast_ref::<Trap>() {
                        Some(Trap::UnreachableCodeReached) => {
                            "it aborted (a wasm `unreachable` trap: how a Rust panic ends)".into()
                        }
                        Some(trap) => trap.to_string(),
                        None => format!("{error}")
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    },
                    stderr: if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; it printed: {}", tail_chars(tail, 2000))
                    },
                });
            }
        }
    };
    Ok(WasmOutcome {
        exit_code,
        stdout,
        stderr,
        cached,
        elapsed: started.elapsed(),
    })
}

fn tail_chars(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    if count <= max {
        return text;
    }
    let skip = text.char_indices().nth(count - max).map_or(0, |(i, _)| i);
    &text[skip..]
}
