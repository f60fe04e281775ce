"""The version of a cluster's Redis layout (docs/redis-layout.md), kept with its data.

`gorchester:<cluster>:schema` holds the layout version the cluster's data is written in. Every
process (API, scheduler, node agent) checks it as it starts: a cluster without one (new, or written
before versions were kept, which is version 1) is marked with this code's; the same version starts;
another refuses to start, naming both, rather than read records it would take for unreadable and
write records the others could not read. A change of layout raises VERSION and comes with the
migration of the older data, run here under the check, in the same commit.
"""

from __future__ import annotations

from typing import Any

from shared.keys import Keys
from shared.settings import SettingError

VERSION = 1


def check(client: Any, keys: Keys, component: str) -> None:
    """Mark a cluster without a version, or raise SettingError when its data is of another version."""
    client.set(keys.schema, VERSION, nx=True)
    stored = client.get(keys.schema)
    found = stored.decode(errors="replace") if isinstance(stored, bytes) else str(stored)
    if found == str(VERSION):
        return
    newer = found.isdigit() and int(found) > VERSION
    advice = ("upgrade gorchester on this host to the version the rest of the cluster runs" if newer
              else "its data was not written by gorchester; check GORCHESTER_CLUSTER")
    raise SettingError(
        f"{component}: cluster {keys.cluster!r} keeps its data in Redis layout version {found[:40]!r}, and this "
        f"gorchester reads version {VERSION}: {advice} (docs/redis-layout.md)"
    )
