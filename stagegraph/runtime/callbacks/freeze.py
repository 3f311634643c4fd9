"""`FreezeCallback`: freezes parts of the model for a stage, or until an epoch, then unfreezes
them into a param group of their own."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder


def named_modules(model: Any) -> Iterator[tuple[str, Any]]:
    """``(name, module)`` of every submodule (``features``, ``features.0``...); a dict of models
    names them under their key (``encoder``, ``encoder.layer1``)."""
    from stagegraph.runtime.callbacks.files import unwrap

    if isinstance(model, Mapping):
        for key, module in model.items():
            for name, sub in named_modules(module):
                yield (f"{key}.{name}" if name else str(key)), sub
        return
    for name, sub in unwrap(model).named_modules():
        yield name, sub


def match_modules(model: Any, patterns: Sequence[str]) -> tuple[list[Any], list[str]]:
    """The modules whose name is one of ``patterns`` or matches it as a glob (``features.*``),
    each once, and the patterns that match nothing."""
    named = [(name, module) for name, module in named_modules(model) if name]
    found: dict[int, Any] = {}
    unmatched = []
    for pattern in patterns:
        hits = [m for name, m in named if name == pattern or fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            unmatched.append(pattern)
        found.update((id(m), m) for m in hits)
    return list(found.values()), unmatched


class FreezeCallback(Callback):
    """Freezes the modules named by ``modules`` (names or glob patterns: ``"backbone"``,
    ``"features.*"``) for the stage, or until the start of epoch ``unfreeze_at_epoch``.

    Freezing turns ``requires_grad`` off for the modules' parameters that had it on, before the
    stage's optimizer is built, so an optimizer factory sees it; parameters the factory took
    anyway (``model.parameters()``) are taken out of the optimizer's groups at stage start. On
    every train loader the frozen modules are put back in eval mode after the runner's
    ``model.train()``, so BatchNorm keeps its running statistics and Dropout stays off.

    At the start of epoch ``unfreeze_at_epoch`` (counted within the stage, from 1) the parameters
    train again, in a new param group of the optimizer whose learning rate is ``unfreeze_lr``,
    else ``lr_factor`` times the first group's learning rate at that moment. A scheduler's
    ``base_lrs`` gets the new group too, so it is scheduled from there. The callback's state
    says whether it unfroze, so a run resumed after that epoch rebuilds the same param groups
    before the optimizer's state is loaded. Without ``unfreeze_at_epoch`` the modules stay frozen
    for the stage, and their ``requires_grad`` comes back at its end. ``optimizer_key`` picks
    one optimizer from a dict of them.

    A pattern that matches no module stops the run at stage start with the module names.
    Unfreezing under distributed data parallel is refused (DDP fixes the parameters it reduces
    when it wraps the model); freezing for a whole stage works there.

    >>> FreezeCallback("backbone", unfreeze_at_epoch=3).state_dict()
    {'unfrozen': False}
    """

    order: ClassVar[int] = CallbackOrder.Internal
    needs: ClassVar[tuple[str, ...]] = ("model",)

    def __init__(self, modules: str | Sequence[str], unfreeze_at_epoch: int | None = None,
                 unfreeze_lr: float | None = None, lr_factor: float = 0.1,
                 optimizer_key: str | None = None, **declarations: Any) -> None:
        _check_arguments(unfreeze_at_epoch, unfreeze_lr, lr_factor)
        super().__init__(**declarations)
        self.patterns = _patterns(modules)
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.unfreeze_lr = unfreeze_lr
        self.lr_factor = lr_factor
        self.optimizer_key = optimizer_key
        self.modules: list[Any] = []  # the frozen modules of this stage
        self.params: list[Any] = []  # the parameters this callback turned off
        self.frozen = False
        self.unfrozen = False  # unfrozen in this stage (saved: a resume rebuilds the group)
        self._restored = False
        self._dropped: list[tuple[int, Any]] = []  # (group index, parameter) taken out

    # --- events -------------------------------------------------------------------------------
    def setup_model(self, runner: Any) -> None:
        """Freeze, once the stage's model is built and before its optimizer is (the runner calls
        this from its stage set-up; ``on_stage_start`` calls it if nothing did)."""
        self.modules, unmatched = match_modules(runner.model, self.patterns)
        if unmatched:
            raise ValueError(self._no_match(runner, unmatched))
        if self.unfreeze_at_epoch is not None and int(runner.distributed_rank) >= 0:
            raise ValueError(f"stage {runner.stage_name!r}, callback {self._name(runner)!r}: "
                             "unfreezing in a distributed run is not supported (DDP reduces only "
                             "the parameters that trained when it wrapped the model); freeze "
                             "for the whole stage and unfreeze in the next one")
        seen: set[int] = set()
        self.params = []
        for module in self.modules:
            for param in module.parameters():
                if param.requires_grad and id(param) not in seen:
                    seen.add(id(param))
                    self.params.append(param)
                    param.requires_grad_(False)
        self.frozen = True

    def on_stage_start(self, runner: Any) -> None:
        if not self.frozen:
            self.setup_model(runner)
        if not self._restored:
            self.unfrozen = False
        self._restored = False
        optimizer = self._optimizer(runner)
        self._dropped = _drop_params(optimizer, self.params) if optimizer is not None else []
        if self.unfrozen:  # resumed after the unfreeze: the same param groups as saved
            self._unfreeze(runner)

    def on_epoch_start(self, runner: Any) -> None:
        if (self.frozen and self.unfreeze_at_epoch is not None
                and int(runner.epoch) >= self.unfreeze_at_epoch):
            self._unfreeze(runner)
            self.unfrozen = True

    def on_loader_start(self, runner: Any) -> None:
        if self.frozen and runner.is_train_loader:
            for module in self.modules:
                module.eval()

    def on_stage_end(self, runner: Any) -> None:
        if self.frozen:  # never unfrozen: trainable again, and back in their groups (an
            for param in self.params:  # optimizer object given to the experiment lives on)
                param.requires_grad_(True)
            optimizer = self._optimizer(runner)
            for index, param in self._dropped if optimizer is not None else ():
                optimizer.param_groups[index]["params"].append(param)
        self.frozen = False
        self.modules, self.params, self._dropped = [], [], []

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": self.unfrozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore whether the stage had unfrozen; the next ``on_stage_start`` acts on it."""
        self.unfrozen = bool(state.get("unfrozen", False))
        self._restored = True

    # --- helpers ------------------------------------------------------------------------------
    def _unfreeze(self, runner: Any) -> None:
        for param in self.params:
            param.requires_grad_(True)
        self.frozen = False
        optimizer = self._optimizer(runner)
        if optimizer is None or not self.params:
            return
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = [p for p in self.params if id(p) not in held]
        if not params:
            return
        lr = (self.unfreeze_lr if self.unfreeze_lr is not None
              else self.lr_factor * float(optimizer.param_groups[0]["lr"]))
        optimizer.add_param_group({"params": params, "lr": lr, "initial_lr": lr})
        _schedule_new_group(self._scheduler(runner), optimizer, lr)

    def _optimizer(self, runner: Any) -> Any:
        optimizer = runner.optimizer
        if isinstance(optimizer, Mapping):
            if self.optimizer_key is None:
                raise ValueError(f"stage {runner.stage_name!r}, callback {self._name(runner)!r}: "
                                 f"the stage has optimizers {sorted(optimizer)}; say which one "
                                 "takes the unfrozen parameters with optimizer_key=")
            optimizer = optimizer[self.optimizer_key]
        return optimizer

    def _scheduler(self, runner: Any) -> Any:
        scheduler = runner.scheduler
        if isinstance(scheduler, Mapping):
            scheduler = scheduler.get(self.optimizer_key) if self.optimizer_key else None
        return scheduler

    def _name(self, runner: Any) -> str:
        callbacks = getattr(runner, "callbacks", None) or {}
        return next((n for n, cb in callbacks.items() if cb is self), type(self).__name__)

    def _no_match(self, runner: Any, unmatched: list[str]) -> str:
        names = [name for name, _ in named_modules(runner.model) if name]
        top = [n for n in names if "." not in n] or names
        nested = len(names) - len(top)
        more = f" (and {nested} nested ones, such as {names[-1]!r})" if nested else ""
        patterns = ", ".join(repr(p) for p in unmatched)
        where = f"stage {runner.stage_name!r}, callback {self._name(runner)!r}: {patterns}"
        if not names:
            return (f"{where} matches no module: the model ({type(runner.model).__name__}) has "
                    "no submodules, so there is nothing to freeze by name")
        return (f"{where} matches no module of the model, whose top-level modules are "
                f"{', '.join(top)}{more}; give a module name or a glob pattern such as "
                "'features.*'")

    def __repr__(self) -> str:
        return (f"FreezeCallback({list(self.patterns)!r}, "
                f"unfreeze_at_epoch={self.unfreeze_at_epoch!r})")


