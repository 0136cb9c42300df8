#!/usr/bin/env python3
"""Make the fixed evaluation slice for small models: bug-fix tasks and easy exercises, seeded.

    scripts/make-eval-slice.py --eval ../shared/eval --out /tmp/slice.jsonl            # 24 tasks
    scripts/make-eval-slice.py --eval ../shared/eval --out s.jsonl --python 2 --rust 1 --easy 0

Whole Exercism exercises are beyond a 1.5B model in any harness, so a slice that tells harnesses
apart needs tasks such a model can solve. A **bug-fix task** starts from an exercise's reference
solution (which passes its tests) with exactly one bug injected into a solution file:

  - `flip-comparison`: `<` <-> `<=`, `>` <-> `>=`, `==` <-> `!=`
  - `flip-arithmetic`: binary `+` <-> `-`, `*` -> `+`
  - `off-by-one`:      an integer literal n -> n + 1 (or 1 -> 0)
  - `flip-boolean`:    `True`/`False`, `and`/`or` (Python); `true`/`false`, `&&`/`||` (Rust)

Candidates are every such site on a code line (comments, strings and `use`/`import` lines are
skipped), taken in an order drawn from the seed; the first one after which the task's tests still
*run* but at least one test *fails* is kept (a compile error or a broken import is not a bug-fix
task). The instructions name only the failing test(s), as a bug report would; the tests are the
exercise's own and `test_files` lists them, so a judge restores them before judging. The bug, its
line and the operator are recorded under `bug` (never shown to a model).

The **easy exercises** are whole exercises of difficulty <= 2, unchanged, drawn with the same seed.

Reproducible: the same --seed and the same ../shared/eval give the same file byte for byte. The
tests run here, outside any sandbox, on reference code and on one-token changes of it; Rust tasks
are built offline (`cargo test --offline`), so dependencies must be in the cargo cache.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

MUTATIONS = [
    ("flip-comparison", re.compile(r"(?<![<>=!-])(<=|>=|==|!=|<|>)(?![<>=])"),
     {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}),
    ("flip-arithmetic", re.compile(r"(?<=[\w\)\]]) ([+\-*]) (?=[\w\(])"),
     {"+": "-", "-": "+", "*": "+"}),
    ("off-by-one", re.compile(r"(?<![\w.])(\d+)(?![\w.])"), None),
    ("flip-boolean", re.compile(r"\b(True|False|and|or|true|false)\b|(&&|\|\|)"),
     {"True": "False", "False": "True", "and": "or", "or": "and", "true": "false",
      "false": "true", "&&": "||", "||": "&&"}),
]


def code_part(line, language):
    """The line up to a comment, or None for lines that are not code worth mutating."""
    stripped = line.strip()
    if not stripped:
        return None
    if language == "python":
        if stripped.startswith(("#", "import ", "from ", "@", '"""', "'''")):
            return None
        return line.split("#", 1)[0]
    if stripped.startswith(("//", "use ", "#[", "///", "//!", "mod ", "extern ")):
        return None
    return line.split("//", 1)[0]


def in_string(text, index, language):
    """Whether `index` of a code fragment sits inside a string literal (quotes counted; in Rust
    only double quotes, since `'` also starts lifetimes)."""
    before = text[:index]
    if before.count('"') % 2 == 1:
        return True
    return language == "python" and before.count("'") % 2 == 1


def candidates(path, source, language):
    """Every (path, line number, start, end, replacement, kind) site of one mutation."""
    out = []
    for number, line in enumerate(source.split("\n")):
        code = code_part(line, language)
        if code is None:
            continue
        for kind, pattern, table in MUTATIONS:
            if kind == "flip-boolean" and language == "python" and ("&&" in code or "||" in code):
                continue
            for m in pattern.finditer(code):
                token = m.group(0).strip()
                start = m.start(0) + m.group(0).index(token)
                if in_string(code, start, language):
                    continue
                if kind == "off-by-one":
                    new = "0" if token == "1" else str(int(token) + 1)
                elif kind == "flip-arithmetic" and language == "rust" and code[:start].rstrip().endswith("->"):
                    continue
                else:
                    if token not in table:
                        continue
                    if kind == "flip-comparison" and language == "rust" and token in ("<", ">"):
                        continue  # generics and closures: too often not a comparison
                    if kind == "flip-comparison" and language == "python" and token in ("<", ">") \
                            and "->" in code:
                        continue
                    new = table[token]
                out.append((path, number, start, start + len(token), new, kind))
    return out


def apply(files, site):
    path, number, start, end, new, _ = site
    lines = files[path].split("\n")
    line = lines[number]
    lines[number] = line[:start] + new + line[end:]
    changed = dict(files)
    changed[path] = "\n".join(lines)
    return changed, line.strip(), lines[number].strip()


