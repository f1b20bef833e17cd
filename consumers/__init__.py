"""logrelay's consumers: read the record stream through consumer groups and write sinks.

The file consumer (``logrelay consume file``) reads the entries the stream
contract describes (:mod:`relay.common.stream`, docs/stream-format.md).  The
consumers use only what both halves share (``relay.common``), never the
catcher's decoder.
"""

from __future__ import annotations
