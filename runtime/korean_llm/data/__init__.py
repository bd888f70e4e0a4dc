"""Stage inputs: data sources and their readers, row schemas, the rejected-rows log, the parquet shard writer.

`sources` reads files, folders, globs, `hf:<dataset id>` and `builtin:<name>` row by row with file and line
(`readers`: one reader per format, decoding line by line with a per-source encoding; `mapping`: the source's
field mapping applied to each row; `inspect`: `korean-llm data inspect`);
`rows` validates rows into what a stage trains on; `rejects` writes `rejected.jsonl` (one format for every
stage); `parquet` writes bounded shards.
"""

from korean_llm.data.parquet import ParquetShardWriter
from korean_llm.data.readers import FileReport, ReadLog
from korean_llm.data.rejects import RejectLog, reason_kind
from korean_llm.data.rows import (
    chat_messages,
    kto_row,
    mc_item,
    preference_row,
    prompt_row,
    sft_row,
    text_row,
    with_system_prompt,
)
from korean_llm.data.sources import Record, collect_rows, read_source, source_files

__all__ = [
    "FileReport",
    "ParquetShardWriter",
    "ReadLog",
    "Record",
    "RejectLog",
    "chat_messages",
    "collect_rows",
    "kto_row",
    "mc_item",
    "preference_row",
    "prompt_row",
    "read_source",
    "reason_kind",
    "sft_row",
    "source_files",
    "text_row",
    "with_system_prompt",
]
