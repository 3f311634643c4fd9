"""Random generator states: capture every generator a run draws from, and put them back.

Global generators (Python's `random`, NumPy's legacy one, torch's CPU generator, CUDA's and MPS's
where present) and the private `torch.Generator` of each loader (``DataLoader(generator=...)``,
a sampler's own generator), whose state carries over from epoch to epoch and which the runner's
per-epoch seeding does not touch. States are plain data that ``torch.load(..., weights_only=True)``
accepts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from stagegraph.runtime.seeding import numpy


def capture() -> dict[str, Any]:
    """The state of every global generator present here."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": {"version": version, "internal": list(internal),
                                        "gauss": gauss},
                             "torch": torch.get_rng_state()}
    if numpy is not None:
        kind, keys, pos, has_gauss, cached = numpy.random.get_state(legacy=True)
        state["numpy"] = {"kind": kind, "keys": torch.as_tensor(keys.astype("int64")),
                          "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    if _mps_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture` returned (generators absent here or there are skipped)."""
    python = state.get("python")
    if python is not None:
        random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    saved = state.get("numpy")
    if numpy is not None and saved is not None:
        keys = numpy.asarray(saved["keys"].numpy(), dtype=numpy.uint32)
        numpy.random.set_state((saved["kind"], keys, saved["pos"], saved["has_gauss"],
                                saved["cached"]))
    if torch.cuda.is_available() and state.get("cuda"):
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
    if _mps_available() and state.get("mps") is not None:
        torch.mps.set_rng_state(state["mps"])


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct private generators of a loader, its sampler and its batch sampler."""
    found: dict[int, torch.Generator] = {}
    for owner in _owners(loader):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            found.setdefault(id(generator), generator)
    return list(found.values())


def _owners(loader: Any) -> Iterator[Any]:
    yield loader
    sampler = getattr(loader, "sampler", None)
    if sampler is not None:
        yield sampler
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None:
        yield batch_sampler
        yield getattr(batch_sampler, "sampler", None)


def capture_loaders(loaders: Mapping[str, Any]) -> dict[str, list[torch.Tensor]]:
    """Per loader name, the states of its private generators (loaders without any are left out)."""
    states = {name: [g.get_state() for g in loader_generators(loader)]
              for name, loader in loaders.items()}
    return {name: found for name, found in states.items() if found}


def restore_loaders(loaders: Mapping[str, Any], states: Mapping[str, list[torch.Tensor]]) -> None:
    """Inverse of :func:`capture_loaders` for the loaders present in both."""
    for name, saved in states.items():
        loader = loaders.get(name)
        if loader is None:
            continue
        for generator, state in zip(loader_generators(loader), saved, strict=False):
            generator.set_state(state)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and bool(backend.is_available())
