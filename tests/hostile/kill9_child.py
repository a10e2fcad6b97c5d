"""The child process of tests/hostile/test_crash_kill9.py: write keys until killed.

Usage: ``python kill9_child.py STATE PLUGIN PREFIX``

Opens the device provisioned in STATE (``Device.open``: the checks of a boot, rollback
included), gives the domain of the plugin folder PLUGIN its keystore, as the kernel does,
and then generates keys ``PREFIX-0``, ``PREFIX-1``, ... (every kind, some bound to the
measurement) forever, deleting an older one every fifth key. Each step is announced on
stdout, flushed, before it starts (``begin``/``deleting``) and only after it returned
(``made``/``deleted``), so the parent knows which changes are committed and which one was
in flight when it sent SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from tre._device import Device
from tre._keystore import KeyKind, Keystore, SealPolicy, load_keys
from tre._loader import load_domain_dir

KINDS = [KeyKind.ED25519, KeyKind.HMAC, KeyKind.AEAD, KeyKind.X25519]


def say(*words: str) -> None:
    print(*words, flush=True)


async def write_forever(state: Path, plugin: Path, prefix: str) -> None:
    device = await Device.open(state)
    keys = device.domain_keys(load_domain_dir(plugin))
    await load_keys(device.store, device.key_index, [keys])
    keystore = Keystore(keys)
    say("ready")
    i = 0
    while True:
        label = f"{prefix}-{i}"
        policy = SealPolicy.MEASUREMENT if i % 3 == 2 else SealPolicy.OWNER
        say("begin", label)
        await keystore.generate(label, KINDS[i % len(KINDS)], policy=policy)
        say("made", label)
        if i % 5 == 4:
            victim = f"{prefix}-{i - 2}"
            say("deleting", victim)
            await keystore.delete(victim)
            say("deleted", victim)
        i += 1


def main() -> None:
    state, plugin, prefix = sys.argv[1:4]
    trio.run(write_forever, Path(state), Path(plugin), prefix)


if __name__ == "__main__":
    main()
