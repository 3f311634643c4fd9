"""A key-value store of its own for each attempt of a group torchrun may restart.

torchrun's agent hosts the TCP store the ranks meet in (``TORCHELASTIC_USE_AGENT_STORE=True``,
the default with every rendezvous) and keeps the same one across restarts, with nothing that
tells one attempt's keys from the next's: a restarted rank can read the address a rank of the
failed attempt published, and connect to it — refused, or waiting until the timeout (pytorch
issue #135712; ``TORCHELASTIC_RESTART_COUNT`` cannot tell the attempts apart either, since an
agent whose own ranks were healthy restarts them without counting).

`attempt_store` gives the ranks of one attempt a namespace no earlier attempt used: rank 0 draws
a fresh name, and every other rank learns it by asking under a fresh name of its own, which no
stale key can answer:

- rank ``r`` draws a nonce ``M``, appends it to the list of questions and waits for the key
  ``answer/M``; then it counts itself in as ready under the name it got;
- rank 0 draws the attempt's name ``N``, answers every question it finds in the list (those of
  earlier attempts too, which nobody waits for any more) until all other ranks are ready under
  ``N``.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import torch.distributed as dist

from stagegraph.launch import TorchrunEnv
from stagegraph.runtime.errors import DistributedError

PREFIX = "stagegraph/attempt"
_POLL = 0.02


def shares_agent_store() -> bool:
    """Whether the ranks meet in the store torchrun's agent keeps across restarts."""
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)


def attempt_store(env: TorchrunEnv, timeout: float) -> dist.Store:
    """A store for this attempt only: the agent's store under a prefix fresh for the attempt."""
    try:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    except (KeyError, ValueError) as err:
        raise DistributedError(f"{env}: MASTER_ADDR and MASTER_PORT must name torchrun's store "
                               f"({err})") from err
    store = dist.TCPStore(host, port, env.world_size, is_master=False,
                          timeout=timedelta(seconds=timeout))
    name = (_answer(store, env.world_size, timeout) if env.rank == 0
            else _ask(store))
    return dist.PrefixStore(f"{PREFIX}/{name}/", store)


def _ask(store: dist.Store) -> str:
    nonce = uuid.uuid4().hex
    index = store.add(f"{PREFIX}/questions", 1)
    store.set(f"{PREFIX}/question/{index}", nonce)
    name = store.get(f"{PREFIX}/answer/{nonce}").decode()  # waits up to the store's timeout
    store.add(f"{PREFIX}/{name}/ready", 1)
    return name


def _answer(store: dist.Store, world_size: int, timeout: float) -> str:
    name = uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    answered = 0
    pending: list[int] = []  # questions counted whose text is not there yet
    while store.add(f"{PREFIX}/{name}/ready", 0) < world_size - 1:
        asked = int(store.add(f"{PREFIX}/questions", 0))
        pending += range(answered + 1, asked + 1)
        answered = asked
        waiting = []
        for index in pending:
            key = f"{PREFIX}/question/{index}"
            if store.check([key]):
                store.set(f"{PREFIX}/answer/{store.get(key).decode()}", name)
            else:
                waiting.append(index)
        pending = waiting
        if time.monotonic() > deadline:
            raise DistributedError(f"rank 0 of {world_size}: the other ranks did not join the "
                                   f"process group within {timeout:g} s")
        time.sleep(_POLL)
    return name


__all__ = ["attempt_store", "shares_agent_store"]
