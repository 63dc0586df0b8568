"""Tiny model factories built from transformers configs, and safetensors checkpoints."""
