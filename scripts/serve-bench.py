#!/usr/bin/env python3
"""Benchmark a shared model server the way `agent serve` is used: several agent-style conversations
at once, and an editor's code completions while two of them run.

Talks OpenAI chat completions and /v1/completions (with `suffix`) to both servers, so `agent serve`
and llama-cpp-python's server are measured with the same requests:

  # agent serve (a key made with `agent serve user add bench`) and llama.cpp's server, same GGUF:
  agent serve --model M.gguf --listen 127.0.0.1:8090 &
  ~/.cache/agent/llama-venv/bin/python -m llama_cpp.server --model M.gguf --n_ctx 8192 --port 8091 &
  scripts/serve-bench.py --server agent=http://127.0.0.1:8090=KEY --server llama.cpp=http://127.0.0.1:8091

Each conversation is a system prompt and a task with a short file (distinct per client, so clients
share only the system prompt), then `--turns` turns, each adding the reply and a tool-result-like
message. Reports, per server: aggregate completion tokens/s with 1, 2 and 4 concurrent
conversations, and completion latency p50/p95 idle and while 2 conversations run. Standard library
only.
"""

import argparse
import json
import statistics
import threading
import time
import urllib.request

SYSTEM = (
    "You are a careful software engineer working in a git repository, one step of a plan at a time.\n"
    "Every reply is exactly one tool call. Paths are relative to the repository root.\n"
    "Look at the relevant files, then edit them: a short file by writing it whole with write_file, a "
    "long one with apply_patch (a unified diff), a new file with write_file. When the step is done, "
    "call finish with a short summary: the step's check then runs, and a passing check commits the step.\n"
)


def source(i):
    lines = [f"def f{i}_{k}(x):\n    return x * {k} + {i}\n" for k in range(12)]
    return "".join(lines)


def post(url, path, key, body, timeout=900):
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def conversation(url, key, i, turns, max_tokens, out):
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Task: add a docstring to every function of m{i}.py.\n\nm{i}.py:\n{source(i)}"},
    ]
    for t in range(turns):
        reply = post(url, "/v1/chat/completions", key, {"model": "m", "messages": messages, "max_tokens": max_tokens, "temperature": 0})
        out.append(reply["usage"]["completion_tokens"])
        messages.append({"role": "assistant", "content": reply["choices"][0]["message"]["content"] or ""})
        messages.append({"role": "user", "content": f"Tool result {t}: ok. Go on with the next function."})


def throughput(url, key, clients, turns, max_tokens):
    tokens, threads = [], []
    started = time.monotonic()
    for i in range(clients):
        th = threading.Thread(target=conversation, args=(url, key, i + clients * 100, turns, max_tokens, tokens))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    return sum(tokens) / (time.monotonic() - started)


def completion_latencies(url, key, n, stop):
    latencies = []
    k = 0
    while len(latencies) < n and not stop():
        prefix = f"def area_{k}(width, height):\n    return "
        started = time.monotonic()
        post(url, "/v1/completions", key, {"prompt": prefix, "suffix": "\n\n\ndef main():\n    pass\n", "max_tokens": 16, "stop": ["\n"], "temperature": 0})
        latencies.append(time.monotonic() - started)
        k += 1
    return latencies


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", required=True, help="NAME=URL[=KEY]")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--completions", type=int, default=6)
    parser.add_argument("--load-turns", type=int, default=4, help="turns of each of the 2 conversations running while completions are timed")
    parser.add_argument("--concurrency", default="1,2,4")
    args = parser.parse_args()
    for spec in args.server:
        name, url, *key = spec.split("=", 2)
        key = key[0] if key else None
        row = {"server": name}
        for c in [int(x) for x in args.concurrency.split(",")]:
            row[f"tok/s x{c}"] = round(throughput(url, key, c, args.turns, args.max_tokens), 2)
        idle = completion_latencies(url, key, args.completions, lambda: False)
        done = threading.Event()
        load = threading.Thread(target=lambda: (throughput(url, key, 2, args.load_turns, args.max_tokens), done.set()))
        load.start()
        time.sleep(1)
        busy = completion_latencies(url, key, args.completions, done.is_set)
        load.join()
        row.update({
            "completion p50 idle s": round(statistics.median(idle), 2),
            "completion p95 idle s": round(pct(idle, 95), 2),
            "completion p50 loaded s": round(statistics.median(busy), 2) if busy else None,
            "completion p95 loaded s": round(pct(busy, 95), 2) if busy else None,
            "completions under load": len(busy),
        })
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
