"""A SQLite cache of LLM replies, keyed by request fingerprint, so a killed run never pays for a call twice.

Every reply is committed as soon as it arrives, before it is parsed. WAL journaling makes each commit survive
SIGKILL of the writing process. No API key or endpoint address is ever stored: only the backend name, the model
name and the request itself.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from instructir.prompts.llm import ChatRequest, Completion, Failure

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    fingerprint TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    content TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    seconds REAL NOT NULL,
    created_at TEXT NOT NULL,
    failed_attempts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    fingerprint TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    failed_attempts TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

_COLUMNS = "content, prompt_tokens, completion_tokens, finish_reason, raw, seconds, created_at, failed_attempts"


class ReplyCache:
    """Completed replies by fingerprint, plus a log of requests that failed for good."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get_many(self, fingerprints: Iterable[str]) -> dict[str, Completion]:
        """The cached completions among ``fingerprints``."""
        found: dict[str, Completion] = {}
        keys = list(fingerprints)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT fingerprint, {_COLUMNS} FROM replies WHERE fingerprint IN ({marks})", chunk
            )
            for key, *values in rows:
                found[key] = _completion_from_row(values)
        return found

    def put(self, key: str, backend: str, model: str, request: ChatRequest, completion: Completion) -> None:
        """Store one completed reply; committed before this returns."""
        self.put_many([(key, backend, model, request, completion)])

    def put_many(self, items: Iterable[tuple[str, str, str, ChatRequest, Completion]]) -> None:
        """Store several replies in one transaction: all of them survive a kill, or none."""
        rows = [
            (
                key,
                backend,
                model,
                json.dumps(asdict(request), sort_keys=True, ensure_ascii=False),
                c.content,
                c.prompt_tokens,
                c.completion_tokens,
                c.finish_reason,
                c.raw,
                c.seconds,
                c.created_at,
                json.dumps(list(c.failed_attempts)),
            )
            for key, backend, model, request, c in items
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def record_failure(self, key: str, failure: Failure) -> None:
        """Log a request that failed for good; it is asked again on the next run."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO failures (fingerprint, reason, message, failed_attempts) VALUES (?, ?, ?, ?)",
                (key, failure.reason, failure.message, json.dumps(list(failure.failed_attempts))),
            )

    def count(self) -> int:
        """How many completed replies the cache holds."""
        return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _completion_from_row(values: list) -> Completion:
    content, prompt_tokens, completion_tokens, finish_reason, raw, seconds, created_at, attempts = values
    return Completion(
        content=content,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
        raw=raw,
        seconds=seconds,
        created_at=created_at,
        failed_attempts=tuple(json.loads(attempts)),
    )
