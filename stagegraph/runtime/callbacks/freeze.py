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
    else ``lr_factor`` times the first group's learning rate at that moment. The stage's
    scheduler, if any, must then be one of `SCHEDULERS` (torch's, by class; any other is
    refused at stage start): each of its per-group values gets an entry for the new group, the
    first group's (a learning rate scaled by the two groups' ratio), so the new group follows
    the first group's schedule at that ratio. The callback's state says whether it unfroze, so
    a run resumed after that epoch rebuilds the same param groups before the optimizer's state
    is loaded. Without ``unfreeze_at_epoch`` the modules stay frozen for the stage. At the end
    ``requires_grad`` comes back and the optimizer gets its param groups back exactly as the
    stage found them (same parameters, same order, the added group removed), so an optimizer
    object given to the experiment resumes and ``load_from_previous_stage`` loads by position.
    ``optimizer_key`` picks one optimizer from a dict of them.

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
        #: The names or patterns as given (what run parameters record as ``modules``).
        self.modules: str | list[str] = modules if isinstance(modules, str) else list(modules)
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.unfreeze_lr = unfreeze_lr
        self.lr_factor = lr_factor
        self.optimizer_key = optimizer_key
        self.matched: list[Any] = []  # the frozen modules of this stage
        self.params: list[Any] = []  # the parameters this callback turned off
        self.frozen = False
        self.unfrozen = False  # unfrozen in this stage (saved: a resume rebuilds the group)
        self._restored = False
        self._groups: list[list[Any]] = []  # each group's params at stage start, in order

    # --- events -------------------------------------------------------------------------------
    def setup_model(self, runner: Any) -> None:
        """Freeze, once the stage's model is built and before its optimizer is (the runner calls
        this from its stage set-up; ``on_stage_start`` calls it if nothing did)."""
        self.matched, unmatched = match_modules(runner.model, self.patterns)
        if unmatched:
            raise ValueError(self._no_match(runner, unmatched))
        if self.unfreeze_at_epoch is not None and int(runner.distributed_rank) >= 0:
            raise ValueError(f"stage {runner.stage_name!r}, callback {self._name(runner)!r}: "
                             "unfreezing in a distributed run is not supported (DDP reduces only "
                             "the parameters that trained when it wrapped the model); freeze "
                             "for the whole stage and unfreeze in the next one")
        seen: set[int] = set()
        self.params = []
        for module in self.matched:
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
        if self.unfreeze_at_epoch is not None:
            self._check_scheduler(runner)
        self._groups = [list(g["params"]) for g in optimizer.param_groups] if optimizer else []
        if optimizer is not None:
            _drop_params(optimizer, self.params)
        if self.unfrozen:  # resumed after the unfreeze: the same param groups as saved
            self._unfreeze(runner)

    def on_epoch_start(self, runner: Any) -> None:
        if (self.frozen and self.unfreeze_at_epoch is not None
                and int(runner.epoch) >= self.unfreeze_at_epoch):
            self._unfreeze(runner)
            self.unfrozen = True

    def on_loader_start(self, runner: Any) -> None:
        if self.frozen and runner.is_train_loader:
            for module in self.matched:
                module.eval()

    def on_stage_end(self, runner: Any) -> None:
        """Make the parameters trainable again and give the optimizer back its param groups
        exactly as the stage found them (an optimizer object given to the experiment lives on:
        its state is loaded by position on resume or with ``load_from_previous_stage``)."""
        if self.frozen:
            for param in self.params:
                param.requires_grad_(True)
        optimizer = self._optimizer(runner)
        if optimizer is not None and len(optimizer.param_groups) < len(self._groups):
            raise ValueError(f"stage {runner.stage_name!r}, callback {self._name(runner)!r}: "
                             f"the optimizer ends the stage with {len(optimizer.param_groups)} "
                             f"param groups and began it with {len(self._groups)}, so the "
                             "frozen parameters cannot be put back in their groups; remove "
                             "param groups in a stage without FreezeCallback")
        if optimizer is not None and self._groups:
            _restore_groups(optimizer, self._groups, self.params, self._scheduler(runner))
        self.frozen = False
        self.matched, self.params, self._groups = [], [], []

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
        first = optimizer.param_groups[0]
        ratio = lr / float(first["lr"]) if float(first["lr"]) else 1.0
        base = first.get("initial_lr")  # a scheduler's base lr: the new group's, scaled
        optimizer.add_param_group({"params": params, "lr": lr,
                                   "initial_lr": lr if base is None else ratio * float(base)})
        _schedule_new_group(self._scheduler(runner), optimizer, ratio)

    def _check_scheduler(self, runner: Any) -> None:
        scheduler = self._scheduler(runner)
        kind = type(scheduler)
        if scheduler is None or (kind.__name__ in SCHEDULERS
                                 and kind.__module__ == "torch.optim.lr_scheduler"):
            return
        raise ValueError(
            f"stage {runner.stage_name!r}, callback {self._name(runner)!r}: unfreeze_at_epoch "
            f"cannot add a param group to the scheduler {type(scheduler).__name__} (it keeps "
            f"per-group values FreezeCallback does not know); use one of {', '.join(SCHEDULERS)}, "
            "or freeze for a whole stage and train the unfrozen model in a next stage with its "
            "own optimizer and scheduler")

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


