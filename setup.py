"""Build the optional C parts of the catcher and the consumer; everything else is in pyproject.toml.

``optional=True``: where no C compiler is present the install still
succeeds and relay uses its pure-Python code (same results, slower;
docs/decisions.md has what each extension pays):

- ``relay.decode._cost_scan``: the opcode cost scan (``relay.decode.cost_scan``);
- ``relay.decode._fast_path``: pickles of plain values and the well-known
  classes (datetime, Decimal, set) straight to JSON (``relay.decode.fast_path``),
  the path records take;
- ``relay.decode._syslog``: the usual RFC 5424 message straight to its record
  JSON (``relay.decode.syslog_message.rfc5424_json``), the syslog input's path;
- ``relay.publish._packing``: a publish batch's records packed into Redis's wire
  format in one pass (``relay.publish.packing.pack_publish``);
- ``consumers._json_check``: the JSON formatter's check that a record is one
  JSON object (``consumers.json_check``), without building it as orjson does;
- ``consumers._read_replies``: a read reply's entries as (id, fields dict),
  the loop redis-py's response callback runs in Python, JSON lines and
  text lines of plain ``%(name)s`` formats straight from a reply, and XACK
  ids (``consumers.read_replies``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("relay.decode._cost_scan", ["relay/decode/_cost_scan.c"], optional=True),
        Extension(
            "relay.decode._fast_path",
            ["relay/decode/_fast_path.c", "relay/decode/_fast_path_classes.c", "relay/decode/_fast_path_text.c"],
            depends=["relay/decode/_fast_path.h"],
            optional=True,
        ),
        Extension("relay.decode._syslog", ["relay/decode/_syslog.c"], optional=True),
        Extension(
            "relay.publish._packing",
            ["relay/publish/_packing.c"],
            depends=["relay/common/_resp_bulk.h"],
            include_dirs=["relay/common"],
            optional=True,
        ),
        Extension(
            "consumers._json_check", ["consumers/_json_check.c"], depends=["consumers/_json_scan.h"], optional=True
        ),
        Extension(
            "consumers._read_replies",
            ["consumers/_read_replies.c", "consumers/_read_replies_lines.c", "consumers/_read_replies_parser.c"],
            depends=["consumers/_read_replies.h", "consumers/_json_scan.h", "relay/common/_resp_bulk.h"],
            include_dirs=["relay/common"],
            optional=True,
        ),
    ]
)
