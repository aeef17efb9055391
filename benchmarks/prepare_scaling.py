"""How test preparation scales with the size of the test source: 10 KB, 100 KB and 1 MB.

The test sources are assert-style, as a public benchmark's extended inputs: 21 asserts, each
calling the function on a large literal list (HumanEval's `def check(candidate)` shape). Timed,
best of `--repeat` runs:

- python: `discover` (the tests' names), `prepare` (discovery and the rewrite of the asserts) and
  `compile_tests` (prepare, then compile: what the host runs for every Python plan, so that the
  judge in the sandbox starts from compiled tests), against the `prepare` it replaces,
  loaded from git at OLD_COMMIT (it names each assert with `ast.get_source_segment`, which
  re-splits the whole source in pure Python on every call: tests x source size);
- every other language with assert-style tests: the runner's `plan` (masking comments and
  strings, finding the assertion lines, rewriting them).

Prints wall and CPU seconds per size (CPU time does not count waiting for a core on a loaded
machine), the old/new ratio and the growth from one size to the next (10x the source: about
10x the time when linear), a second Python series with one assert per 5 KB (where the old
cost, tests x size, grows quadratically), and writes benchmarks/out/prepare_scaling.json
(benchmarks/results/prepare_scaling.json with --record). Goal: roughly linear, python under 1 s
at 1 MB.

    .venv/bin/python benchmarks/prepare_scaling.py [--repeat 3] [--record]
"""

import argparse
import ast
import os
import platform
import random
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_io import add_output_args, write_result  # noqa: E402

from sandbox.execution import Limits  # noqa: E402
from sandbox.harness import python_harness  # noqa: E402
from sandbox.languages import get_runner  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
OLD_COMMIT = "f6cc710"  # the last commit whose prepare named each assert with get_source_segment
ASSERTS = 21


