"""Distributed data parallel: what one process of a run started by ``torchrun`` does differently.

`Distributed.from_environment()` is ``None`` in a single process; the runner then runs as it
always does. Under torchrun it gives the runner the rank's plan (``master`` on rank 0,
``worker`` elsewhere), the rank's device (``cuda:LOCAL_RANK`` or the CPU), a context owning the
process group for the whole experiment (NCCL on CUDA, gloo on CPU, a bounded timeout, torn down
at the end and on errors), each stage's model and loaders (rank 0's weights everywhere, DDP for
training stages, sharded ``train*`` loaders) and the ranks' agreement on a flag. stagegraph
launches nothing and communicates through `torch.distributed` only. See docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stagegraph.compiler.pipeline import compile as compile_experiment
from stagegraph.compiler.plan import ExecutionPlan, StagePlan
from stagegraph.graph.enums import LoaderKind, RankKind
from stagegraph.launch import LaunchError, TorchrunEnv, timeout_seconds
from stagegraph.launch import torchrun_env as read_torchrun_env
from stagegraph.runtime.attempt_store import attempt_store, shares_agent_store
from stagegraph.runtime.callbacks.files import unwrap as unwrap_model
from stagegraph.runtime.device import resolve_device
from stagegraph.runtime.errors import DeviceError, DistributedError, PlanError, RunError
from stagegraph.runtime.rank_failure import (
    SIGTERM_EXIT,
    Peer,
    SigtermExit,
    is_communication_error,
    rank_error,
    record_for_torchrun,
)
from stagegraph.runtime.sharding import shard_loaders


class Distributed:
    """One rank of a distributed run; ``owns_group`` when stagegraph initialises the group."""

    def __init__(self, env: TorchrunEnv, *, timeout: float, owns_group: bool = True) -> None:
        self.env = env
        self.timeout = timeout
        self.owns_group = owns_group
        self.device = torch.device("cpu")

    @classmethod
    def from_environment(cls) -> Distributed | None:
        """The rank torchrun started, a group the user initialised, or ``None`` (one process)."""
        try:
            if dist.is_available() and dist.is_initialized():
                return cls(_env_of_group(), timeout=timeout_seconds(), owns_group=False)
            env = read_torchrun_env()
            if env is None:
                return None
            timeout = timeout_seconds()
        except LaunchError as err:
            raise DistributedError(str(err)) from None
        if not dist.is_available():
            raise DistributedError(f"this process is {env} of a torchrun launch, but this torch "
                                   "build has no torch.distributed; install a build with it")
        return cls(env, timeout=timeout)

    # --- before the run -----------------------------------------------------------------------
    def plan_for(self, plan: ExecutionPlan) -> ExecutionPlan:
        """The plan of this rank: a ``single`` plan is compiled again as ``master``/``worker``."""
        kind = RankKind(self.env.kind)
        if plan.rank is kind:
            return plan
        if plan.rank is not RankKind.single:
            raise PlanError(f"this process is {self.env} (a distributed {kind.value}), but the "
                            f"plan was compiled with rank={plan.rank.value!r}; compile it with "
                            f"rank={kind.value!r}, or with the default rank='single' and let the "
                            "runner pick each rank's plan")
        again = compile_experiment(plan.experiment_object, device=plan.device, rank=kind,
                                   logdir=plan.logdir, verbose=plan.verbose)
        if not again.ok:
            raise PlanError.from_diagnostics(again.experiment, again.errors)
        return again

    def device_for(self, name: str) -> torch.device:
        """``cuda:LOCAL_RANK`` for a CUDA (or ``auto`` with CUDA) plan, else the CPU."""
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = resolve_device(name)
        if device.type == "cuda":
            device = resolve_device(f"cuda:{self.env.local_rank}")
        elif device.type != "cpu":
            raise DeviceError(f"{self.env}: device {name!r} cannot run distributed data "
                              "parallel; torch.distributed supports 'cuda' (NCCL) and 'cpu' "
                              "(gloo)")
        self.device = device
        return device

    # --- the run ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """The process group for the whole experiment: initialised once, destroyed at the end.

        A `RunError` leaving the run is re-raised saying which rank failed — naming the peer that
        is gone when a collective lost it — and written for torchrun's summary. SIGTERM (torchrun
        stopping the ranks after one failed) ends the rank with a message instead of silently.
        See `rank_failure`.
        """
        self.start()
        sigterm = SigtermExit(self.env)
        sigterm.install()
        peers: list[Peer] = []
        try:
            peers = self._peers()
            yield
        except RunError as err:
            sigterm.reporting = True  # torchrun's SIGTERM must not cut the report short
            error = rank_error(err, self.env, self.timeout, peers)
            record_for_torchrun(error)
            raise error from err.__cause__
        finally:
            if self.owns_group:
                _destroy()
            sigterm.restore()

    def start(self) -> None:
        """Initialise the process group now, if this rank owns it and has not yet (a restarted
        group agrees on its checkpoint before the run, see `elastic`); `group` destroys it."""
        if self.owns_group and not dist.is_initialized():
            self._initialise()

    def stop(self) -> None:
        """Destroy the process group `start` initialised (a run that fails before it starts)."""
        if self.owns_group:
            _destroy()

    def _peers(self) -> list[Peer]:
        """Where every rank runs, so that a rank that loses one can say which (see
        `rank_failure`)."""
        where = self.gather((socket.gethostname(), os.getpid()))
        return [Peer(rank, host, pid) for rank, (host, pid) in enumerate(where)]

    def _initialise(self) -> None:
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        timeout = timedelta(seconds=self.timeout)
        try:
            if self.env.max_restarts > 0 and shares_agent_store():  # keys of one attempt only
                dist.init_process_group(backend, store=attempt_store(self.env, self.timeout),
                                        rank=self.env.rank, world_size=self.env.world_size,
                                        timeout=timeout)
            else:
                dist.init_process_group(backend, timeout=timeout)
        except DistributedError:
            raise
        except Exception as err:
            raise DistributedError(
                f"{self.env}: could not initialise the {backend} process group: "
                f"{type(err).__name__}: {err}; start the processes with torchrun, which sets "
                "MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE") from err

    def prepare_stage(self, model: Any, loaders: dict[str, Any], stage: StagePlan,
                      seed: int) -> tuple[Any, dict[str, Any]]:
        """The stage's model (rank 0's weights; DDP when it trains) and its sharded loaders."""
        trains = not stage.is_infer and any(lp.kind is LoaderKind.train for lp in stage.loaders)
        model = prepare_model(model, self.device, train=trains)
        loaders = shard_loaders(loaders, stage, rank=self.env.rank,
                                world_size=self.env.world_size, seed=seed,
                                warn=self.env.rank == 0)
        return model, loaders

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank; every rank calls this."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank; every rank calls this."""
        values: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(values, value)
        return values

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank must call this together)."""
        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


# --- models ----------------------------------------------------------------------------------
def prepare_model(model: Any, device: torch.device, *, train: bool) -> Any:
    """Rank 0's weights on every rank; modules with trainable parameters wrapped in DDP to train.

    A dict of models is prepared module by module. A model that is already a
    `DistributedDataParallel` (a factory may wrap it itself, with its own options) is kept.
    `unwrap_model` gives the plain module back.
    """
    if isinstance(model, Mapping):
        return {name: prepare_model(value, device, train=train) for name, value in model.items()}
    if not isinstance(model, nn.Module):
        return model
    if train and not isinstance(model, DistributedDataParallel) and _trainable(model):
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)  # broadcasts rank 0's state
    broadcast_state(model)
    return model


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def broadcast_state(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank, in place.

    A master-only callback may have changed the master's weights (loading the best checkpoint at
    stage end); a stage that does not wrap the model in DDP still starts from the same weights.
    """
    for tensor in unwrap_model(module).state_dict().values():
        if isinstance(tensor, torch.Tensor):
            dist.broadcast(tensor, src=0)


# --- failures --------------------------------------------------------------------------------
def _env_of_group() -> TorchrunEnv:
    env = read_torchrun_env()
    local_rank = env.local_rank if env is not None else 0
    local_world = env.local_world_size if env is not None else 1
    restarts = (env.restart, env.max_restarts) if env is not None else (0, 0)
    return TorchrunEnv(int(dist.get_rank()), int(dist.get_world_size()), local_rank, local_world,
                       *restarts)


def _destroy() -> None:
    if not dist.is_initialized():
        return
    try:
        dist.destroy_process_group()
    except Exception as err:  # never hide the run's own error behind a teardown failure
        warnings.warn(f"destroying the process group failed: {err!r}", stacklevel=2)


__all__ = ["SIGTERM_EXIT", "Distributed", "broadcast_state", "is_communication_error",
           "prepare_model", "unwrap_model"]
