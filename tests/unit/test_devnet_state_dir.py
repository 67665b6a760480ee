"""Every anvil the devtools start keeps its on-disk block states in a directory of its own
that is deleted when it stops (CI once died of a full disk: anvil's default directory,
~/.foundry/anvil/tmp, is never cleaned when anvil is signalled; 91 leaked runs, 73 GB)."""

from __future__ import annotations

import os
import subprocess
import time

from perpdex.devtools import devnet
from perpdex.devtools.devnet import STATE_DIR, Anvil, free_port, sweep_leaked_states

IN_MEMORY_STATES = 500  # anvil keeps this many block states in memory, writes older ones


def _files(path: os.PathLike[str]) -> list[str]:
    return [str(p) for p in STATE_DIR.joinpath(path).rglob("*.json")]


def test_anvil_writes_its_states_under_its_own_directory_and_stop_deletes_it() -> None:
    node = Anvil("state-dir-test", free_port(), quiet=True)
    cmd = node.command()
    assert cmd[cmd.index("--cache-path") + 1] == str(node.state_path)
    assert node.state_path.parent == STATE_DIR
    with node.running():
        node.rpc("anvil_mine", hex(IN_MEMORY_STATES + 100))
        deadline = time.monotonic() + 10
        while not _files(node.state_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        # the flag is honoured: the states that left memory are on disk, in our directory
        assert _files(node.state_path), "anvil wrote no block state under --cache-path"
    assert not node.state_path.exists()


def test_a_detached_devnet_names_its_directory_by_port_not_by_process() -> None:
    node = Anvil("devnet", 8545, detach=True)
    assert node.state_path.name == "up-devnet-8545"


def test_sweep_deletes_only_the_states_of_owners_that_are_gone() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    leaked = STATE_DIR / f"{dead.pid}-leak-1"
    mine = STATE_DIR / f"{os.getpid()}-live-2"
    detached = STATE_DIR / "up-devnet-3"
    for d in (leaked, mine, detached):
        (d / "anvil-state-x").mkdir(parents=True, exist_ok=True)
        (d / "anvil-state-x" / "0xab.json").write_text("{}")
    try:
        gone = sweep_leaked_states()
        assert leaked in gone and not leaked.exists()
        assert mine.exists() and detached.exists()
    finally:
        for d in (leaked, mine, detached):
            devnet.shutil.rmtree(d, ignore_errors=True)
