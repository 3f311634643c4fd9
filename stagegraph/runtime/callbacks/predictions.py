"""`PredictionWriter`: saves the outputs of inference loaders to ``logdir/predictions/``."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder

if TYPE_CHECKING:
    import torch

FORMATS = ("pt", "csv")


class PredictionWriter(Callback):
    """Collects outputs batch by batch and writes one file per loader at loader end.

    ``keys`` are the output keys to save (default: every tensor in ``runner.output``);
    ``input_keys`` adds batch entries such as ids or targets. With ``argmax=True`` each
    two-dimensional output ``key`` also gets ``{key}_argmax``, the predicted class. Files go to
    ``logdir/predictions/{stage}_{loader}.pt`` (a dict of tensors, ``torch.load(...,
    weights_only=True)``) or ``.csv`` (one row per sample; a ``(n, c)`` tensor gives columns
    ``key_0 .. key_{c-1}``). Only ``infer*`` loaders are written unless ``loaders`` names others.
    Not added by default; in a distributed run the master writes the samples it saw. The data
    also stays in ``predictions[f"{stage}_{loader}"]``; without a logdir that is the only copy
    (a warning says no file is written). It declares ``needs=("logdir",)`` and claims its folder
    (``files:predictions/``), so the compiler reports a run without a logdir, or two writers of
    one folder in a stage.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    kind: ClassVar[str | None] = "prediction_writer"
    needs: ClassVar[tuple[str, ...]] = ("logdir",)

    def __init__(self, keys: Sequence[str] | None = None, input_keys: Sequence[str] = (),
                 format: str = "pt", argmax: bool = False, loaders: Sequence[str] | None = None,
                 folder: str = "predictions", **declarations: Any) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        outputs = tuple(f"output.{k}" for k in keys) if keys is not None else ("output.*",)
        declarations.setdefault("reads", (*outputs, *(f"batch.{k}" for k in input_keys)))
        declarations.setdefault("claims", (f"files:{folder}/",))
        super().__init__(**declarations)
        self.keys = None if keys is None else tuple(keys)
        self.input_keys = tuple(input_keys)
        self.format = format
        self.argmax = argmax
        self.loaders = None if loaders is None else tuple(loaders)
        self.folder = folder
        self.written: list[Path] = []
        self.predictions: dict[str, dict[str, torch.Tensor]] = {}
        self._parts: dict[str, list[torch.Tensor]] | None = None

    def on_loader_start(self, runner: Any) -> None:
        wanted = (runner.is_infer_loader if self.loaders is None
                  else runner.loader_name in self.loaders)
        self._parts = {} if wanted else None

    def on_batch_end(self, runner: Any) -> None:
        parts = self._parts
        if parts is None:
            return
        import torch

        output = runner.output
        keys = self.keys if self.keys is not None else [
            k for k, v in output.items() if isinstance(v, torch.Tensor)]
        for key in keys:
            parts.setdefault(key, []).append(output[key].detach().cpu())
        for key in self.input_keys:
            parts.setdefault(key, []).append(torch.as_tensor(runner.input[key]).cpu())

    def loader_state_dict(self) -> dict[str, Any]:
        return {} if self._parts is None else {"parts": self._parts}

    def load_loader_state_dict(self, state: dict[str, Any]) -> None:
        self._parts = {key: list(parts) for key, parts in state["parts"].items()}

    def on_loader_end(self, runner: Any) -> None:
        parts, self._parts = self._parts, None
        if not parts:
            return
        import torch

        from stagegraph.runtime.callbacks.files import atomic_write, torch_bytes

        data = {key: torch.cat(chunks) for key, chunks in parts.items()}
        if self.argmax:
            data.update({f"{k}_argmax": v.argmax(1) for k, v in list(data.items())
                         if v.ndim == 2 and v.is_floating_point() and k in (self.keys or data)})
        self.predictions[f"{runner.stage_name}_{runner.loader_name}"] = data
        if runner.logdir is None:
            warnings.warn("PredictionWriter: no logdir, so predictions are kept in memory only "
                          "(.predictions); pass logdir= or --logdir to write files", stacklevel=2)
            return
        path = (Path(runner.logdir) / self.folder /
                f"{runner.stage_name}_{runner.loader_name}.{self.format}")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, torch_bytes(data) if self.format == "pt" else _csv_bytes(data))
        self.written.append(path)

    def __repr__(self) -> str:
        return f"PredictionWriter(keys={self.keys}, format={self.format!r})"


def _csv_bytes(data: dict[str, torch.Tensor]) -> bytes:
    columns: list[tuple[str, torch.Tensor]] = []
    for key, tensor in data.items():
        if tensor.ndim <= 1:
            columns.append((key, tensor.reshape(-1)))
        elif tensor.ndim == 2:
            columns.extend((f"{key}_{j}", tensor[:, j]) for j in range(tensor.shape[1]))
        else:
            raise ValueError(f"output {key!r} has shape {tuple(tensor.shape)}; CSV takes "
                             "one- or two-dimensional outputs (use format='pt')")
    lengths = {len(values) for _, values in columns}
    if len(lengths) > 1:
        raise ValueError(f"outputs have different numbers of rows: {sorted(lengths)}")
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([name for name, _ in columns])
    writer.writerows(zip(*(values.tolist() for _, values in columns), strict=True))
    return text.getvalue().encode("utf-8")
