"""Build hook for the C fast path; all metadata lives in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "netwatch._fastpath",
            sources=["netwatch/capture/_fastpath.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall"],
        )
    ]
)
