"""Kill a real run at random moments, again and again, and count how many chains end bit-exactly.

    python scripts/kill_harness.py --kills 50 [--seed 1] [--every 3] [--workdir DIR]

The experiment is tests/runtime/fixtures/resume_exp.py (five stages: shuffling loaders, one with
a private generator, dropout, Adam and SGD with momentum, a scheduler, early stopping, best
weights loaded back, gradient accumulation, a stage training its own model, an inference stage).
One uninterrupted run is the reference. Then chains: each of five runs of a chain (``--resume``,
``--checkpoint-every N``) gets SIGKILL, SIGTERM or SIGUSR1 from the parent after a random delay
(uniform over the reference's wall time; a run that ends first is no kill), then one run goes to
the end; its final weights,
counters, callback state, CSV logs, predictions and best weights are compared with the reference
(``torch.equal``, byte for byte). Prints the kills by signal, the chains, and how many chains
ended bit-identical; exits 1 if any did not.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "runtime"
sys.path.insert(0, str(TESTS))

from test_resume_kill import EXPERIMENT, HARNESS, assert_same_result  # noqa: E402

SIGNALS = ("KILL", "TERM", "USR1")


def run_steps(steps: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    (folder / "steps.json").write_text(json.dumps(steps))
    subprocess.run([sys.executable, HARNESS, str(folder / "steps.json"),
                    str(folder / "results.json")], check=True, timeout=3600)
    results: list[dict[str, Any]] = json.loads((folder / "results.json").read_text())
    return results


def base(logdir: Path) -> list[str]:
    return ["run", EXPERIMENT, "--device", "cpu", "--quiet", "--logdir", str(logdir)]


def chain(work: Path, number: int, every: int, span: float, chance: random.Random,
          signals: int) -> tuple[dict[str, int], bool, str]:
    """``signals`` runs sent a random signal at a random moment, then one resumed to the end (all
    forked by one harness process); returns the kills by signal, identical, a problem."""
    logdir = work / f"chain{number}"
    steps: list[dict[str, Any]] = []
    for i in range(signals + 1):
        step: dict[str, Any] = {"run": [*base(logdir), "--checkpoint-every", str(every),
                                        *(["--resume"] if i else [])],
                                "out": str(logdir) + f".step{i}"}
        if i < signals:
            step.update(signal=chance.choice(SIGNALS), after=chance.uniform(0.0, span))
        steps.append(step)
    kills = dict.fromkeys(SIGNALS, 0)
    for step, result in zip(steps, run_steps(steps, work), strict=True):
        if result.get("code") == 75 or result.get("status") == "killed":
            kills[step["signal"]] += 1
        elif result != {"status": "exit", "code": 0}:
            return kills, False, f"a run ended with {result}: see {step['out']}.err"
    try:
        assert_same_result(work / "ref", logdir)
    except AssertionError as err:
        return kills, False, f"not identical: {err}"
    shutil.rmtree(logdir)
    return kills, True, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="signals to send in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=int, default=3, help="--checkpoint-every for the chains")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="stagegraph-kills-"))
    work.mkdir(parents=True, exist_ok=True)
    chance = random.Random(args.seed)
    start = time.monotonic()
    span = run_steps([{"run": base(work / "ref"), "out": str(work / "ref"), "seconds": True}],
                     work)[0]["seconds"]
    totals, chains, identical, problems = dict.fromkeys(SIGNALS, 0), 0, 0, []
    while sum(totals.values()) < args.kills:
        kills, same, problem = chain(work, chains, args.every, span, chance, signals=5)
        chains += 1
        identical += same
        for name, count in kills.items():
            totals[name] += count
        if problem:
            problems.append(f"chain {chains - 1}: {problem}")
    print(f"kills: {sum(totals.values())} (" + ", ".join(f"SIG{k} {v}" for k, v in totals.items())
          + f"); chains: {chains}; bit-identical: {identical}/{chains}; "
          f"{time.monotonic() - start:.0f} s; work folder {work}")
    for problem in problems:
        print(problem)
    return 0 if identical == chains else 1


if __name__ == "__main__":
    sys.exit(main())
