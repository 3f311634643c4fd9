"""Event traces of tiny real runs, compared with the sequences written out here."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler
from trace_helpers import (
    NO_OPTIMIZER,
    Hook,
    Recorder,
    callbacks,
    loader,
    loaders,
    run_cpu,
    stand_ins,
    tiny_model,
)

import stagegraph as sg


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


EPOCH_TRAIN_2_VALID_1 = """
    epoch_start {s} {e}
    loader_start {s} {e} train
    batch_start {s} {e} train 1
    batch_end {s} {e} train 1
    batch_start {s} {e} train 2
    batch_end {s} {e} train 2
    loader_end {s} {e} train
    loader_start {s} {e} valid
    batch_start {s} {e} valid 1
    batch_end {s} {e} valid 1
    loader_end {s} {e} valid
    epoch_end {s} {e}
"""


def test_two_stages_full_trace_and_counters() -> None:
    log: list[str] = []
    exp = sg.Experiment("trace", seed=3, model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("pretrain", num_epochs=2, loaders=loaders(),
                  callbacks=callbacks(rec=Recorder(log, scope="experiment")))
    exp.add_stage("train", loaders=loaders(), callbacks=stand_ins())
    runner = run_cpu(exp)
    assert log == lines(
        "experiment_start\n"
        "stage_start pretrain\n"
        + EPOCH_TRAIN_2_VALID_1.format(s="pretrain", e=1)
        + EPOCH_TRAIN_2_VALID_1.format(s="pretrain", e=2)
        + "stage_end pretrain\n"
        "stage_start train\n"
        + EPOCH_TRAIN_2_VALID_1.format(s="train", e=1)
        + "stage_end train\n"
        "experiment_end\n"
    )
    # global counters run across the experiment: 3 epochs of 3 batches and 6 samples each
    assert (runner.global_epoch, runner.global_batch_step, runner.global_sample_step) == (3, 9, 18)
    assert (runner.stage_name, runner.epoch, runner.num_epochs) == ("train", 1, 1)
    assert runner.exception is None


def test_counters_per_batch() -> None:
    seen: list[tuple[Any, ...]] = []

    def record(r: Any) -> None:
        seen.append((r.stage_name, r.epoch, r.global_epoch, r.loader_name, r.loader_batch_step,
                     r.global_batch_step, r.batch_size, r.loader_sample_step,
                     r.global_sample_step, r.loader_len, r.loader_batch_size))

    exp = sg.Experiment("counters", model=tiny_model, lints=NO_OPTIMIZER)
    hook = Hook("on_batch_end", record, scope="experiment")
    exp.add_stage("one", num_epochs=2, callbacks=callbacks(hook=hook),
                  loaders={"train": loader(5, 2), "valid": loader(3, 3)})
    exp.add_stage("two", callbacks=stand_ins(), loaders={"train": loader(5, 2),
                                                         "valid": loader(3, 3)})
    run_cpu(exp)
    assert seen == [
        ("one", 1, 1, "train", 1, 1, 2, 2, 2, 3, 2),
        ("one", 1, 1, "train", 2, 2, 2, 4, 4, 3, 2),
        ("one", 1, 1, "train", 3, 3, 1, 5, 5, 3, 2),
        ("one", 1, 1, "valid", 1, 4, 3, 3, 8, 1, 3),
        ("one", 2, 2, "train", 1, 5, 2, 2, 10, 3, 2),
        ("one", 2, 2, "train", 2, 6, 2, 4, 12, 3, 2),
        ("one", 2, 2, "train", 3, 7, 1, 5, 13, 3, 2),
        ("one", 2, 2, "valid", 1, 8, 3, 3, 16, 1, 3),
        ("two", 1, 3, "train", 1, 9, 2, 2, 18, 3, 2),
        ("two", 1, 3, "train", 2, 10, 2, 4, 20, 3, 2),
        ("two", 1, 3, "train", 3, 11, 1, 5, 21, 3, 2),
        ("two", 1, 3, "valid", 1, 12, 3, 3, 24, 1, 3),
    ]


def test_migration_on_keeps_the_instance_and_its_state() -> None:
    log: list[str] = []
    rec = Recorder(log, scope="experiment")
    counter = {"stage_starts": 0}

    class Counting(sg.Callback):
        scope = sg.CallbackScope.experiment

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def on_stage_start(self, runner: Any) -> None:
            self.calls += 1
            counter["stage_starts"] = self.calls
            assert runner.callbacks["counting"] is self

    exp = sg.Experiment("migrate", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", loaders=loaders(), callbacks=callbacks(rec=rec, counting=Counting()))
    exp.add_stage("b", loaders=loaders(), callbacks=stand_ins())
    exp.add_stage("c", loaders=loaders(), callbacks=stand_ins())
    runner = run_cpu(exp)
    starts = [line for line in log if line.startswith("stage_")]
    assert starts == ["stage_start a", "stage_end a", "stage_start b", "stage_end b",
                      "stage_start c", "stage_end c"]
    assert counter["stage_starts"] == 3
    assert runner.callbacks["rec"] is rec
    assert runner.stage is not None and runner.stage.callback("rec").origin == "migrated"


def test_migration_off_stops_the_callback() -> None:
    log: list[str] = []
    exp = sg.Experiment("no-migrate", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", loaders=loaders(), callbacks=callbacks(rec=Recorder(log,
                                                                          scope="experiment")))
    exp.add_stage("b", loaders=loaders(), callbacks=stand_ins(), migrate_from_previous_stage=False)
    run_cpu(exp)
    assert [line for line in log if not line.startswith(("batch", "loader", "epoch"))] == [
        "experiment_start", "stage_start a", "stage_end a"]


def test_experiment_events_go_to_the_first_and_last_stage() -> None:
    first: list[str] = []
    last: list[str] = []
    exp = sg.Experiment("ends", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", loaders=loaders(), callbacks=callbacks(rec=Recorder(first)))
    exp.add_stage("b", loaders=loaders(), callbacks=callbacks(rec=Recorder(last)))
    run_cpu(exp)
    assert first[0] == "experiment_start" and "experiment_end" not in first
    assert last[-1] == "experiment_end" and "experiment_start" not in last


def test_model_weights_carry_over_and_a_stage_model_overrides() -> None:
    built: list[torch.nn.Module] = []

    def factory() -> torch.nn.Module:
        built.append(tiny_model())
        return built[-1]

    models: list[Any] = []
    exp = sg.Experiment("models", model=factory, lints=NO_OPTIMIZER)
    own = tiny_model()
    for name, model in (("a", None), ("b", own), ("c", None)):
        exp.add_stage(name, loaders=loaders(), model=model, callbacks=callbacks(
            hook=Hook("on_stage_start", lambda r: models.append(r.model))))
    run_cpu(exp)
    assert len(built) == 1
    assert models == [built[0], own, built[0]]


def test_early_stop_in_a_batch_ends_that_loader_only() -> None:
    log: list[str] = []

    def stop(runner: Any) -> None:
        if runner.epoch == 1 and runner.loader_name == "train" and runner.loader_batch_step == 1:
            runner.need_early_stop = True

    exp = sg.Experiment("stop-batch", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("s", num_epochs=2, loaders=loaders(train=6),
                  callbacks=callbacks(stop=Hook("on_batch_end", stop), rec=Recorder(log)))
    runner = run_cpu(exp)
    assert [line for line in log if not line.startswith("batch_start")] == lines("""
        experiment_start
        stage_start s
        epoch_start s 1
        loader_start s 1 train
        batch_end s 1 train 1
        loader_end s 1 train
        loader_start s 1 valid
        batch_end s 1 valid 1
        loader_end s 1 valid
        epoch_end s 1
        epoch_start s 2
        loader_start s 2 train
        batch_end s 2 train 1
        batch_end s 2 train 2
        batch_end s 2 train 3
        loader_end s 2 train
        loader_start s 2 valid
        batch_end s 2 valid 1
        loader_end s 2 valid
        epoch_end s 2
        stage_end s
        experiment_end
    """)
    assert runner.need_early_stop is False
    assert (runner.global_epoch, runner.global_batch_step) == (2, 6)


def test_early_stop_at_epoch_end_ends_the_stage_and_global_epoch_advances() -> None:
    log: list[str] = []
    epochs: list[tuple[int, int]] = []

    def stop(runner: Any) -> None:
        runner.need_early_stop = runner.stage_name == "a" and runner.epoch == 2

    exp = sg.Experiment("stop-epoch", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", num_epochs=5, loaders=loaders(),
                  callbacks=callbacks(stop=Hook("on_epoch_end", stop, scope="experiment"),
                                      rec=Recorder(log, scope="experiment")))
    exp.add_stage("b", num_epochs=2, loaders=loaders(), callbacks=callbacks(
        ep=Hook("on_epoch_start", lambda r: epochs.append((r.epoch, r.global_epoch)))))
    runner = run_cpu(exp)
    assert [line for line in log if line.startswith(("epoch", "stage"))] == lines("""
        stage_start a
        epoch_start a 1
        epoch_end a 1
        epoch_start a 2
        epoch_end a 2
        stage_end a
        stage_start b
        epoch_start b 1
        epoch_end b 1
        epoch_start b 2
        epoch_end b 2
        stage_end b
    """)
    assert epochs == [(1, 3), (2, 4)]
    assert runner.global_epoch == 4 and runner.need_early_stop is False


def test_infer_stage_runs_in_eval_mode_without_gradients() -> None:
    modes: list[tuple[str, str, bool, bool, bool, bool, bool]] = []

    def record(r: Any) -> None:
        modes.append((r.stage_name, r.loader_name, r.model.training, torch.is_grad_enabled(),
                      r.is_train_loader, r.is_valid_loader, r.is_infer_loader))

    exp = sg.Experiment("infer", model=tiny_model, lints=NO_OPTIMIZER)
    hook = Hook("on_batch_end", record, scope="experiment")
    exp.add_stage("train", loaders=loaders(train=2, valid=2), callbacks=callbacks(hook=hook))
    exp.add_stage("infer", loaders={"infer": loader(2)})
    runner = run_cpu(exp)
    assert modes == [
        ("train", "train", True, True, True, False, False),
        ("train", "valid", False, False, False, True, False),
        ("infer", "infer", False, False, False, False, True),
    ]
    assert runner.is_infer_stage and runner.output["logits"].shape == (2, 2)


def test_distributed_sampler_gets_the_stage_epoch_except_in_inference() -> None:
    data = loader(4).dataset
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    infer_sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=False)
    epochs: list[int] = []
    exp = sg.Experiment("ddp-sampler", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("train", num_epochs=3,
                  loaders={"train": DataLoader(data, batch_size=2, sampler=sampler),
                           "valid": loader(2)},
                  callbacks=callbacks(hook=Hook("on_loader_start",
                                                lambda r: epochs.append(sampler.epoch))))
    exp.add_stage("infer", loaders={"infer": DataLoader(data, sampler=infer_sampler)})
    run_cpu(exp)
    assert epochs == [1, 1, 2, 2, 3, 3]  # set before on_loader_start of 'train', every epoch
    assert infer_sampler.epoch == 0


def test_check_run_two_batches_two_epochs() -> None:
    log: list[str] = []
    exp = sg.Experiment("check", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", num_epochs=5, loaders=loaders(train=10, valid=10),
                  callbacks=callbacks(rec=Recorder(log, scope="experiment")), check_run=True)
    exp.add_stage("b", num_epochs=3, loaders=loaders(train=10, valid=10), callbacks=stand_ins())
    runner = run_cpu(exp)
    a = [line for line in log if line.startswith("batch_end a")]
    assert a == ["batch_end a 1 train 1", "batch_end a 1 train 2", "batch_end a 1 valid 1",
                 "batch_end a 1 valid 2", "batch_end a 2 train 1", "batch_end a 2 train 2",
                 "batch_end a 2 valid 1", "batch_end a 2 valid 2"]
    assert len([line for line in log if line.startswith("batch_end b")]) == 3 * 10
    assert runner.global_epoch == 2 + 3


def test_runner_check_makes_every_stage_a_check_run() -> None:
    lens: list[tuple[str, int, Any, bool]] = []
    exp = sg.Experiment("check-all", model=tiny_model, lints=NO_OPTIMIZER)
    for name in ("a", "b"):
        exp.add_stage(name, num_epochs=4, loaders=loaders(train=10, valid=10),
                      callbacks=callbacks(hook=Hook("on_loader_end", lambda r: lens.append(
                          (r.stage_name, r.num_epochs, r.loader_len, r.is_check_run)))))
    runner = run_cpu(exp, check=True)
    assert lens == [("a", 2, 2, True)] * 4 + [("b", 2, 2, True)] * 4
    assert (runner.global_epoch, runner.global_batch_step) == (4, 16)


def test_seeds_per_stage_epoch_and_loader() -> None:
    seeds: list[tuple[str, int]] = []

    def factory() -> torch.nn.Module:
        seeds.append(("model", torch.initial_seed()))
        return tiny_model()

    def at(label: str) -> Hook:
        event = f"on_{label}_start"
        return Hook(event, lambda r: seeds.append((label, torch.initial_seed())))

    exp = sg.Experiment("seeds", seed=100, model=factory, lints=NO_OPTIMIZER)
    exp.add_stage("a", num_epochs=2, loaders={"train": loader(2), "valid": loader(2)},
                  callbacks=callbacks(epoch=at("epoch"), loader=at("loader")))
    exp.add_stage("b", model=factory, loaders=loaders(), callbacks=callbacks(epoch=at("epoch")))
    run_cpu(exp)
    assert seeds == [("model", 100), ("epoch", 102), ("loader", 102), ("loader", 102),
                     ("epoch", 103), ("loader", 103), ("loader", 103),
                     ("model", 100), ("epoch", 104)]


def test_metric_dicts_are_reset_at_their_level() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    class Writes(sg.Callback):
        def on_epoch_start(self, r: Any) -> None:
            seen.append(("epoch_start", dict(r.epoch_metrics)))
            r.epoch_metrics["e"] = r.epoch

        def on_loader_start(self, r: Any) -> None:
            seen.append(("loader_start", dict(r.loader_metrics)))
            r.loader_metrics["l"] = r.loader_name

        def on_batch_start(self, r: Any) -> None:
            seen.append(("batch_start", dict(r.batch_metrics)))
            r.batch_metrics["b"] = r.loader_batch_step

    exp = sg.Experiment("metrics", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("s", num_epochs=2, loaders=loaders(train=2, valid=2),
                  callbacks=callbacks(writes=Writes()))
    runner = run_cpu(exp)
    assert all(snapshot == {} for _, snapshot in seen) and len(seen) == 2 * (1 + 2 + 2)
    assert runner.epoch_metrics == {"e": 2}
    assert runner.loader_metrics == {"l": "valid"}
    assert runner.batch_metrics == {"b": 1}


def test_a_later_stage_starts_with_no_loader_state() -> None:
    seen: list[tuple[Any, ...]] = []

    def record(runner: Any) -> None:
        seen.append((runner.stage_name, runner.loader_name, runner.is_train_loader,
                     runner.is_valid_loader, runner.is_infer_loader, runner.loader_batch_step,
                     runner.loader_sample_step, runner.batch_size, runner.loader_len,
                     dict(runner.batch_metrics), dict(runner.epoch_metrics)))

    class Probe(sg.Callback):
        scope = sg.CallbackScope.experiment

        def on_stage_start(self, runner: Any) -> None:
            record(runner)

        def on_epoch_start(self, runner: Any) -> None:
            record(runner)

    exp = sg.Experiment("fresh", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("one", loaders=loaders(), callbacks=callbacks(probe=Probe()))
    exp.add_stage("two", loaders=loaders(), callbacks=stand_ins())
    run_cpu(exp)
    fresh = (None, False, False, False, 0, 0, 0, 0, {}, {})
    assert seen == [("one", *fresh), ("one", *fresh), ("two", *fresh), ("two", *fresh)]


def test_loader_steps_are_zero_at_loader_start() -> None:
    seen: list[tuple[str, int, int]] = []

    def record(runner: Any) -> None:
        seen.append((runner.loader_name, runner.loader_batch_step, runner.loader_sample_step))

    exp = sg.Experiment("steps", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("train", loaders=loaders(),
                  callbacks=callbacks(probe=Hook("on_loader_start", record)))
    run_cpu(exp)
    assert seen == [("train", 0, 0), ("valid", 0, 0)]


def test_dispatch_order_when_a_stage_redeclares_a_migrating_name() -> None:
    """As in the seed: the stage's own callbacks sorted by order, the migrating instance in the
    slot of its re-declaration, new migrating ones after them, then a stable sort by order."""
    calls: list[tuple[str, str]] = []

    class Named(sg.Callback):
        def __init__(self, label: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.label = label

        def on_epoch_end(self, runner: Any) -> None:
            calls.append((runner.stage_name, self.label))

    ex = sg.CallbackScope.experiment
    exp = sg.Experiment("slots", model=tiny_model, lints=NO_OPTIMIZER | {"SF301": "allow"})
    exp.add_stage("one", loaders=loaders(), callbacks=callbacks(
        exp=Named("exp", order=10, scope=ex), exp2=Named("exp2", order=10, scope=ex),
        exp_ext=Named("exp_ext", order=10, scope=ex)))
    exp.add_stage("two", loaders=loaders(), callbacks=callbacks(
        stage=Named("stage", order=10), exp_ext=Named("redeclared", order=0),
        tie=Named("tie", order=10)))
    run_cpu(exp)
    assert [label for stage, label in calls if stage == "two"] == [
        "exp_ext", "stage", "tie", "exp", "exp2"]
