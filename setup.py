"""Shim for tools that still call setup.py; all metadata lives in pyproject.toml.

Nothing CUDA is built here: kernels/*.cu are compiled at run time through cupy
when a CUDA device is used, so a CPU-only install never needs nvcc.
"""

from setuptools import setup

setup()
