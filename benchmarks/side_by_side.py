"""Ours against the official code, on the same machine in the same session: time and memory ratios per configuration.

    .venv/bin/python benchmarks/side_by_side.py --reference_python=TORCH_VENV/bin/python --reference_dir=PATH
    .venv/bin/python benchmarks/side_by_side.py ... --before_dir=PATH/TO/AN/OLDER/CHECKOUT   # before and after
    .venv/bin/python benchmarks/side_by_side.py ... --ours_flags=--recompute_cells=first_stage   # an option's

For each configuration and round, the reference's iteration (benchmarks/reference_step.py, under a Python with
PyTorch) and then ours (benchmarks/search_step.py --train_only: no inference, as the reference runs none) run in
fresh processes, one after the other, so both see the same machine. Prints one JSON line per run, then a markdown
table: per configuration the medians over rounds of each program's ms per iteration and peak RSS, of the time
ratio ours / reference within a round (and, with --rounds above 1, that ratio in each round), of the ratio of the
two programs' fastest iterations in a round (which load from elsewhere disturbs least), and of each program's RSS
growth over its own baseline (peak minus the resident memory once its framework is imported). Only these ratios
are comparable across machines (docs/performance.md). A second table compares the start-up: each program's median
wait from its command to the end of its first iteration (`start_s`: interpreter, imports, building, for ours
tracing and graph optimisation, the first run) and the iteration from which ours, at the two medians, has
finished more iterations than the reference. With --before_dir, another checkout of this project (a git
worktree at an older commit, say) runs its own search_step.py right after ours, and the table gains its time and
ratio: a change's effect measured side by side too.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = ["nb201_k4", "nb201_k2", "nb201_k1", "darts_c16_l8_k4", "darts_c18_l8_k6", "darts_c18_l8_k6_keep4_k3"]


def run(command):
    """The JSON line a benchmark process prints last."""
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference_python", required=True, help="a Python with PyTorch and NumPy")
    parser.add_argument("--reference_dir", required=True, help="checkout of the official DrNAS code")
    parser.add_argument("--configs", default=",".join(DEFAULT), help="comma-separated search_step.py configurations")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="reference-then-ours runs per configuration")
    parser.add_argument("--before_dir", help="another checkout of drnas_tf, timed after ours in each round")
    parser.add_argument("--ours_flags", default="", help="more search_step.py flags for ours (space-separated), "
                        "e.g. --recompute_cells=first_stage; not passed to --before_dir's")
    args = parser.parse_args()
    if args.before_dir:
        before_script = os.path.join(args.before_dir, "benchmarks", "search_step.py")
        with open(before_script) as script:  # a checkout older than --train_only times inference too
            before_options = ["--train_only"] if "--train_only" in script.read() else []
    rows = []
    for name in args.configs.split(","):
        results = {"reference": [], "ours": [], **({"before": []} if args.before_dir else {})}
        for _ in range(args.rounds):
            results["reference"].append(run([args.reference_python, os.path.join(HERE, "reference_step.py"),
                                             f"--reference_dir={args.reference_dir}", f"--config={name}",
                                             f"--iterations={args.iterations}"]))
            results["ours"].append(run([sys.executable, os.path.join(HERE, "search_step.py"), f"--config={name}",
                                        f"--iterations={args.iterations}", "--train_only",
                                        *args.ours_flags.split()]))
            if args.before_dir:
                results["before"].append(run([sys.executable, before_script, f"--config={name}",
                                              f"--iterations={args.iterations}", *before_options]))
            for program, runs in results.items():
                print(json.dumps({**runs[-1], "program": program}), flush=True)

        def median(program, key):
            return statistics.median(run[key] for run in results[program])

        def ratios(program, key="train_ms_median"):
            """The program's time / the reference's, round by round."""
            return [run[key] / reference[key] for run, reference in zip(results[program], results["reference"])]

        def ratio(program, key="train_ms_median"):
            return statistics.median(ratios(program, key))

        def growth(program):
            return statistics.median(run["peak_rss_mb"] - run["rss_baseline_mb"] for run in results[program])

        before = ((median("before", "train_ms_median"), ratio("before"), median("before", "peak_rss_mb"))
                  if args.before_dir else ())
        rows.append((name, median("reference", "train_ms_median"), median("ours", "train_ms_median"), ratio("ours"),
                     ratio("ours", "train_ms_min"), median("reference", "peak_rss_mb"), median("ours", "peak_rss_mb"),
                     growth("reference"), growth("ours"), before, ratios("ours"),
                     (median("reference", "start_s"), median("ours", "start_s"))))
    by_round = args.rounds > 1
    before_columns = " before ms | before ratio | before peak RSS MB |" if args.before_dir else ""
    per_round_column = " ratio per round |" if by_round else ""
    print(f"\n| configuration | reference ms | ours ms | ratio |{per_round_column} minimum ratio "
          f"| reference peak RSS MB | ours peak RSS MB | reference growth MB | ours growth MB |{before_columns}")
    print("|---|---|---|---|---|---|---|---|---|" + "---|" * ((3 if args.before_dir else 0) + by_round))
    for (name, ref_ms, our_ms, our_ratio, min_ratio, ref_rss, our_rss, ref_growth, our_growth, before, per_round,
         _) in rows:
        each = f" {' / '.join(f'{r:.2f}' for r in per_round)} |" if by_round else ""
        line = (f"| {name} | {ref_ms:,.0f} | {our_ms:,.0f} | {our_ratio:.2f} |{each} {min_ratio:.2f} | {ref_rss:,.0f} "
                f"| {our_rss:,.0f} | {ref_growth:,.0f} | {our_growth:,.0f} |")
        if before:
            line += f" {before[0]:,.0f} | {before[1]:.2f} | {before[2]:,.0f} |"
        print(line)
    print("\n| configuration | reference start s | ours start s | ours ahead from iteration |\n|---|---|---|---|")
    for name, ref_ms, our_ms, *_, (ref_start, our_start) in rows:
        print(f"| {name} | {ref_start:,.1f} | {our_start:,.1f} | {ahead_from(ref_start, ref_ms, our_start, our_ms)} |")


def ahead_from(reference_start_s, reference_ms, ours_start_s, ours_ms):
    """The first iteration n that ours ends before the reference does, when each program's iteration n ends at its
    start plus (n - 1) iterations of its median time; "never" if ours never catches up."""
    lead_s = reference_start_s - ours_start_s
    if lead_s > 0:
        return "1"
    if ours_ms >= reference_ms:
        return "never"
    return f"{math.floor(-lead_s * 1000 / (reference_ms - ours_ms)) + 2:,}"


if __name__ == "__main__":
    main()
