"""Random, often invalid, experiments — as objects for `compile` and as files for the CLI.

Everything is drawn from one `random.Random`, so a case is a seed: hypothesis draws the seed
(cheap, thousands per second) and a failing seed reproduces exactly. Cases include cyclic stage
graphs, cycles through dataflow keys, unknown names, values of the wrong type, empty stages,
huge epoch counts, names with unicode and spaces; the files add syntax errors, exceptions at
import, missing or wrong ``experiment`` attributes and random command-line options.
Used by tests/cli/test_fuzz.py and scripts/fuzz.py.
"""

from __future__ import annotations

import random
from typing import Any

import stagegraph as sg

NAMES = ["pretrain", "train", "finetune", "infer", "étape 2", "a b", "🚀", "", " ", "train",
         "x" * 40, "valid", "ünï cødé"]
CALLBACKS = ["acc", "loss", "ckpt", "log", "x y", "ünï", "criterion", "optimizer", "validation",
             "console", "🙂", ""]
KEYS = ["metric.loss", "metric.accuracy", "metric.*", "output.logits", "batch.targets",
        "batch.features", "valid.metrics", "epoch_metric.*", "state.flag", "bad key", "nodot",
        "metric.x", "metric.y", "loader_metric.auc", "valid.is_best", ""]
LOADERS = ["train", "valid", "infer", "holdout", "train_extra", "valid2", "", "tråin"]
EVENTS = ["on_batch_end", "on_epoch_end", "on_stage_start", "on_epoch_ends", "on_exception",
          "on_loader_start", "on_experiment_end"]
JUNK: list[Any] = [None, -1, 0, "3", 2.5, [], {}, True, ("a",), 10**12, float("nan"), b"x"]
EPOCHS: list[Any] = [1, 2, 3, 0, -2, 10**9, 10**18, 2**63, "3", 2.5, None, True]
DEVICES = ["cpu", "cuda", "cuda:0", "cuda:7", "mps", "auto", "tpu", "", "cuda:x", "CPU"]


def pick(rng: random.Random, pool: list[Any]) -> Any:
    return pool[rng.randrange(len(pool))]


