"""Conversions in the journal, written once for both backends: which original bytes become
which type, and what the converter made of them (`watcher.pipeline.conversion` uses it)."""

from __future__ import annotations

import time
from dataclasses import fields

from watcher.state.journal import ConversionRow
from watcher.state.journal_backend import JournalBackend

CONVERSION_COLUMNS = [f.name for f in fields(ConversionRow)]
_KEY = ("source_sha256", "target_type")


class ConversionRecords(JournalBackend):
    def plan_conversion(
        self, source_sha256: str, target_type: str, source_type: str, source_size: int
    ) -> None:
        """These bytes are to be converted to ``target_type`` (kept as they are if already
        planned or done: identical bytes convert the same way)."""
        mark = self._MARK
        columns = ("source_sha256", "target_type", "source_type", "source_size")
        rows = f"SELECT {', '.join([mark] * len(columns))}"
        self._write(
            self._insert_new("conversions", columns, rows),
            (source_sha256, target_type, source_type, source_size),
        )

    def conversion(self, source_sha256: str, target_type: str) -> ConversionRow | None:
        mark = self._MARK
        row = self._one(
            f"SELECT {', '.join(CONVERSION_COLUMNS)} FROM conversions "
            f"WHERE source_sha256 = {mark} AND target_type = {mark}",
            (source_sha256, target_type),
        )
        return ConversionRow(*row) if row else None

    def start_conversion(self, source_sha256: str, target_type: str) -> None:
        self._set_conversion(source_sha256, target_type, started_at=time.time())

    def finish_conversion(
        self,
        source_sha256: str,
        target_type: str,
        *,
        output_sha256: str | None,
        output_size: int,
        action: str,
        tool: str,
        tool_version: str,
    ) -> None:
        self._set_conversion(
            source_sha256,
            target_type,
            output_sha256=output_sha256,
            output_size=output_size,
            action=action,
            tool=tool,
            tool_version=tool_version,
            started_at=None,
            converted_at=time.time(),
        )

    def set_conversion_output(
        self, source_sha256: str, target_type: str, output_sha256: str
    ) -> None:
        """The converted bytes' sha256, learnt as they were sent (`finish_conversion` had
        none to give)."""
        self._set_conversion(source_sha256, target_type, output_sha256=output_sha256)

    def stop_conversion(self, source_sha256: str, target_type: str) -> None:
        """A conversion ended without an output (refused, failed, or cut short)."""
        self._set_conversion(source_sha256, target_type, started_at=None)

    def conversions_running(self) -> int:
        row = self._one("SELECT COUNT(*) FROM conversions WHERE started_at IS NOT NULL")
        return int(row[0]) if row else 0

    def clear_running_conversions(self) -> None:
        """At start: conversions a previous process left running are not running any more."""
        self._write("UPDATE conversions SET started_at = NULL WHERE started_at IS NOT NULL")

    def _set_conversion(self, source_sha256: str, target_type: str, **changes: object) -> None:
        mark = self._MARK
        self._write(
            f"UPDATE conversions SET {self._assignments(changes)} "
            f"WHERE source_sha256 = {mark} AND target_type = {mark}",
            (*changes.values(), source_sha256, target_type),
        )
