"""Hypothesis strategies for random, often invalid, experiments."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import stagegraph as sg

NAMES = ["pretrain", "train", "finetune", "infer", "étape 2", "a b", "🚀", ""]
CALLBACK_NAMES = ["acc", "loss", "ckpt", "log", "x y", "ünï", "criterion", "optimizer"]
KEYS = ["metric.loss", "metric.accuracy", "metric.*", "output.logits", "batch.targets",
        "batch.features", "valid.metrics", "epoch_metric.*", "state.flag", "bad key", "nodot",
        "valid_metric.{main_metric}", "valid_metric.loss", "loader_metric.*",
        "epoch_metric.{valid_loader}_loss", "valid_metric.*"]
LOADERS = ["train", "valid", "infer", "holdout", "train_extra", "valid2"]
EVENTS = ["on_batch_end", "on_epoch_end", "on_stage_start", "on_epoch_ends"]
CLAIMS = ["optimizer:", "optimizer:g", "early_stopping", "files:checkpoints/", ""]
NEEDS = ["logdir", "optimizer", "criterion", "scheduler", "model", "gpu"]
WATCHED = ["{main_metric}", "accuracy", "loss", "f1_macro", "{main_metric}_x", "", None]

junk = st.sampled_from([None, -1, 0, "3", 2.5, [], {}, object(), True])


def _callback_class(events: list[str]) -> type[sg.Callback]:
    namespace = {e: (lambda self, runner: None) for e in events}
    return type("Random", (sg.Callback,), namespace)


@st.composite
def callbacks(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(junk)
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs["order"] = draw(st.one_of(st.integers(-5, 250),
                                         st.sampled_from(list(sg.CallbackOrder)), junk))
    if draw(st.booleans()):
        kwargs["node"] = draw(st.sampled_from(["all", "master", "worker", "boss"]))
    if draw(st.booleans()):
        kwargs["scope"] = draw(st.sampled_from(["stage", "experiment", "global"]))
    for field in ("after", "before"):
        if draw(st.integers(0, 3)) == 0:
            kwargs[field] = draw(st.lists(st.sampled_from(CALLBACK_NAMES), max_size=2))
    for field in ("reads", "writes"):
        if draw(st.booleans()):
            kwargs[field] = draw(st.lists(st.sampled_from(KEYS), max_size=3))
    if draw(st.integers(0, 3)) == 0:
        kwargs["claims"] = draw(st.one_of(st.lists(st.sampled_from(CLAIMS), max_size=2), junk))
    if draw(st.integers(0, 3)) == 0:
        kwargs["needs"] = draw(st.one_of(st.lists(st.sampled_from(NEEDS), max_size=2), junk))
    if draw(st.integers(0, 3)) == 0:
        kwargs["watch"] = draw(st.sampled_from(WATCHED))
        kwargs["watch_minimize"] = draw(st.sampled_from([None, True, False, "yes"]))
    cls = _callback_class(draw(st.lists(st.sampled_from(EVENTS), max_size=3, unique=True)))
    return cls(**kwargs)


@st.composite
def stages(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs["after"] = draw(st.lists(st.sampled_from([*names, "nowhere"]), max_size=3))
    if draw(st.booleans()):
        kwargs["num_epochs"] = draw(st.one_of(st.integers(-2, 10**9), junk))
    if draw(st.booleans()):
        kwargs["main_metric"] = draw(st.sampled_from(["loss", "accuracy", "", "auc"]))
    if draw(st.integers(0, 4)) == 0:
        kwargs["minimize_metric"] = draw(st.one_of(st.booleans(), junk))
    if draw(st.integers(0, 4)) == 0:
        kwargs["migrate_from_previous_stage"] = draw(st.booleans())
    if draw(st.integers(0, 9)) == 0:
        kwargs["loaders"] = draw(junk)
    else:
        kwargs["loaders"] = {n: [] for n in draw(st.lists(st.sampled_from(LOADERS), max_size=3))}
    if draw(st.integers(0, 9)) == 0:
        kwargs["callbacks"] = draw(junk)
    else:
        kwargs["callbacks"] = draw(st.dictionaries(st.sampled_from(CALLBACK_NAMES), callbacks(),
                                                   max_size=5))
    if draw(st.integers(0, 9)) == 0:
        kwargs["num_epoch"] = 3  # a typo
    return kwargs


@st.composite
def experiments(draw: st.DrawFn) -> sg.Experiment:
    components = {c: draw(st.sampled_from([None, object(), lambda: None]))
                  for c in ("model", "criterion", "optimizer", "scheduler")}
    exp = sg.Experiment(draw(st.sampled_from(["exp", "", "expé rience"])),
                        seed=draw(st.one_of(st.integers(0, 2**32), junk)), **components)
    names = draw(st.lists(st.sampled_from(NAMES), max_size=6))
    for name in names:
        exp.add_stage(name, **draw(stages(names)))
    return exp
