import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    sizes = dict(vocab_size=256, hidden_size=64, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4, intermediate_size=96, max_position_embeddings=256)
    sizes.update(overrides)
    return LlamaConfig(**sizes)


@pytest.fixture
def hf_llama():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config()).eval()


@pytest.fixture
def executor(hf_llama):
    from repro.papers.pruninginfersim.method import PrunableLlama

    return PrunableLlama.from_hf(hf_llama)


@pytest.fixture
def calib():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (2, 32), generator=g) for _ in range(2)]
