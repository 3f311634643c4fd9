"""The runner's state: the seed runner's attribute names, which callbacks read and write.

Every attribute exists from construction on, so a callback never meets an ``AttributeError``;
the runner updates them at the level each belongs to (experiment, stage, epoch, loader, batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stagegraph.compiler.plan import ExecutionPlan, StagePlan
from stagegraph.launch import torchrun_env


def distributed_rank() -> int:
    """This process's rank: in an initialised process group, else the one torchrun gave it (the
    runner initialises the group when it runs), else -1 (a single process)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    env = torchrun_env()
    return env.rank if env is not None else -1


class RunnerState:
    """Fields a callback may read (and, for the flags and metric dicts, write)."""

    def __init__(self, plan: ExecutionPlan, device: torch.device, logdir: Path | None) -> None:
        # experiment
        self.plan: ExecutionPlan = plan
        self.experiment: Any = plan.experiment_object
        self.device: torch.device = device
        self.logdir: Path | None = logdir
        self.distributed_rank: int = distributed_rank()
        self.is_distributed_master: bool = self.distributed_rank <= 0
        self.is_distributed_worker: bool = self.distributed_rank > 0
        self.global_epoch: int = 0
        self.global_batch_step: int = 0
        self.global_sample_step: int = 0
        self.need_exception_reraise: bool = True
        self.exception: BaseException | None = None
        # stage
        self.stage: StagePlan | None = None
        self.stage_name: str | None = None
        self.is_infer_stage: bool = False
        self.is_check_run: bool = False
        self.precision: str = "fp32"
        self.num_epochs: int = 0
        self.main_metric: str = "loss"
        self.minimize_metric: bool = True
        self.valid_loader: str = "valid"
        self.callbacks: dict[str, Any] = {}
        self.model: Any = None
        self.criterion: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.loaders: dict[str, Any] = {}
        self.valid_metrics: dict[str, Any] = {}
        self.best_valid_metrics: dict[str, Any] = {}
        self.is_best_valid: bool = False
        self.need_early_stop: bool = False
        # epoch
        self.epoch: int = 0
        self.epoch_metrics: dict[str, Any] = {}
        # loader
        self.loader_name: str | None = None
        self.loader_len: int | None = 0
        self.loader_batch_size: int | None = 0
        self.loader_batch_step: int = 0
        self.loader_sample_step: int = 0
        self.is_train_loader: bool = False
        self.is_valid_loader: bool = False
        self.is_infer_loader: bool = False
        self.loader_metrics: dict[str, Any] = {}
        # batch
        self.batch_size: int = 0
        self.input: Any = None
        self.output: Any = None
        self.batch_metrics: dict[str, Any] = {}

    def reset_loader_state(self) -> None:
        """No loader yet: what a stage's first events see (the seed resets these per stage too).

        Without it, ``on_stage_start`` and the first ``on_epoch_start`` of a later stage would
        still show the previous stage's last loader (``loader_name == "valid"``,
        ``is_valid_loader``...).
        """
        self.loader_name = None
        self.loader_len = 0
        self.loader_batch_size = 0
        self.loader_batch_step = self.loader_sample_step = 0
        self.is_train_loader = self.is_valid_loader = self.is_infer_loader = False
        self.batch_size = 0
        self.input = self.output = None
        self.batch_metrics, self.loader_metrics, self.epoch_metrics = {}, {}, {}
