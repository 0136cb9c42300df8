#!/usr/bin/env python3
"""Tool-call figures of an `agent eval --out DIR` run, read from each task's run log:

    scripts/eval-call-stats.py DIR [DIR ...]

Per DIR: tasks solved, model turns, % of turns that made a valid call (one call, parsed; turns asked
for plain text, offered no tool, as the whole-file first try is, are not counted there), edit calls
(apply_patch, write_file, the whole-file try's writes included) and % of them that applied, tokens, and
wall time per task. Results of
a recent `agent eval` carry these figures; for older ones they are read from the run logs,
where `agent run` keeps them ($XDG_STATE_HOME/agent/runs, else ~/.local/state/agent/runs).
"""

import json
import os
import sys

RUNS = os.path.join(os.environ.get("XDG_STATE_HOME", os.path.expanduser("~/.local/state")), "agent", "runs")
EDITS = {"apply_patch", "write_file"}


def main():
    print("| run | solved | turns | valid calls | edit calls applied | tokens | wall time per task |")
    print("|---|---|---|---|---|---|---|")
    for out in sys.argv[1:]:
        results = [json.loads(line) for line in open(os.path.join(out, "results.jsonl")) if line.strip()]
        turns = calls = valid = edits = applied = tokens = wall = 0
        for result in results:
            tokens += result.get("tokens") or 0
            wall += (result.get("wall_ms") or 0) / 1000
            if "call_turns" in result:
                # `agent eval` keeps these figures in results.jsonl itself (no run log needed).
                turns += result.get("turns") or 0
                calls += result["call_turns"]
                valid += result.get("valid_calls") or 0
                edits += result.get("edit_calls") or 0
                applied += result.get("edits_applied") or 0
                continue
            log = os.path.join(RUNS, result.get("run_id") or "", "events.jsonl")
            if not os.path.exists(log):
                continue
            offered = True
            for event in map(json.loads, open(log)):
                if event["event"] == "model_request":
                    offered = bool(event.get("tools"))
                elif event["event"] == "model_turn":
                    turns += 1
                    calls += offered
                    valid += offered and len(event.get("tool_calls") or []) == 1
                elif event["event"] == "tool_result" and event.get("name") in EDITS:
                    edits += 1
                    applied += bool(event.get("ok"))
        solved = sum(bool(r.get("solved")) for r in results)
        pct = lambda a, b: f"{100 * a / b:.0f}%" if b else "-"
        print(f"| {out} | {solved} of {len(results)} | {turns} | {pct(valid, calls)} | "
              f"{applied} of {edits} ({pct(applied, edits)}) | {tokens:,} | {wall / max(len(results), 1):.0f} s |")


if __name__ == "__main__":
    main()
