"""logrelay's consumers: read the record stream through consumer groups and write sinks.

The file consumer (``logrelay consume file``) is built on the stream entry
format documented in the README; see ``relay.publishscript.SCHEMA_VERSION``.
"""

from __future__ import annotations
