"""Build the optional C parts of the decoder; everything else is in pyproject.toml.

``optional=True``: where no C compiler is present the install still
succeeds and relay uses its pure-Python code (same results, slower):

- ``relay._pickle_scan``: the opcode scan (``relay.pickleops``), ~19x
  the Python scan (8.7 against 0.46 µs per record measured);
- ``relay._pickle_json``: class-free pickles straight to JSON
  (``relay.directjson``), the path most records take.
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
    ]
)
