"""``aeforge sweep SWEEP.yaml``: the command line of the design-space sweep.

Only argparse and the standard library are imported here; Optuna, Ray and torch load when a sweep runs,
so ``aeforge --help`` stays fast and works without them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` arguments to its subparser."""
    parser.description = (
        "Grid, random or Bayesian (TPE) search over experiment config keys; each trial trains, exports, "
        "verifies and costs one configuration (run directory with its card under DIR/trials). Writes "
        "DIR/sweep.json and DIR/report.html with the Pareto front. Resumable: see --resume.")
    parser.add_argument("sweep", help="sweep YAML file (base experiment, set, space, sampler, objectives, ...)")
    parser.add_argument("--out", help="sweep directory (default: sweeps/<name>)")
    parser.add_argument("--workers", type=int,
                        help="trials in flight at once (default: CPUs / resources.num_cpus, or the Ray cluster's)")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="run trials as Ray tasks: a cluster address (host:port, ray://host:10001, auto) or "
                             "'local' for a private single-node Ray")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sweep in --out: finished trials are kept, interrupted ones rerun")
    parser.add_argument("--force", action="store_true", help="replace an existing sweep directory")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Validate the sweep file, run or resume the sweep, print the front; returns the exit code."""
    from aeforge.sweep.space import load_sweep

    spec = load_sweep(args.sweep)
    out = Path(args.out) if args.out else Path("sweeps") / spec.name
    from aeforge.sweep.driver import run_sweep

    def log(text: str) -> None:
        print(text, flush=True)

    summary = run_sweep(spec, out, workers=args.workers, ray_address=args.ray, resume=args.resume,
                        force=args.force, log=None if args.quiet else log)
    print(format_summary(summary))
    print(f"sweep: {out}/sweep.json")
    print(f"report: {summary['report']}")
    if summary["counts"]["done"] == 0:
        print(f"aeforge sweep: error: none of the {summary['counts']['asked']} trials finished "
              "(errors in sweep.json and the report)", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def format_summary(summary: dict) -> str:
    """Counts and the Pareto front as an aligned text table."""
    counts = summary["counts"]
    lines = [f"{summary['name']}: {counts['done']} done, {counts['failed']} failed, "
             f"{counts['unfinished']} unfinished of {counts['n_trials']} trials "
             f"({counts['lost_workers']} lost workers retried) in {summary['wall_s']:.1f} s"]
    trials = {t["trial"]: t for t in summary["trials"]}
    if not summary["front"]:
        return "\n".join(lines)
    keys = list(summary["spec"]["space"])
    objectives = summary["objectives"]
    directions = summary.get("directions") or ["min"] * len(objectives)
    header = ["trial", *keys, *[f"{o} (max)" if d == "max" else o for o, d in zip(objectives, directions, strict=True)]]
    rows = []
    for trial_id in summary["front"]:
        trial = trials[trial_id]
        rows.append([f"{trial_id:04d}", *[str(trial["params"].get(k)) for k in keys],
                     *[f"{v:.4g}" for v in trial["values"]]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines.append(f"Pareto front ({len(rows)} trials; LUT: {summary['sources'].get('lut')}; "
                 f"energy: {summary['sources'].get('energy_j')}):")
    lines.append("  " + "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