def run_tests(task, files, timeout):
    """(exit status, output) of the task's test command on `files`."""
    with tempfile.TemporaryDirectory(prefix="eval-slice-") as tmp:
        for path, content in files.items():
            full = os.path.join(tmp, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(content)
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"))
        try:
            p = subprocess.run(task["test_command"], shell=True, cwd=tmp, env=env, timeout=timeout,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except subprocess.TimeoutExpired:
            return None, "timeout"
        return p.returncode, p.stdout


def failing_tests(language, output):
    """Names of failing tests, or [] when the run did not get as far as failing assertions."""
    if language == "python":
        if "ERROR:" in output and "FAIL:" not in output:
            return []
        return sorted(set(re.findall(r"^FAIL: (\w+) \(", output, re.M)))
    if "error[E" in output or "could not compile" in output:
        return []
    return sorted(set(re.findall(r"^test (\S+) \.\.\. FAILED$", output, re.M)))


def bugfix_task(task, rng, timeout):
    language = task["language"]
    files = dict(task["files"])
    files.update(task["reference"])
    status, output = run_tests(task, files, timeout)
    if status != 0:
        return None  # the reference does not pass here (e.g. a dependency missing offline)
    sites = []
    for path in sorted(task["reference"]):
        if path in task.get("test_files", []):
            continue
        sites += candidates(path, files[path], language)
    rng.shuffle(sites)
    for site in sites[:40]:
        mutated, before, after = apply(files, site)
        status, output = run_tests(task, mutated, timeout)
        if status in (0, None):
            continue
        failed = failing_tests(language, output)
        if not failed:
            continue
        name = task["id"].split("/", 1)[1]
        shown = ", ".join(f"`{t}`" for t in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        count = "This test fails" if len(failed) == 1 else "These tests fail"
        instructions = (f"# Fix a bug in {name}\n\n{count} when running `{task['test_command']}`: "
                        f"{shown}{more}. The tests are right; find the bug in the code and fix it without "
                        "changing the tests.\n")
        return {
            "id": f"bugfix-{language}/{name}",
            "language": language,
            "difficulty": 1,
            "instructions": instructions,
            "files": mutated,
            "solution_files": [site[0]],
            "test_files": task.get("test_files", []),
            "test_command": task["test_command"],
            "reference": {p: files[p] for p in task["reference"]},
            "bug": {"kind": site[5], "file": site[0], "line": site[1] + 1, "from": before, "to": after},
            "origin": f"{task['id']} with one injected bug (scripts/make-eval-slice.py)",
        }
    return None


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description="Make the seeded evaluation slice (see the docstring).")
    ap.add_argument("--eval", required=True, help="the shared eval folder (exercism-*.jsonl)")
    ap.add_argument("--out", required=True, help="JSONL file to write")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--python", type=int, default=8, help="Python bug-fix tasks")
    ap.add_argument("--rust", type=int, default=4, help="Rust bug-fix tasks")
    ap.add_argument("--easy", type=int, default=12, help="easy whole exercises (difficulty <= 2)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per test run")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pools = {
        "python": load(os.path.join(args.eval, "exercism-python.jsonl")),
        "rust": load(os.path.join(args.eval, "exercism-rust.jsonl")),
    }
    if args.rust and not shutil.which("cargo"):
        raise SystemExit("make-eval-slice: Rust tasks need cargo on PATH")
    out, used = [], set()
    for language, wanted in (("python", args.python), ("rust", args.rust)):
        pool = sorted(pools[language], key=lambda t: t["id"])
        rng.shuffle(pool)
        made = 0
        for task in pool:
            if made == wanted:
                break
            made_task = bugfix_task(task, rng, args.timeout)
            if made_task is None:
                print(f"make-eval-slice: {task['id']}: no bug found that fails a test; skipped", file=sys.stderr)
                continue
            print(f"make-eval-slice: {made_task['id']}: {made_task['bug']['kind']} at "
                  f"{made_task['bug']['file']}:{made_task['bug']['line']}", file=sys.stderr)
            out.append(made_task)
            used.add(task["id"])
            made += 1
        if made < wanted:
            raise SystemExit(f"make-eval-slice: only {made} of {wanted} {language} bug-fix tasks could be made")
    easy = sorted((t for pool in pools.values() for t in pool
                   if t.get("difficulty", 10) <= 2 and t["id"] not in used), key=lambda t: t["id"])
    rng.shuffle(easy)
    if len(easy) < args.easy:
        raise SystemExit(f"make-eval-slice: only {len(easy)} easy exercises, {args.easy} wanted")
    out += sorted(easy[:args.easy], key=lambda t: t["id"])
    with open(args.out + ".part", "w") as f:
        for task in out:
            f.write(json.dumps(task, sort_keys=True) + "\n")
    os.replace(args.out + ".part", args.out)
    print(f"make-eval-slice: {len(out)} tasks in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
