import json
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


def save_bpe_tokenizer(texts: list[str], folder, eos_token: str | None = None, extra_special: tuple = ()) -> int:
    """A small byte-level BPE tokenizer trained on `texts`, saved like a hub tokenizer; its vocab size.
    `extra_special`: more special tokens, each encoded as one token (e.g. a separator)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.decoder = decoders.ByteLevel()
    special = ["<unk>"] + ([eos_token] if eos_token else []) + list(extra_special)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    extra = {"eos_token": eos_token} if eos_token else {}
    PreTrainedTokenizerFast(tokenizer_object=tok, **extra).save_pretrained(folder)
    return tok.get_vocab_size()


def run_stage(paper, module, params_path, out, sections, inputs=(), wildcards=(), profile="paper"):
    """One stage job in-process, as the workflow runs it (tracking off); returns its metrics."""
    from repro.core.stage import main

    argv = ["--paper", paper, "--stage", module.__name__.rsplit(".", 1)[-1], "--profile", profile,
            "--params", str(params_path), "--sections", ",".join(sections), "--seed", "0",
            "--threads", "1", "--out", str(out), "--no-tracking"]
    argv += [a for k, v in inputs for a in ("--input", f"{k}={v}")]
    argv += [a for k, v in wildcards for a in ("--wildcard", f"{k}={v}")]
    main(module.run, argv)
    return json.loads((out / "metrics.json").read_text())["metrics"]