def literal(size: int, rng: random.Random) -> str:
    """A list literal of about `size` characters of integers."""
    return "[" + ", ".join(str(rng.randrange(10**6)) for _ in range(max(1, size // 8))) + "]"


def sources(size: int, asserts: int = ASSERTS, seed: int = 0) -> dict[str, tuple[str, str]]:
    """(program, tests) per language: `asserts` asserts, about `size` characters in all."""
    rng = random.Random(seed)
    each = size // asserts
    values = [literal(each, rng) for _ in range(asserts)]
    braces = [value[1:-1] for value in values]
    python = "def check(candidate):\n" + "".join(
        f"    assert candidate({v}) == {i}\n" for i, v in enumerate(values)
    ) + "\ncheck(count)\n"  # fmt: skip
    cpp = "#include <cassert>\n#include <vector>\nint main() {\n" + "".join(
        f"  assert(count(std::vector<long>{{{b}}}) == {i});\n" for i, b in enumerate(braces)
    ) + "}\n"  # fmt: skip
    java = "public class Main {\n  public static void main(String[] a) {\n" + "".join(
        f"    assert Solution.count(new long[]{{{b}}}) == {i};\n" for i, b in enumerate(braces)
    ) + "  }\n}\n"  # fmt: skip
    js = "const assert = require('node:assert');\n" + "".join(
        f"assert.deepStrictEqual(count({v}), {i});\n" for i, v in enumerate(values)
    )  # fmt: skip
    rust = (
        "fn main() {\n"
        + "".join(f"    assert_eq!(count(vec!{v}), {i});\n" for i, v in enumerate(values))
        + "}\n"
    )
    go = "package main\n\nfunc main() {\n" + "".join(
        f"\tassert(Count([]int{{{b}}}) == {i})\n" for i, b in enumerate(braces)
    ) + "}\n"  # fmt: skip
    return {
        "python": ("def count(values):\n    return 0\n", python),
        "cpp": ("long count(std::vector<long> v) { return 0; }\n", cpp),
        "java": ("class Solution { static long count(long[] v) { return 0; } }\n", java),
        "go": ("package main\n\nfunc Count(v []int) int { return 0 }\n", go),
        "rust": ("fn count(v: Vec<i64>) -> i64 { 0 }\n", rust),
        "javascript": ("function count(v) { return 0; }\n", js),
        "typescript": ("function count(v: number[]): number { return 0; }\n", js),
    }


def old_method(commit: str) -> tuple[str, Callable[[str], list[dict]]]:
    """The replaced `prepare` as it was at `commit` (naming each assert with
    `ast.get_source_segment`, which re-splits the whole source in pure Python on every call),
    loaded from git; or, without git, the same naming loop on today's parser."""
    try:
        source = subprocess.run(
            ["git", "show", f"{commit}:sandbox/harness/python_harness.py"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout  # fmt: skip
        module = types.ModuleType("old_python_harness")
        exec(compile(source, f"{commit}:python_harness.py", "exec"), module.__dict__)  # noqa: S102
        return f"prepare at {commit}", lambda tests: module.prepare(tests)[0]
    except (OSError, subprocess.CalledProcessError):
        return "get_source_segment per assert", _segment_per_assert


def _segment_per_assert(source: str) -> list[dict]:
    tree = python_harness.parse_tests(source)
    tests = []
    for stmt in tree.body:
        if python_harness._is_test_case(stmt) or python_harness._is_test_function(stmt):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Assert) and not isinstance(node.test, ast.Constant):
                text = ast.get_source_segment(source, node.test) or ""
                tests.append({"kind": "assert", "name": f"line {node.lineno}: {python_harness._short(text)}"})
    return tests


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, float]:
    """The fastest of `repeat` runs: (wall seconds, CPU seconds of this process). The CPU time
    does not count the time spent waiting for a core on a loaded machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def growth(seconds: dict[int, float]) -> list[float]:
    """Time ratio from each size to the next (10x the size: ~10 when linear, ~100 quadratic)."""
    sizes = sorted(seconds)
    return [round(seconds[b] / seconds[a], 1) for a, b in zip(sizes, sizes[1:], strict=False)]


def main() -> None:
    """Time every method at every size and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (the best counts)")
    parser.add_argument("--old-commit", default=OLD_COMMIT, help="where the replaced prepare lives")
    parser.add_argument("--old-max-bytes", type=int, default=max(SIZES), help="no old method above")
    add_output_args(parser, "prepare_scaling")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    limits = Limits()
    by_size = {size: sources(size) for size in SIZES}
    old_name, old_prepare = old_method(args.old_commit)
    python: dict = {"bytes": {}, "old_method": old_name}
    for key in ("discover", "prepare", "compile", "old"):
        python[f"{key}_wall_s"], python[f"{key}_cpu_s"] = {}, {}

    def timed(key: str, size: int, work: Callable[[], object], repeat: int) -> str:
        wall, cpu = best_of(repeat, work)
        python[f"{key}_wall_s"][size], python[f"{key}_cpu_s"][size] = round(wall, 4), round(cpu, 4)
        return f"{key} {wall:6.3f} s ({cpu:6.3f} s CPU)"

    for size in SIZES:
        tests = by_size[size]["python"][1]
        names = [t["name"] for t in python_harness.discover(tests)]
        assert len(names) == ASSERTS, len(names)
        python["bytes"][size] = len(tests.encode())
        line = f"python {len(tests) / 1e3:6.0f} KB  "
        line += timed("discover", size, lambda t=tests: python_harness.discover(t), args.repeat) + "  "
        line += timed("prepare", size, lambda t=tests: python_harness.prepare(t), args.repeat) + "  "
        line += timed("compile", size, lambda t=tests: python_harness.compile_tests(t), args.repeat)
        if len(tests) <= args.old_max_bytes:
            assert [t["name"] for t in old_prepare(tests)] == names  # the same tests, the old way
            line += "  " + timed("old", size, lambda t=tests: old_prepare(t), 1)
            line += f"  old/new {python['old_cpu_s'][size] / python['prepare_cpu_s'][size]:6.1f}x (CPU)"
        print(line, flush=True)
    for key in ("discover", "prepare", "compile", "old"):
        if len(python[f"{key}_cpu_s"]) > 1:
            python[f"{key}_growth_cpu"] = growth(python[f"{key}_cpu_s"])
    grown = [key for key in ("discover", "prepare", "compile", "old") if f"{key}_growth_cpu" in python]
    print("python CPU growth per 10x size: " + ", ".join(f"{k} {python[f'{k}_growth_cpu']}" for k in grown))
    results["python"] = python
    # The old cost is tests x source size: with one assert per ~5 KB it grows quadratically.
    many: dict = {"asserts": {}, "prepare_cpu_s": {}, "old_cpu_s": {}}
    for size in SIZES:
        count = max(2, size // 5_000)
        tests = sources(size, asserts=count)["python"][1]
        many["asserts"][size] = count
        many["prepare_cpu_s"][size] = round(
            best_of(args.repeat, lambda t=tests: python_harness.prepare(t))[1], 4
        )
        line = f"python {len(tests) / 1e3:6.0f} KB, {count:3d} asserts: "
        line += f"prepare {many['prepare_cpu_s'][size]:6.3f} s CPU"
        if len(tests) <= args.old_max_bytes:
            many["old_cpu_s"][size] = round(best_of(1, lambda t=tests: old_prepare(t))[1], 4)
            ratio = many["old_cpu_s"][size] / many["prepare_cpu_s"][size]
            line += f"  old {many['old_cpu_s'][size]:7.3f} s CPU  old/new {ratio:6.1f}x"
        print(line, flush=True)
    many["prepare_growth_cpu"] = growth(many["prepare_cpu_s"])
    if len(many["old_cpu_s"]) > 1:
        many["old_growth_cpu"] = growth(many["old_cpu_s"])
    print(f"python CPU growth per 10x size, one assert per 5 KB: prepare {many['prepare_growth_cpu']}"
          + (f", old {many['old_growth_cpu']}" if "old_growth_cpu" in many else ""), flush=True)  # fmt: skip
    results["python_one_assert_per_5kb"] = many
    for language in ("cpp", "java", "go", "rust", "javascript", "typescript"):
        runner = get_runner(language)
        plan_wall, plan_cpu = {}, {}
        for size in SIZES:
            code, tests = by_size[size][language]
            assert len(runner.plan(code, tests, limits).test_names) == ASSERTS
            wall, cpu = best_of(args.repeat, lambda r=runner, c=code, t=tests: r.plan(c, t, limits))
            plan_wall[size], plan_cpu[size] = round(wall, 4), round(cpu, 4)
        results[language] = {
            "plan_wall_s": plan_wall,
            "plan_cpu_s": plan_cpu,
            "plan_growth_cpu": growth(plan_cpu),
        }
        print(f"{language:<10} plan: " + "  ".join(f"{s / 1e3:.0f} KB {plan_wall[s]:.3f} s" for s in SIZES)
              + f"  (CPU growth {growth(plan_cpu)})", flush=True)  # fmt: skip
    top = max(SIZES)
    goal = python["prepare_cpu_s"][top] < 1.0 and all(
        g < 20 for g in python["prepare_growth_cpu"] + many["prepare_growth_cpu"]
    )
    wall, cpu = python["prepare_wall_s"][top], python["prepare_cpu_s"][top]
    print(f"goal (python prepare < 1 s CPU at 1 MB, < 20x per 10x size): {'met' if goal else 'MISSED'}"
          f" (prepare at 1 MB: {wall:.3f} s, {cpu:.3f} s CPU;"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
    report = {
        "benchmark": "prepare_scaling",
        "asserts": ASSERTS,
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "results": results,
        "goal_met": goal,
    }
    write_result(args, report)


if __name__ == "__main__":
    main()
