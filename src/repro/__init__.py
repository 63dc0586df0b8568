"""Reproductions of ten ML papers as one Snakemake workflow (see README.md)."""
