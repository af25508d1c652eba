"""The programs: `adaptinf` (cli), its `demo`, `sim` and `mcu-selftest` commands.

They sit above everything else (pyproject's import-linter contract); the wire formats and
file formats they share with the daemon stay in the package root (core/).
"""