def sometimes(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def names(rng: random.Random, pool: list[str], most: int) -> list[str]:
    return [pick(rng, pool) for _ in range(rng.randrange(most + 1))]


class Dice:
    """Random choices; ``rate`` scales how often a choice goes wrong (0: a valid experiment)."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng, self.rate = rng, rate

    def bad(self, p: float) -> bool:
        return self.rng.random() < p * self.rate

    def pick(self, good: list[Any], bad: list[Any], p: float = 0.3) -> Any:
        return pick(self.rng, bad if bad and self.bad(p) else good)


# --- objects, for compile ---------------------------------------------------------------------
def declarations(dice: Dice, cycle: list[str] | None = None) -> dict[str, Any]:
    """Random callback declarations; ``cycle`` pairs a read and a write to close a key cycle."""
    rng, kw = dice.rng, {}
    if sometimes(rng, 0.4):
        kw["order"] = dice.pick([0, 20, 40, 60, 80, 100, 120, 200, 7], [-5, 250, *JUNK[:6]])
    if sometimes(rng, 0.3):
        kw["node"] = dice.pick(["all", "master", "worker"], ["boss", 3])
    if sometimes(rng, 0.3):
        kw["scope"] = dice.pick(["stage", "experiment"], ["global", None])
    for field in ("after", "before"):
        if dice.bad(0.25):
            kw[field] = names(rng, CALLBACKS, 2) if sometimes(rng, 0.9) else pick(rng, JUNK)
    if dice.bad(0.5):
        kw["reads"] = names(rng, KEYS, 3) if sometimes(rng, 0.95) else pick(rng, JUNK)
    if sometimes(rng, 0.5):
        kw["writes"] = (dice.pick([[f"metric.{pick(rng, ['f1', 'auc', 'acc', 'n'])}"]],
                                  [names(rng, KEYS, 3), pick(rng, JUNK)]))
    if cycle is not None:
        kw["reads"], kw["writes"] = [cycle[0]], [cycle[1]]
    return kw


def callback(dice: Dice, cycle: list[str] | None = None) -> Any:
    if dice.bad(0.05):
        return pick(dice.rng, [*JUNK, object(), sg.Callback])
    events = {e: (lambda self, runner: None) for e in names(dice.rng, EVENTS, 3)
              if e != "on_epoch_ends" or dice.bad(1)}
    cls = type(pick(dice.rng, ["Random", "Metric", "Logger"]), (sg.Callback,), events)
    return cls(**declarations(dice, cycle))


def stage_kwargs(dice: Dice, name: str, stages: list[str]) -> dict[str, Any]:
    rng, kw = dice.rng, {}
    earlier = stages[: stages.index(name)]
    if sometimes(rng, 0.4):  # cycles come from 'after' naming later stages (or itself)
        kw["after"] = dice.pick([rng.sample(earlier, min(len(earlier), rng.randrange(3)))],
                                [names(rng, [*stages, "nowhere"], 3), pick(rng, JUNK)], 0.8)
    if sometimes(rng, 0.5):
        kw["num_epochs"] = dice.pick([1, 2, 3, 10**9, 10**18], [0, -2, 2**63, "3", 2.5, None])
    for param, good, bad in (("main_metric", ["loss"], ["accuracy", "", "auc", 3]),
                             ("minimize_metric", [True, False], ["yes", None]),
                             ("valid_loader", ["valid"], ["valid2", "", "holdout"]),
                             ("precision", ["fp32", "amp", "bf16"], ["fp8", None]),
                             ("check_run", [True, False], [1]),
                             ("migrate_from_previous_stage", [True, False], ["no"]),
                             ("batch_keys", [None, ["features", "targets"]], ["x", [3]])):
        if sometimes(rng, 0.15):
            kw[param] = dice.pick(good, bad, 0.7)
    infer = name.startswith("infer")
    kw["loaders"] = dice.pick([{"infer": []} if infer else {"train": [], "valid": []}],
                              [{n: [] for n in names(rng, LOADERS, 3)}, pick(rng, JUNK)], 0.6)
    pairs = [(f"cb{i}", callback(dice)) for i in range(rng.randrange(4))]
    if dice.bad(0.3):
        pairs += [(pick(rng, CALLBACKS), callback(dice))]
    if dice.bad(0.15):  # a cycle through dataflow keys
        pairs += [("cyc_a", callback(dice, ["metric.x", "metric.y"])),
                  ("cyc_b", callback(dice, ["metric.y", "metric.x"]))]
    kw["callbacks"] = pick(rng, JUNK) if dice.bad(0.1) else dict(pairs)
    for component in ("model", "optimizer", "handler"):
        if dice.bad(0.05):
            kw[component] = pick(rng, [*JUNK[:5], lambda: None, lambda a, b, c: None])
    if dice.bad(0.05):
        kw[pick(rng, ["num_epoch", "loader", "epochs"])] = 3  # a typo
    return kw


def experiment(rng: random.Random) -> sg.Experiment:
    dice = Dice(rng, pick(rng, [0.0, 0.0, 0.3, 1.0, 1.0, 2.0]))
    components = {c: dice.pick([object()] if c in ("model", "criterion") else [None, object()],
                               [None, lambda: None, lambda m: None, 3], 0.3)
                  for c in ("model", "criterion", "optimizer", "scheduler")}
    exp = sg.Experiment(dice.pick(["exp", "expé rience", "x y"], [""]),
                        seed=dice.pick([0, 42, 2**40], [-1, "7", None]), **components)
    valid_names = [n for n in NAMES if n.strip() and n != "valid"]
    stages = (names(rng, NAMES, 6) if dice.bad(0.5)
              else rng.sample(valid_names, rng.randrange(1, 5)))
    for name in stages:
        exp.add_stage(name, **stage_kwargs(dice, name, stages))
    return exp


# --- files and options, for the CLI -----------------------------------------------------------
def source(rng: random.Random) -> str:
    """The text of an experiment file: a random experiment, sometimes broken in many ways."""
    dice = Dice(rng, pick(rng, [0.0, 0.0, 0.5, 1.0, 2.0]))
    lines = ["import stagegraph as sg", "", "class Cb(sg.Callback):",
             "    def on_epoch_end(self, runner): pass", ""]
    lines.append(f"exp = sg.Experiment({dice.pick(['exp', 'é x'], [''])!r}, "
                 f"seed={dice.pick([1], [-1, '2', None])!r}, model=object(), criterion=object())")
    valid_names = [n for n in NAMES if n.strip() and n != "valid"]
    stages = (names(rng, NAMES, 4) if dice.bad(0.5)
              else rng.sample(valid_names, rng.randrange(1, 4)))
    for name in stages:
        loaders = dice.pick([{"infer": []} if name.startswith("infer") else
                             {"train": [], "valid": []}],
                            [{n: [] for n in names(rng, LOADERS, 3)}], 0.6)
        cbs = ", ".join(f"'cb{i}': Cb(**{_literal(dice)})" for i in range(rng.randrange(3)))
        after = (f", after={names(rng, [*stages, 'nowhere'], 2)!r}" if dice.bad(0.3) else "")
        epochs = dice.pick([1, 3, 10**12], [0, -1, "'3'", None])
        lines.append(f"exp.add_stage({name!r}, num_epochs={epochs}, loaders={loaders!r}, "
                     f"callbacks={{{cbs}}}{after})")
    lines.append(dice.pick(["experiment = exp", "def experiment():\n    return exp"], [
        "experiment = 3", "experiment = None", "def experiment(x):\n    return exp",
        "def experiment():\n    raise KeyError('data')", "def experiment():\n    pass",
        "experiments = exp", "raise ValueError('at import')",
        "import no_such_module_xyz\nexperiment = exp"], 0.5))
    text = "\n".join(lines) + "\n"
    return _mangle(rng, text) if dice.bad(0.15) else text


def _literal(dice: Dice) -> dict[str, Any]:
    kw = declarations(dice)
    return {k: v for k, v in kw.items() if isinstance(v, (int, str, list, tuple, type(None)))}


def _mangle(rng: random.Random, text: str) -> str:
    """Delete or insert a few characters: often a syntax error, sometimes still valid."""
    chars = list(text)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(chars))
        if sometimes(rng, 0.5):
            del chars[at: at + rng.randrange(1, 6)]
        else:
            chars.insert(at, pick(rng, list("()[]{}:,'\"\\ \n\t=#é")))
    return "".join(chars)


def arguments(rng: random.Random, path: str) -> tuple[list[str], bool]:
    """A CLI command line for ``path`` and whether it is a valid usage (else exit 2)."""
    command = pick(rng, ["validate", "validate", "plan", "explain"])
    argv, usage_ok = [command, path], True
    if command == "explain":
        argv += ["--stage", pick(rng, NAMES), pick(rng, CALLBACKS), pick(rng, CALLBACKS)]
    if sometimes(rng, 0.4):
        argv += ["--device", pick(rng, DEVICES)]
    if sometimes(rng, 0.3):
        rank = pick(rng, ["single", "master", "worker", "boss"])
        argv += ["--rank", rank]
        usage_ok = rank != "boss"
    if sometimes(rng, 0.3):
        argv += ["--logdir", pick(rng, ["runs/x", "r u n s", "ü", ""])]
    if command == "validate" and sometimes(rng, 0.3):
        argv += ["--format", pick(rng, ["json", "text"])]
    return argv, usage_ok
