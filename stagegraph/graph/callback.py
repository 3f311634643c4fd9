"""The `Callback` base class: event methods plus the declarations the compiler orders them by."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from stagegraph.graph.enums import EVENT_METHODS, CallbackNode, CallbackOrder, CallbackScope

_DECLARATIONS = ("order", "node", "scope", "after", "before", "reads", "writes", "claims",
                 "needs", "watch", "watch_minimize", "lints")


class Callback:
    """A unit of training logic that reacts to runner events.

    Declarations live on the class and may be overridden per instance by keyword arguments::

        class Accuracy(Callback):
            order = CallbackOrder.Metric
            reads = ("output.logits", "batch.targets")
            writes = ("metric.accuracy",)

            def on_batch_end(self, runner): ...

        Accuracy(after=("criterion",))   # this instance also runs after 'criterion'

    ``reads`` / ``writes`` are dataflow keys (``namespace.name``; ``namespace.*`` reads or writes
    the whole namespace). Every writer of a key runs before every reader of it in the same stage.
    ``kind`` names what a built-in callback is for (``"criterion"``, ``"optimizer"``...): a callback
    of the same kind replaces the default the compiler would otherwise add.

    A key may name the stage's main metric or valid loader as ``{main_metric}`` /
    ``{valid_loader}`` (``reads=("valid_metric.{main_metric}",)``): the compiler substitutes the
    values of each stage the callback runs in. The other declarations tell the compiler what the
    callback needs from a stage:

    - ``claims``: resources only one callback of a stage may hold (``"optimizer:"`` steps the
      stage's optimizer, ``"early_stopping"``, ``"files:checkpoints/"``); two holders are an error;
    - ``needs``: what the stage or run must provide (``"logdir"``, ``"optimizer"``, ...);
    - ``watch`` / ``watch_minimize``: the valid metric this callback ranks epochs by and its
      direction (``None``: the stage's ``minimize_metric``), checked against the metric's name;
    - ``lints``: diagnostic levels for this callback, ``{"SF301": "allow"}``.
    """

    order: ClassVar[int] = CallbackOrder.Internal
    node: ClassVar[CallbackNode] = CallbackNode.all
    scope: ClassVar[CallbackScope] = CallbackScope.stage
    after: ClassVar[tuple[str, ...]] = ()
    before: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str | None] = None
    claims: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[tuple[str, ...]] = ()
    watch: ClassVar[str | None] = None
    watch_minimize: ClassVar[bool | None] = None
    lints: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        *,
        order: int | None = None,
        node: CallbackNode | str | None = None,
        scope: CallbackScope | str | None = None,
        after: Iterable[str] | str | None = None,
        before: Iterable[str] | str | None = None,
        reads: Iterable[str] | str | None = None,
        writes: Iterable[str] | str | None = None,
        claims: Iterable[str] | str | None = None,
        needs: Iterable[str] | str | None = None,
        watch: str | None = None,
        watch_minimize: bool | None = None,
        lints: dict[str, str] | None = None,
    ) -> None:
        # Stored raw: the compiler's schema pass validates them and reports every mistake at once.
        for name, value in (("order", order), ("node", node), ("scope", scope), ("watch", watch),
                            ("watch_minimize", watch_minimize), ("lints", lints)):
            if value is not None:
                setattr(self, name, value)
        names: tuple[Iterable[str] | str | None, ...] = (after, before, reads, writes, claims,
                                                         needs)
        fields = ("after", "before", "reads", "writes", "claims", "needs")
        for name, names_value in zip(fields, names, strict=True):
            if isinstance(names_value, str):
                setattr(self, name, (names_value,))
            elif names_value is not None:
                setattr(self, name, tuple(names_value) if _is_iterable(names_value)
                        else names_value)

    # --- events -------------------------------------------------------------------------------
    def on_experiment_start(self, runner: Any) -> None:
        """Once, before the first stage."""

    def on_stage_start(self, runner: Any) -> None:
        """At the start of each stage this callback belongs to."""

    def on_epoch_start(self, runner: Any) -> None:
        """At the start of each epoch."""

    def on_loader_start(self, runner: Any) -> None:
        """Before the first batch of each loader."""

    def on_batch_start(self, runner: Any) -> None:
        """Before the batch handler (the model's forward pass)."""

    def on_batch_end(self, runner: Any) -> None:
        """After the batch handler."""

    def on_loader_end(self, runner: Any) -> None:
        """After the last batch of each loader."""

    def on_epoch_end(self, runner: Any) -> None:
        """After every loader of the epoch."""

    def on_stage_end(self, runner: Any) -> None:
        """At the end of each stage this callback belongs to."""

    def on_experiment_end(self, runner: Any) -> None:
        """Once, after the last stage."""

    def on_exception(self, runner: Any) -> None:
        """When the run fails; ``runner.exception`` holds the error."""

    # --- state for checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints; stateless callbacks return ``{}``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def loader_state_dict(self) -> dict[str, Any]:
        """State gathered within the current loader (running sums, buffered outputs) that a
        mid-epoch checkpoint saves; ``{}`` if none. See docs/checkpoints.md."""
        return {}

    def load_loader_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`loader_state_dict` returned, after ``on_loader_start``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _is_iterable(value: object) -> bool:
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


def overridden_events(callback: object) -> tuple[str, ...]:
    """The event methods ``callback``'s class defines itself rather than inheriting as no-ops."""
    cls = type(callback)
    found = []
    for event in EVENT_METHODS:
        method = getattr(cls, event, None)
        if method is not None and method is not getattr(Callback, event):
            found.append(event)
    # An instance attribute (a function stored on the object) counts as an override too.
    own = getattr(callback, "__dict__", {})
    found.extend(e for e in EVENT_METHODS if e in own and e not in found)
    return tuple(e for e in EVENT_METHODS if e in found)


def declared(callback: object, name: str) -> Any:
    """The declaration ``name`` of ``callback`` (instance value, else class value)."""
    if name not in _DECLARATIONS and name != "kind":
        raise KeyError(name)
    return getattr(callback, name, getattr(Callback, name))
