"""PruningInferSim: GEMM-centric taxonomy and benchmark of LLM pruning (see method.py)."""
