"""repro.streaming.cache.DualKVCache against transformers' Cache protocol: a transformers bump that
changes how a model talks to its cache fails here, not silently in the streaming papers' numbers
(the dual cache's results are checked against one masked forward in tests/test_proactivellm.py)."""
import inspect

import pytest
import torch

from repro.streaming.cache import DualKVCache
from repro.streaming.loop import StreamSession


def test_update_has_the_signature_of_transformers_cache():
    from transformers import Cache

    theirs = list(inspect.signature(Cache.update).parameters)
    ours = list(inspect.signature(DualKVCache.update).parameters)
    assert theirs[:4] == ours[:4] == ["self", "key_states", "value_states", "layer_idx"]
    assert {inspect.signature(Cache.update).parameters[n].kind for n in theirs[4:]} <= {
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}  # no new required argument


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_llama_forward_uses_only_update_with_key_value_and_layer(attn):
    """Every name of the Cache API the model looks up on the dual cache (hasattr/getattr included,
    which would silently take another path) is `update`, called positionally once per layer."""
    from transformers import Cache, LlamaConfig, LlamaForCausalLM

    looked_up, calls = [], []
    api = {n for n in dir(Cache) if not n.startswith("_")}

    class Spy(DualKVCache):
        def __getattribute__(self, name):
            if name in api or name == "layers":
                looked_up.append(name)
            return super().__getattribute__(name)

        def update(self, *args, **kwargs):
            calls.append((len(args), sorted(kwargs), args[2]))
            return super().update(*args, **kwargs)

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                      attn_implementation=attn)
    session = StreamSession(LlamaForCausalLM(cfg).eval(), [[[3], [4, 5]], [[6]]], start_id=1, max_len=4,
                            need_attentions=attn == "eager", need_hidden=True)
    session.cache.__class__ = Spy
    session.advance(torch.tensor([True, True]))
    session.write(torch.tensor([True, True]), torch.tensor([7, 8]))
    session.advance(torch.tensor([True, False]))
    assert set(looked_up) == {"update"}
    assert calls == [(3, [], layer) for _ in range(2) for layer in range(2)]
