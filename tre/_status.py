"""``tre status``: what a state folder says, read without booting and without the device
secret (so a terminated device can still be inspected)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ._device import DB_FILE, UDS_FILE
from ._errors import StorageError
from ._root import stored_root
from ._store import APPLICATION_ID

__all__ = ["read_status"]


def read_status(state_dir: Path) -> dict[str, Any]:
    db = Path(state_dir) / DB_FILE
    if not db.is_file():
        raise StorageError(f"{state_dir} is not a provisioned TRE state (no {DB_FILE})")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            (app_id,) = conn.execute("PRAGMA application_id").fetchone()
            if app_id != APPLICATION_ID:
                raise StorageError(f"{db} is not a TRE database")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            domains = conn.execute(
                "SELECT id, owner, owner_key, svn, measurement, state, source, counter "
                "FROM domains ORDER BY id"
            ).fetchall()
            keys = dict(
                conn.execute("SELECT domain, count(*) FROM keys GROUP BY domain").fetchall()
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{db} cannot be read as a TRE database: {exc}") from None
    ueid = meta.get("ueid", b"")
    return {
        "state_dir": str(state_dir),
        "ueid": ueid.hex() if isinstance(ueid, bytes) else str(ueid),
        "imei": meta.get("imei") or None,
        "lifecycle": meta.get("tre_state"),
        "boot_count": meta.get("boot_count"),
        "device_secret_present": (Path(state_dir) / UDS_FILE).exists(),
        "root_version": stored_root(meta["root"]).version if "root" in meta else None,
        "tre_counter": meta.get("tre_counter"),
        "domains": [
            {
                "id": d[0],
                "owner": d[1],
                "owner_key": d[2].hex() if d[2] else None,
                "svn": d[3],
                "measurement": d[4].hex(),
                "state": d[5],
                "source": d[6],
                "counter": d[7],
                "keys": keys.get(d[0], 0),
            }
            for d in domains
        ],
    }
