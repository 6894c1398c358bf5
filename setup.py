"""Build hook: compile every cffi module of impl/ at install time.

Metadata lives in pyproject.toml. A native module is declared by a file
``impl/<layer>/_<name>_build.py`` exposing ``ffibuilder``; each is found here
so that adding a module needs no edit to this file.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
cffi_modules = sorted(
    f"{p.relative_to(HERE).as_posix()}:ffibuilder" for p in HERE.glob("impl/*/_*_build.py")
)

setup(cffi_modules=cffi_modules)
