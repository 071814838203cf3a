"""``talentnest sim``: run the deterministic simulation over many seeds, replay one, shrink a failure.

The last line is always ``sim: N seeds, V violations, S steps, T s``; the exit status is 1 when a
violation was found (one no tolerated finding accounts for), with each failing seed's replay command
and its shortest failing schedule printed above it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

DEFAULT_SAVE = Path("sim-failures")
MAX_SHRUNK = 3  # failing seeds shrunk and written up at the end (the first of each invariant)


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "sim",
        help="run the deterministic simulation: many nodes in one process, faults from a seed, invariants checked",
        description="Run N nodes of the real cluster code in one process on virtual time, under a seeded schedule "
        "of faults (crashes, pauses, partitions, message loss, DNS answers, clock skew) while clients write and "
        "read, and check the cluster's invariants after every step. The same seed replays the same run exactly. "
        "See docs/simulation.md.",
    )
    parser.add_argument("--seeds", type=_positive, help="how many seeds to run (default 100; 1 with --seed)")
    parser.add_argument("--seed", type=_non_negative, help="the first seed (default 1); alone, replays that seed in detail")
    parser.add_argument("--nodes", default="3", type=_choices({"3", "5"}), help="3, 5, or 3,5 to alternate by seed (default 3)")
    parser.add_argument(
        "--mode", default="async", type=_choices({"async", "quorum"}), help="async, quorum, or async,quorum to alternate"
    )
    parser.add_argument("--mutant", help="run a deliberately broken variant of the core (see --list-mutants)")
    parser.add_argument("--list-mutants", action="store_true", help="list the mutants and what each breaks")
    parser.add_argument("--jobs", type=_positive, default=1, help="worker processes (default 1)")
    parser.add_argument("--schedule", type=Path, help="a fault schedule (JSON) to replay instead of the seed's own")
    parser.add_argument(
        "--tolerate",
        default="",
        help="known findings to tolerate, comma-separated, or 'all' (see --list-findings): each is avoided or "
        "counted as known, and reported",
    )
    parser.add_argument("--list-findings", action="store_true", help="list the known findings a run can tolerate")
    parser.add_argument("--window", type=float, default=None, help="seconds of virtual time with faults (default 15)")
    parser.add_argument("--settle", type=float, default=None, help="seconds allowed to converge after the faults (default 30)")
    parser.add_argument("--no-shrink", action="store_true", help="do not shrink failing schedules")
    parser.add_argument(
        "--save", type=Path, default=DEFAULT_SAVE, help=f"where failing schedules are written (default {DEFAULT_SAVE}/)"
    )
    parser.add_argument("--keep", type=Path, help="keep the nodes' data directories under this directory")
    parser.add_argument("--trace", action="store_true", help="with one seed: print the whole kept trace, not its end")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _choices(allowed: set[str]):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"must be {' or '.join(sorted(allowed))} (comma-separated), got '{text}'")
        return values

    return parse


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Progress:
    """A line on stderr every few seconds (rewritten in place on a terminal)."""

    def __init__(self, total: int):
        self.total = total
        self.started = time.perf_counter()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def show(self, tally, *, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < (0.5 if self.tty else 5.0):
            return
        self.last = now
        elapsed = now - self.started
        rate = tally.seeds / elapsed if elapsed else 0.0
        text = (
            f"sim: {tally.seeds}/{self.total} seeds, {tally.failed} failing, {tally.steps:,} steps, "
            f"{elapsed:.0f} s ({rate:.1f} seeds/s)"
        )
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if final else ""))
            sys.stderr.flush()
        elif not final:
            _err(text)


def replay_command(config, schedule: Path | None = None) -> str:
    from talentnest.sim.world import DEFAULT_SETTLE, DEFAULT_WINDOW

    parts = ["talentnest sim", f"--seed {config.seed}", f"--nodes {config.nodes}", f"--mode {config.mode}"]
    if config.mutant:
        parts.append(f"--mutant {config.mutant}")
    if config.tolerate:
        parts.append(f"--tolerate {','.join(config.tolerate)}")
    if config.window != DEFAULT_WINDOW:
        parts.append(f"--window {config.window:g}")
    if config.settle != DEFAULT_SETTLE:
        parts.append(f"--settle {config.settle:g}")
    if schedule is not None:
        parts.append(f"--schedule {schedule}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from talentnest.sim import findings, mutants

    # What a crash left unstarted is collected at exit, after the last run: not worth a warning.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    if args.list_mutants:
        for name in mutants.MUTANTS:
            _out(f"{name}\n    {mutants.describe(name)}\n    breaks: {mutants.breaks(name)}")
        return 0
    if args.list_findings:
        if not findings.KNOWN:
            _out("no known findings: every violation fails a run")
        for finding in findings.KNOWN.values():
            _out(f"{finding.name}\n    {finding.title}\n    tolerated by: {finding.how}")
        return 0
    if args.mutant and args.mutant not in mutants.MUTANTS:
        _err(f"talentnest sim: unknown mutant '{args.mutant}'; known: {', '.join(mutants.MUTANTS)}")
        return 2
    try:
        tolerate = tuple(t for t in args.tolerate.split(",") if t.strip())
        findings.resolve(list(tolerate))
    except ValueError as exc:
        _err(f"talentnest sim: --tolerate: {exc}")
        return 2
    single = args.seed is not None and args.seeds is None
    if args.schedule is not None and not single:
        _err("talentnest sim: --schedule replays one seed: give --seed S (and no --seeds)")
        return 2
    from talentnest.sim import faults as faults_mod
    from talentnest.sim.world import DEFAULT_SETTLE, DEFAULT_WINDOW, RunConfig

    schedule = None
    if args.schedule is not None:
        try:
            schedule = tuple(faults_mod.loads(args.schedule.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _err(f"talentnest sim: cannot read the schedule {args.schedule}: {exc}")
            return 2
    first = args.seed if args.seed is not None else 1
    count = 1 if single else (args.seeds or 100)
    configs = [
        RunConfig(
            seed=seed,
            nodes=int(args.nodes[(seed - first) % len(args.nodes)]),
            mode=args.mode[((seed - first) // len(args.nodes)) % len(args.mode)],
            mutant=args.mutant,
            faults=schedule,
            window=args.window if args.window is not None else DEFAULT_WINDOW,
            settle=args.settle if args.settle is not None else DEFAULT_SETTLE,
            keep=args.keep,
            tolerate=tolerate,
        )
        for seed in range(first, first + count)
    ]
    if single:
        return _run_one(configs[0], args)
    return _run_many(configs, args)


def _summary(tally, elapsed: float) -> str:
    known = ""
    if tally.known:
        known = " (tolerated: " + ", ".join(f"{name} x{n}" for name, n in sorted(tally.known.items())) + ")"
    return f"sim: {tally.seeds} seeds, {tally.violations} violations{known}, {tally.steps} steps, {elapsed:.1f} s"


def _run_one(config, args) -> int:
    from talentnest.sim import faults as faults_mod
    from talentnest.sim.runner import Tally
    from talentnest.sim.world import run

    started = time.perf_counter()
    result = run(replace(config, fail_fast=False))
    _out(f"seed {config.seed}: {config.nodes} nodes, {config.mode} mode" + (f", mutant {config.mutant}" if config.mutant else ""))
    _out(f"schedule ({len(result.faults)} faults):")
    _out(_indent(faults_mod.describe(result.faults)))
    lines = result.trace_tail if args.trace else result.trace_tail[-60:]
    _out(
        f"trace ({'all kept' if args.trace else 'last'} {len(lines)} of {result.stats.get('trace_events', len(lines))} events; "
        f"digest {result.digest}):"
    )
    _out(_indent("\n".join(line for line in lines if " net drop" not in line or args.trace)))
    if result.log_tail:
        _out("node warnings and errors (last 30):")
        _out(_indent("\n".join(result.log_tail[-30:])))
    for name, violation in result.known:
        _out(f"known ({name}): {violation}")
    for violation in result.violations:
        _out(f"VIOLATION {violation}")
    stats = ", ".join(f"{k} {v}" for k, v in result.stats.items())
    _out(f"run: {result.virtual_seconds:.1f} virtual s in {result.wall_seconds:.2f} s; {stats}")
    if result.violations and not args.no_shrink:
        _shrink_and_save(config, result, args)
    tally = Tally()
    tally.seeds, tally.steps, tally.violations = 1, result.steps, len(result.violations)
    tally.failed = int(bool(result.violations))
    for name, _ in result.known:
        tally.known[name] = tally.known.get(name, 0) + 1
    _out(_summary(tally, time.perf_counter() - started))
    return 1 if result.violations else 0


def _run_many(configs, args) -> int:
    from talentnest.sim.runner import Tally, run_many
    from talentnest.sim.world import run

    started = time.perf_counter()
    tally = Tally()
    progress = _Progress(len(configs))
    failing = []

    def seen(outcome) -> None:
        tally.add(outcome)
        if not outcome.ok:
            failing.append(outcome)
            if progress.tty:
                sys.stderr.write("\r")
            _out(f"FAIL seed {outcome.seed} ({outcome.nodes} nodes, {outcome.mode}): {outcome.violations[0][1]}")
        progress.show(tally)

    for _ in run_many(configs, jobs=args.jobs, on_outcome=seen):
        pass
    progress.show(tally, final=True)
    elapsed = time.perf_counter() - started
    for nodes, (seeds, cpu, steps) in sorted(tally.by_nodes.items()):
        _out(f"{nodes} nodes: {seeds} seeds, {cpu / seeds:.3f} s CPU a seed, {steps / cpu:,.0f} steps per CPU second")
    by_config = {c.seed: c for c in configs}
    shown: set[str] = set()
    for outcome in failing:
        invariant = outcome.violations[0][0]
        if invariant in shown or len(shown) >= MAX_SHRUNK:
            continue
        shown.add(invariant)
        config = by_config[outcome.seed]
        _out()
        _out(f"seed {outcome.seed} broke {invariant}: {outcome.violations[0][1]}")
        _out(f"  replay: {replay_command(config)}")
        if not args.no_shrink:
            _shrink_and_save(config, run(config), args)
    if len(failing) > len(shown):
        listed = ", ".join(str(o.seed) for o in failing[:30]) + ("..." if len(failing) > 30 else "")
        _out(f"({len(failing)} failing seeds in all: {listed})")
    _out(_summary(tally, elapsed))
    return 1 if tally.violations else 0


def _shrink_and_save(config, result, args) -> None:
    from talentnest.sim import faults as faults_mod
    from talentnest.sim.shrink import shrink

    invariant = result.violations[0].invariant
    _out(f"  shrinking its {len(result.faults)} faults against {invariant}...")
    verbose = bool(os.environ.get("TALENTNEST_SIM_DEBUG"))
    smallest, runs = shrink(config, result.faults, invariant, progress=(lambda text: _err("  " + text)) if verbose else None)
    args.save.mkdir(parents=True, exist_ok=True)
    path = args.save / f"seed-{config.seed}-{config.nodes}-{config.mode}{'-' + config.mutant if config.mutant else ''}.json"
    path.write_text(faults_mod.dumps(smallest) + "\n")
    _out(f"  shortest schedule that still breaks {invariant} ({len(smallest)} of {len(result.faults)} faults, {runs} runs):")
    _out(_indent(faults_mod.describe(smallest), 4))
    _out(f"  replay it: {replay_command(config, path)}")


def _indent(text: str, spaces: int = 2) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())
