#!/usr/bin/env bash
# The 24-task slice of docs/benchmarks.md, this agent against Aider on the same model, resumable across
# machines: results are kept in the repository (docs/results/slice24/), so each sitting runs the next
# tasks and commits what it measured.
#
#   scripts/slice-compare.sh 8     # the first 8 tasks of the slice: those not yet in docs/results/slice24/
#
# Both harnesses run in the same period on the same machine, one core each: `agent eval` (embedded
# model, RAYON_NUM_THREADS=1, one task at a time) beside scripts/aider-eval.py (Aider's whole-file and
# then its diff format, 2 tries each, against llama-cpp-python's server on one thread, same GGUF).
# Needs what scripts/setup.sh installs, and Aider in its own venv:
#   python3 -m venv ~/.cache/agent/aider-venv && ~/.cache/agent/aider-venv/bin/pip install aider-chat==0.86.2
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
limit="${1:?usage: scripts/slice-compare.sh N   (run the slice up to its N-th task)}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/agent"
model="${MODEL:-$cache/models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf}"
results="$here/docs/results/slice24"
agent="${AGENT:-agent}"
port="${PORT:-8012}"
time_limit="${TIME_LIMIT:-600}"
slice="$(mktemp -d)/slice.jsonl"
mkdir -p "$results"/{agent,aider-whole,aider-diff}

scripts/make-eval-slice.py --eval ../shared/eval --out "$slice" 2>/dev/null

"$cache/llama-venv/bin/python" -m llama_cpp.server --model "$model" --model_alias local --n_ctx 8192 \
  --n_threads 1 --port "$port" >"$results/../llama-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  sleep 1
done

(
  for format in whole diff; do
    scripts/aider-eval.py "$slice" --server "http://127.0.0.1:$port/v1" --edit-format "$format" --tries 2 \
      --limit "$limit" --time-limit "$time_limit" --out "$results/aider-$format"
  done
) >"$results/../aider.log" 2>&1 &
aider=$!

RAYON_NUM_THREADS=1 "$agent" eval "$slice" --model "$model" --limit "$limit" --time-limit "$time_limit" -j 1 \
  --out "$results/agent" || true
wait "$aider" || true
scripts/eval-call-stats.py "$results/agent"
for format in whole diff; do
  printf 'aider %s: ' "$format"
  python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(sum(x["passed"] for x in r), "of", len(r), "solved,", round(sum(x["seconds"] for x in r)/max(len(r),1)), "s per task")' \
    "$results/aider-$format/results.jsonl"
done
