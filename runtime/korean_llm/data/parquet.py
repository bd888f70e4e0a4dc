"""Parquet output in shards of bounded size, written row group by row group (memory stays flat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ParquetShardWriter:
    """Rows appended in order to `part-00000.parquet`, `part-00001.parquet`, ... under `folder`.

    Rows are buffered and written as row groups of `row_group_rows` rows or `row_group_bytes` bytes, whichever
    comes first, so memory holds one small row group whatever the input size; a new
    shard starts once the current one holds `shard_bytes` of (UTF-8) content. `close()` always leaves at
    least one file, empty when no row came, so a reader finds the folder and its schema. A string column
    takes `str` or UTF-8 `bytes` values (arrow validates them).
    """

    def __init__(
        self,
        folder: Path,
        schema: Any,
        shard_bytes: int,
        row_group_rows: int = 2048,
        row_group_bytes: int = 4 << 20,
        use_dictionary: bool = True,  # False for columns of long, mostly unique texts: it only costs time there
    ) -> None:
        self.folder = folder
        self.use_dictionary = use_dictionary
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self._buffered_bytes = 0
        self.rows = 0
        self.files: list[Path] = []
        self._buffer: list[dict[str, Any]] = []
        self._writer: Any = None
        self._shard_used = 0

    def write(self, row: dict[str, Any], nbytes: int) -> None:
        if self._writer is not None and self._shard_used >= self.shard_bytes:
            self._flush()
            self._writer.close()
            self._writer = None
        if self._writer is None:
            self._open()
        self._buffer.append(row)
        self._shard_used += nbytes
        self._buffered_bytes += nbytes
        self.rows += 1
        if len(self._buffer) >= self.row_group_rows or self._buffered_bytes >= self.row_group_bytes:
            self._flush()

    def _open(self) -> None:
        import pyarrow.parquet as pq

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"part-{len(self.files):05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", use_dictionary=self.use_dictionary)
        self.files.append(path)
        self._shard_used = 0

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buffer:
            columns = {name: [row[name] for row in self._buffer] for name in self.schema.names}
            self._writer.write_table(pa.Table.from_pydict(columns, schema=self.schema))
            self._buffer = []
            self._buffered_bytes = 0

    def close(self) -> list[Path]:
        if self._writer is None and not self.files:
            self._open()
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None
        return self.files
