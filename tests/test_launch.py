"""The torchrun environment and command, read and built without torch."""

from __future__ import annotations

import pytest

from stagegraph.launch import (
    DEFAULT_TIMEOUT,
    LaunchError,
    TorchrunEnv,
    timeout_seconds,
    torchrun_command,
    torchrun_env,
)


def test_the_environment_torchrun_sets() -> None:
    env = torchrun_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                        "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "node0"})
    assert env == TorchrunEnv(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert (env.kind, str(env)) == ("worker", "rank 3 of 4")
    assert torchrun_env({"RANK": "0", "WORLD_SIZE": "1"}) == TorchrunEnv(0, 1, 0, 1)
    assert torchrun_env({"LOCAL_RANK": "0"}) is None
    restarted = torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RESTART_COUNT": "2",
                              "TORCHELASTIC_MAX_RESTARTS": "3"})
    assert restarted is not None and (restarted.restart, restarted.max_restarts) == (2, 3)


@pytest.mark.parametrize(("environ", "message"), [
    ({"RANK": "x", "WORLD_SIZE": "2"}, "environment variable RANK='x' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 and WORLD_SIZE=2 do not describe a rank"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": ""}, "LOCAL_RANK='' is not an integer"),
])
def test_a_broken_environment_says_which_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        torchrun_env(environ)


def test_the_timeout() -> None:
    assert timeout_seconds({}) == DEFAULT_TIMEOUT == 600
    assert timeout_seconds({"STAGEGRAPH_DIST_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(LaunchError, match=f"STAGEGRAPH_DIST_TIMEOUT='{bad}' is not a positive"):
            timeout_seconds({"STAGEGRAPH_DIST_TIMEOUT": bad})


def test_the_command_is_torchrun_in_standalone_mode() -> None:
    assert torchrun_command(3, ["run", "exp.py", "--quiet"], python="py") == [
        "py", "-m", "stagegraph.runtime.torchrun", "--standalone", "--nproc_per_node", "3",
        "-m", "stagegraph", "run", "exp.py", "--quiet"]
    with pytest.raises(LaunchError, match="at least 1"):
        torchrun_command(0, ["run", "exp.py"])
    assert torchrun_command(2, ["run", "e.py"], max_restarts=1, python="py")[3:8] == [
        "--standalone", "--nproc_per_node", "2", "--max-restarts", "1"]
