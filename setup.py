"""Setuptools shim: the project is declared in pyproject.toml alone. This file only lets legacy
commands such as ``python setup.py --version`` run; it adds nothing to the declaration."""

from setuptools import setup

setup()
