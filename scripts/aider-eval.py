#!/usr/bin/env python3
"""Run Aider on eval tasks (the JSONL of ../shared/eval or of scripts/make-eval-slice.py), the way Aider's
own benchmark does, so that `agent eval` can be compared with it on the same model and tasks.

    scripts/aider-eval.py /tmp/slice.jsonl --server http://127.0.0.1:8012/v1 \\
        --edit-format whole --tries 2 --filter 'bugfix-python/*' --out /tmp/aider-whole

Per task: the task's files are written to a fresh folder (a git repository, as Aider expects); Aider is
given the solution files to edit and the test files read-only, with the task's instructions and the
prompt of Aider's benchmark; its edits are applied; the tests are restored and the test command run.
On a failure and while tries remain, Aider is asked again with the tail of the test output, as in
Aider's benchmark. A task is solved when the restored tests pass. One JSON line per task is appended
to OUT/results.jsonl as soon as it is judged; running again with the same --out skips tasks already
there (resumable, like `agent eval --out`).

The model is whatever the server at --server serves: the set-up's llama-cpp-python server
(`$XDG_CACHE_HOME/agent/llama-venv/bin/python -m llama_cpp.server --model FILE.gguf`) on the same GGUF
that `agent eval --model FILE.gguf` runs in-process. Aider itself (the `aider-chat` package) goes in a
venv of its own: --aider names its executable. Nothing here is used by the agent or its tests.
"""

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
import time

# Aider's benchmark prompts (benchmark/prompts.py in the aider repository), in substance.
INSTRUCTIONS_ADDENDUM = """
####

Use the above instructions to modify the supplied files: {file_list}
Don't change the names of existing functions or classes, as they may be referenced from other code like unit tests, etc.
Only use standard libraries, don't suggest installing any packages.
"""
TEST_FAILURES = """
####

See the testing errors above.
The tests are correct, don't try and change them.
Fix the code in {file_list} to resolve the errors.
"""


def run_tests(task, folder, timeout):
    """Restore the tests, run the task's test command; (passed, output tail)."""
    for path in task["test_files"]:
        with open(os.path.join(folder, path), "w") as f:
            f.write(task["files"][path])
    try:
        done = subprocess.run(task["test_command"], shell=True, cwd=folder, capture_output=True,
                              text=True, timeout=timeout)
        output = (done.stdout + done.stderr)[-4000:]
        return done.returncode == 0, output
    except subprocess.TimeoutExpired:
        return False, f"the tests timed out after {timeout} s"


def aider_once(args, folder, task, message, log):
    """One Aider invocation; returns its wall time in seconds."""
    command = [
        args.aider, "--model", f"openai/{args.model_name}", "--openai-api-base", args.server,
        "--openai-api-key", "none", "--edit-format", args.edit_format,
        "--yes-always", "--no-git", "--no-auto-commits", "--no-pretty", "--no-stream",
        "--no-show-model-warnings", "--no-check-update", "--no-analytics", "--map-tokens", "0",
        "--timeout", str(args.request_timeout),
        "--message", message,
    ]
    command += task["solution_files"]
    for path in task["test_files"]:
        command += ["--read", path]
    started = time.monotonic()
    env = dict(os.environ, AIDER_ANALYTICS="false")
    with open(log, "a") as out:
        try:
            subprocess.run(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=args.time_limit, env=env)
        except subprocess.TimeoutExpired:
            out.write(f"\n[aider-eval: stopped after {args.time_limit} s]\n")
    return time.monotonic() - started


def run_task(args, task, out_dir):
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "task")
        for path, content in task["files"].items():
            full = os.path.join(folder, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(content)
        subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
        files = ", ".join(task["solution_files"])
        message = task["instructions"] + INSTRUCTIONS_ADDENDUM.format(file_list=files)
        log = os.path.join(out_dir, "logs", task["id"].replace("/", "__") + ".log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        seconds, passed, tries, output = 0.0, False, 0, ""
        for tries in range(1, args.tries + 1):
            seconds += aider_once(args, folder, task, message, log)
            passed, output = run_tests(task, folder, 600)
            if passed:
                break
            message = output + TEST_FAILURES.format(file_list=files)
        return {"id": task["id"], "passed": passed, "tries": tries, "seconds": round(seconds, 1),
                "edit_format": args.edit_format, "test_output_tail": None if passed else output[-600:]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", help="a JSONL file of tasks")
    parser.add_argument("--server", required=True, help="the OpenAI-compatible base URL (…/v1)")
    parser.add_argument("--model-name", default="local", help="the model name the server answers to")
    parser.add_argument("--aider", default=os.path.expanduser("~/.cache/agent/aider-venv/bin/aider"))
    parser.add_argument("--edit-format", default="whole", choices=["whole", "diff", "udiff", "diff-fenced"])
    parser.add_argument("--tries", type=int, default=2)
    parser.add_argument("--filter", help="only tasks whose id matches this glob")
    parser.add_argument("--limit", type=int, help="only the first N matching tasks")
    parser.add_argument("--time-limit", type=int, default=600, help="seconds per Aider invocation")
    parser.add_argument("--request-timeout", type=int, default=600)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    tasks = [json.loads(line) for line in open(args.tasks) if line.strip()]
    if args.filter:
        tasks = [t for t in tasks if fnmatch.fnmatch(t["id"], args.filter)]
    if args.limit:
        tasks = tasks[: args.limit]
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "results.jsonl")
    done = set()
    if os.path.exists(results):
        done = {json.loads(line)["id"] for line in open(results) if line.strip()}
    for task in tasks:
        if task["id"] in done:
            continue
        result = run_task(args, task, args.out)
        with open(results, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"aider-eval: {task['id']}: {'passed' if result['passed'] else 'failed'} "
              f"({result['tries']} tries, {result['seconds']} s)", file=sys.stderr)
    rows = [json.loads(line) for line in open(results) if line.strip()]
    solved = sum(r["passed"] for r in rows)
    print(f"{solved} passed, {len(rows) - solved} failed")


if __name__ == "__main__":
    main()
