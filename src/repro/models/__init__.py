"""Tiny model factories built from transformers configs, the shared per-layer decoder, and
safetensors checkpoints."""