def _patterns(modules: str | Sequence[str]) -> tuple[str, ...]:
    patterns = (modules,) if isinstance(modules, str) else tuple(modules)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"modules must be a module name or pattern, or a list of them, "
                         f"not {modules!r}")
    return patterns


def _check_arguments(unfreeze_at_epoch: Any, unfreeze_lr: Any, lr_factor: Any) -> None:
    if unfreeze_at_epoch is not None and (isinstance(unfreeze_at_epoch, bool) or not
                                          isinstance(unfreeze_at_epoch, int)
                                          or unfreeze_at_epoch < 1):
        raise ValueError(f"unfreeze_at_epoch must be an int >= 1, not {unfreeze_at_epoch!r}")
    if unfreeze_lr is not None and not unfreeze_lr > 0:
        raise ValueError(f"unfreeze_lr must be > 0, not {unfreeze_lr!r}")
    if not lr_factor > 0:
        raise ValueError(f"lr_factor must be > 0, not {lr_factor!r}")


def _drop_params(optimizer: Any, params: Sequence[Any]) -> list[tuple[int, Any]]:
    """Take ``params`` (frozen) out of the optimizer's groups and state; returns where each one
    was. Empty groups stay, so a scheduler's per-group values keep their places."""
    frozen = {id(p) for p in params}
    dropped = []
    for index, group in enumerate(optimizer.param_groups):
        dropped += [(index, p) for p in group["params"] if id(p) in frozen]
        group["params"] = [p for p in group["params"] if id(p) not in frozen]
    for param in params:
        optimizer.state.pop(param, None)
    return dropped


def _schedule_new_group(scheduler: Any, optimizer: Any, lr: float) -> None:
    """Give a scheduler built before the new group its base learning rate."""
    base = getattr(scheduler, "base_lrs", None)
    if isinstance(base, list) and len(base) == len(optimizer.param_groups) - 1:
        base.append(lr)
        last = getattr(scheduler, "_last_lr", None)
        if isinstance(last, list) and len(last) == len(base) - 1:
            last.append(lr)
