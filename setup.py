"""Build the optional C parts of the catcher and the consumer; everything else is in pyproject.toml.

``optional=True``: where no C compiler is present the install still
succeeds and relay uses its pure-Python code (same results, slower):

- ``relay._pickle_scan``: the opcode scan (``relay.pickleops``), ~19x
  the Python scan (8.7 against 0.46 µs per record measured);
- ``relay._pickle_json``: pickles of plain values and the well-known
  classes (datetime, Decimal, set) straight to JSON (``relay.directjson``),
  the path records take;
- ``relay._resp``: a publish batch's records packed into Redis's wire
  format in one pass (``relay.publishscript.pack_publish``);
- ``consumers._json_check``: the JSON formatter's check that a record is one
  JSON object (``consumers.jsoncheck``), without building it as orjson does;
- ``consumers._stream_entries``: a read reply's entries as (id, fields dict),
  the loop redis-py's response callback runs in Python, JSON lines and
  text lines of plain ``%(name)s`` formats straight from a reply, and XACK
  ids (``consumers.streamentries``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("relay._pickle_scan", ["relay/_pickle_scan.c"], optional=True),
        Extension(
            "relay._pickle_json",
            ["relay/_pickle_json.c", "relay/_pickle_classes.c", "relay/_json_text.c"],
            depends=["relay/_pickle_json.h"],
            optional=True,
        ),
        Extension("relay._resp", ["relay/_resp.c"], depends=["relay/_resp_bulk.h"], optional=True),
        Extension(
            "consumers._json_check", ["consumers/_json_check.c"], depends=["consumers/_json_scan.h"], optional=True
        ),
        Extension(
            "consumers._stream_entries",
            ["consumers/_stream_entries.c", "consumers/_text_lines.c", "consumers/_stream_reply.c"],
            depends=["consumers/_stream_entries.h", "consumers/_json_scan.h", "relay/_resp_bulk.h"],
            include_dirs=["relay"],
            optional=True,
        ),
    ]
)
