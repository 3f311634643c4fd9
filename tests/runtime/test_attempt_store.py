"""Each attempt of a restartable group gets a namespace of its own in torchrun's agent store.

Ranks are threads here, each with its own client of one real TCP store, as the ranks of an
attempt are processes with clients of the store torchrun's agent keeps across restarts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import torch.distributed as dist
from test_distributed import free_port

from stagegraph.launch import TorchrunEnv
from stagegraph.runtime.attempt_store import PREFIX, attempt_store, shares_agent_store
from stagegraph.runtime.errors import DistributedError


def one_attempt(port: int, world: int) -> list[dist.Store]:
    def rank(r: int) -> dist.Store:
        return attempt_store(TorchrunEnv(r, world, r, world, 0, 1), timeout=20)

    with ThreadPoolExecutor(world) as pool:
        return list(pool.map(rank, range(world)))


def test_every_attempt_has_keys_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    agent = dist.TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=20))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    first = one_attempt(port, 3)
    first[0].set("rank_0", "address of the failed attempt")  # what a rank published
    first[2].set("rank_2", "likewise")
    second = one_attempt(port, 3)
    second[1].set("rank_1", "fresh")
    for store in second:
        assert not store.check(["rank_0"]) and not store.check(["rank_2"])
        assert store.get("rank_1") == b"fresh"  # the ranks of one attempt share their keys
    assert first[1].check(["rank_2"]) and not first[1].check(["rank_1"])
    asked = int(agent.add(f"{PREFIX}/questions", 0))
    assert asked == 4  # two ranks asked rank 0 in each attempt
    assert len(one_attempt(port, 1)) == 1  # a world of one asks nobody


def test_rank_0_waits_for_the_others_no_longer_than_the_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    agent = dist.TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=5))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    with pytest.raises(DistributedError, match=r"the other ranks did not join the process "
                                               r"group within 0\.3 s"):
        attempt_store(TorchrunEnv(0, 2, 0, 2, 0, 1), timeout=0.3)
    assert agent.check([f"{PREFIX}/questions"])


def test_only_the_agents_store_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    assert not shares_agent_store()
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    assert shares_agent_store()
