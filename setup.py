"""Build configuration beyond pyproject.toml: the optional C accelerator of the histogram.

`optional=True`: without a C compiler the install still succeeds and quant.core.histogram uses its
numpy path, which gives identical counts.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("quant.core._histc", ["quant/core/_histc.c"], optional=True,
                             extra_compile_args=["-O3"])])
