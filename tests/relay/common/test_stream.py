"""The stream contract (relay/common/stream.py) is the one the writer and the readers use."""

from __future__ import annotations

import re
from pathlib import Path

import fakeredis

from relay.common import stream
from relay.common.stream import (
    DEAD_LETTER_FIELDS,
    RECORD_FIELDS,
    RECORD_FIELDS_WITHOUT_SEQ,
    SCHEMA_VERSION,
    StreamKeys,
)
from relay.publish.script import PUBLISH_SCRIPT, DeadLetterEntry, RecordEntry, script_args

HEADER = Path(__file__).resolve().parents[3] / "consumers" / "_read_replies.h"


def xadd_fields(script: str) -> list[tuple[str, ...]]:
    """The field names of each XADD in the publish script, in order."""
    calls = re.findall(r"redis\.call\('XADD', KEYS\[\d\], '\*',(.*?)\)\n", script, re.S)
    return [tuple(re.findall(r"'([a-z_]+)', ", call + ", ")) for call in calls]


def test_the_publish_script_writes_the_contracts_fields_in_order() -> None:
    assert xadd_fields(PUBLISH_SCRIPT) == [RECORD_FIELDS, DEAD_LETTER_FIELDS]


def test_entries_in_redis_have_the_contracts_fields_and_version() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    keys = StreamKeys("contract")
    batch = [RecordEntry(b'{"msg":"x"}', "192.0.2.1:5", "1.5"), DeadLetterEntry(b"\x80", "bad", "192.0.2.1:5", "1.6")]
    args = script_args(batch, 1, "catcher-1", 0, "block")
    assert client.eval(PUBLISH_SCRIPT, 3, keys.records, keys.dead_letters, keys.producer("p"), *args) == [1, 0, 0, 0]
    [(_, record)] = client.xrange(keys.records)
    [(_, dead)] = client.xrange(keys.dead_letters)
    assert tuple(name.decode() for name in record) == RECORD_FIELDS
    assert tuple(name.decode() for name in dead) == DEAD_LETTER_FIELDS
    assert record[stream.VERSION.encode()] == dead[stream.VERSION.encode()] == SCHEMA_VERSION.encode()


def test_the_consumers_c_reader_knows_the_same_entry_with_and_without_seq() -> None:
    # The C reader recognises "the usual entry" by a table of names and the
    # schema version at fixed positions, and by the length of its field list:
    # both layouts of the contract, the entry with seq (RECORD_FIELDS) and the
    # one without (RECORD_FIELDS_WITHOUT_SEQ: written before, or replayed),
    # must be usual; the names of the table below the shorter length are the
    # layout without seq.
    header = HEADER.read_text()
    table = re.search(r"names\[\d+\] = \{(.*?)\};", header, re.S)
    assert table is not None, f"no table of names in {HEADER}"
    positions = {int(position): name for position, name in re.findall(r"\{(\d+), \"([^\"]*)\", \d+\}", table.group(1))}
    assert positions[1] == SCHEMA_VERSION
    names = tuple(positions[position] for position in sorted(positions) if position % 2 == 0)
    assert names == RECORD_FIELDS
    lengths = dict(re.findall(r"#define USUAL_FIELDS_(WITH|WITHOUT)_SEQ (\d+)", header))
    assert int(lengths["WITH"]) == 2 * len(RECORD_FIELDS)
    assert int(lengths["WITHOUT"]) == 2 * len(RECORD_FIELDS_WITHOUT_SEQ)
    assert RECORD_FIELDS[: len(RECORD_FIELDS_WITHOUT_SEQ)] == RECORD_FIELDS_WITHOUT_SEQ
    lengths_of_names = re.findall(r"\{\d+, \"([^\"]*)\", (\d+)\}", table.group(1))
    assert all(len(name) == int(length) for name, length in lengths_of_names)
