"""Build the optional C opcode scan; everything else is in pyproject.toml.

``optional=True``: where no C compiler is present the install still
succeeds and relay.pickleops uses its pure-Python scan (same verdicts,
~25x slower per record).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("relay._pickle_scan", ["relay/_pickle_scan.c"], optional=True)])
