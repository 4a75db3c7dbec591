"""The app's history: every edit's request, state and outputs in an SQLite database, its pictures as PNG
files beside it, all under one data folder, so that edits survive a restart."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path

EDIT_ID = re.compile(r"^[0-9a-f]{12}$")  # the only names the app ever turns into paths


class History:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        (self.folder / "edits").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.folder / "history.sqlite", check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS edits (id TEXT PRIMARY KEY, created REAL, method TEXT, "
                             "request TEXT, state TEXT, message TEXT, provenance TEXT, pictures TEXT)")
            # an edit that was queued or running when the server stopped will not finish
            self._db.execute("UPDATE edits SET state = 'failed', message = 'the server stopped during the edit' "
                             "WHERE state IN ('queued', 'running')")

    @staticmethod
    def valid(edit_id: str) -> bool:
        return bool(EDIT_ID.match(edit_id))

    def edit_folder(self, edit_id: str) -> Path:
        """The folder of one edit's pictures; `edit_id` must be an id the app made."""
        if not self.valid(edit_id):
            raise KeyError(edit_id)
        return self.folder / "edits" / edit_id

    def add(self, edit_id: str, method: str, request: dict) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT INTO edits VALUES (?, ?, ?, ?, 'queued', '', NULL, '[]')",
                             (edit_id, time.time(), method, json.dumps(request)))

    def finish(self, edit_id: str, state: str, message: str = "", provenance: dict | None = None,
               pictures: list[str] = ()) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE edits SET state = ?, message = ?, provenance = ?, pictures = ? WHERE id = ?",
                             (state, message, json.dumps(provenance) if provenance else None,
                              json.dumps(list(pictures)), edit_id))

    def set_state(self, edit_id: str, state: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE edits SET state = ? WHERE id = ?", (state, edit_id))

    def get(self, edit_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM edits WHERE id = ?", (edit_id,)).fetchone()
        return None if row is None else self._entry(row)

    def list(self, limit: int = 100) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM edits ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [self._entry(r) for r in rows]

    @staticmethod
    def _entry(row) -> dict:
        edit_id, created, method, request, state, message, provenance, pictures = row
        return {"id": edit_id, "created": created, "method": method, "request": json.loads(request), "state": state,
                "message": message, "provenance": json.loads(provenance) if provenance else None,
                "pictures": json.loads(pictures)}
