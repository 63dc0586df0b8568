"""Shared machinery of every pipeline job: params, atomic I/O, provenance, tracking, timing.

Kept free of torch/mlflow imports at package level so the Snakefile can import `repro.core.config`
cheaply on every invocation.
"""