def _drop_params(optimizer: Any, params: Sequence[Any]) -> None:
    """Take ``params`` (frozen) out of the optimizer's groups and state. Empty groups stay, so a
    scheduler's per-group values keep their places."""
    frozen = {id(p) for p in params}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in frozen]
    for param in params:
        optimizer.state.pop(param, None)


def _restore_groups(optimizer: Any, groups: list[list[Any]], unfrozen: Sequence[Any],
                    scheduler: Any) -> None:
    """Put back each group's parameter list as saved at stage start (by position: loading a
    checkpoint replaces the group dicts), remove the groups added since that hold only the
    callback's parameters, their entries in the scheduler's per-group lists, and the state
    of parameters no group holds any more."""
    count, mine = len(groups), {id(p) for p in unfrozen}
    for group, params in zip(optimizer.param_groups[:count], groups, strict=True):
        group["params"] = params
    optimizer.param_groups[count:] = [g for g in optimizer.param_groups[count:]
                                      if not {id(p) for p in g["params"]} <= mine]
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for param in [p for p in optimizer.state if id(p) not in held]:
        del optimizer.state[param]  # trained in the removed group only
    count = len(optimizer.param_groups)
    for name in _PER_GROUP:
        values = getattr(scheduler, name, None)
        if isinstance(values, list) and len(values) > count:
            del values[count:]


# The torch schedulers whose per-group values FreezeCallback extends for the new param group.
SCHEDULERS = ("StepLR", "MultiStepLR", "ExponentialLR", "ConstantLR", "LinearLR", "PolynomialLR",
              "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "LambdaLR",
              "MultiplicativeLR", "ReduceLROnPlateau", "OneCycleLR", "CyclicLR")
_SCALED = ("base_lrs", "max_lrs")  # per-group learning rates: scaled to the new group
_COPIED = ("lr_lambdas", "min_lrs", "base_momentums", "max_momentums")  # copied from group 0
_PER_GROUP = (*_SCALED, *_COPIED, "_last_lr")


def _schedule_new_group(scheduler: Any, optimizer: Any, ratio: float) -> None:
    """Extend a scheduler built before the new group so it schedules that group as group 0,
    scaled by ``ratio`` (the new group's lr over group 0's when it was added)."""
    if scheduler is None:
        return
    groups = optimizer.param_groups
    count, new, first = len(groups), groups[-1], groups[0]
    for name in (*_SCALED, *_COPIED):
        values = getattr(scheduler, name, None)
        if isinstance(values, list) and len(values) == count - 1:
            values.append(ratio * values[0] if name in _SCALED else values[0])
    last = getattr(scheduler, "_last_lr", None)
    if isinstance(last, list) and len(last) == count - 1:
        last.append(new["lr"])
    for key in ("max_lr", "min_lr"):  # OneCycleLR keeps these in the groups
        if key in first:
            new[key] = ratio * float(first[key])
    for key in ("max_momentum", "base_momentum", "momentum", "betas"):
        if key in first and type(scheduler).__name__ in ("OneCycleLR", "CyclicLR"):
            new[key] = first[key]
