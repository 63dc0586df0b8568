"""The shared multimodal pieces: scene generator (repro.data.scenes) and tiny MLLM (repro.models.mllm)."""
import numpy as np
import pytest
import torch

from repro.data import scenes
from repro.models.mllm import TinyMLLM, build_mllm, splice

SCENE = [{"shape": "circle", "colour": "red", "size": "small", "x": 0.2, "y": 0.5},
         {"shape": "square", "colour": "blue", "size": "large", "x": 0.8, "y": 0.45},
         {"shape": "circle", "colour": "blue", "size": "small", "x": 0.75, "y": 0.9}]

SPEC = {"vision": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                   "patch_size": 8},
        "image_size": 32, "projector": {"hidden": 24},
        "llm": {"arch": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}}


@pytest.mark.parametrize("q, expected", [
    ({"kind": "existence", "colour": "red", "shape": "circle"}, "yes"),
    ({"kind": "existence", "colour": "red", "shape": "square"}, "no"),
    ({"kind": "attribute", "ask": "colour", "by": "shape", "value": "square"}, "blue"),
    ({"kind": "attribute", "ask": "shape", "by": "colour", "value": "red"}, "circle"),
    ({"kind": "relation", "a": 0, "b": 1}, "left"),
    ({"kind": "relation", "a": 2, "b": 1}, "below"),
    ({"kind": "count", "by": "shape", "value": "circle"}, "2"),
    ({"kind": "count", "by": "colour", "value": "green"}, "0"),
])
def test_answers_on_a_hand_scene(q, expected):
    assert scenes.answer(SCENE, q) == expected


def test_question_text_and_vocab_round_trip():
    vocab = scenes.Vocab()
    text = scenes.question_text(SCENE, {"kind": "relation", "a": 0, "b": 1})
    assert text == "where is the red circle from the blue square ?"
    ids = vocab.encode(text)
    assert vocab.unk_id not in ids and vocab.decode(ids) == text
    assert vocab.encode("zebra") == [vocab.unk_id]


def test_sampled_questions_are_answerable_and_negatives_absent():
    rng = np.random.default_rng(0)
    vocab = scenes.Vocab()
    seen = {k: set() for k in scenes.KINDS}
    for i in range(400):
        scene = scenes.sample_scene(rng)
        cells = {(int(o["x"] * 3), int(o["y"] * 3)) for o in scene}
        assert len(cells) == len(scene)  # one object per grid cell
        q = scenes.sample_question(rng, scene, scenes.KINDS[i % 4])
        if q is None:
            continue
        a = scenes.answer(scene, q)
        assert vocab.encode(a) != [vocab.unk_id]  # single known token
        seen[q["kind"]].add(a)
    assert seen["existence"] == {"yes", "no"} and seen["relation"] == set(scenes.RELATIONS)
    assert len(seen["count"]) >= 3


def test_render_draws_the_objects_colour_in_its_box():
    rng = np.random.default_rng(0)
    img = scenes.render(SCENE[:1], 40, rng)
    centre = img[20, 8].astype(int)  # the red circle's centre (0.2, 0.5) * 40
    assert centre[0] > 200 and centre[1] < 60 and centre[2] < 60
    corner = img[2, 38].astype(int)  # background is grey: channels equal
    assert abs(corner[0] - corner[1]) <= 1 and abs(corner[1] - corner[2]) <= 1


def test_scene_set_is_a_pure_function_of_the_seed():
    source = {"kind": "synthetic", "splits": {"train": 12, "test": 4}, "objects": [1, 4], "image_size": 24}
    a, b = scenes.load_scene_set(source, 3), scenes.load_scene_set(source, 3)
    assert a["train"]["question"] == b["train"]["question"]
    assert np.array_equal(a["test"].with_format("numpy")["image"], b["test"].with_format("numpy")["image"])
    assert a["train"]["kind"][:4] == list(scenes.KINDS)
    assert a["train"]["question"] != scenes.load_scene_set(source, 4)["train"]["question"]


def test_mllm_tokens_forward_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    vocab = scenes.Vocab()
    model = build_mllm(SPEC, len(vocab)).eval()
    images = scenes.images_to_tensor(np.zeros((2, 32, 32, 3), np.uint8))
    vis = model.visual_tokens(images)
    assert model.n_visual == 16 and vis.shape == (2, 16, 32)
    ids = torch.tensor([vocab.encode("is there a red circle ?")] * 2)
    x = splice([model.embed(torch.full((2, 1), vocab.bos_id)), vis, model.embed(ids)])
    with torch.no_grad():
        logits, cache = model(inputs_embeds=x)
        model.save(tmp_path / "ck")
        again, _ = TinyMLLM.load(tmp_path / "ck")(inputs_embeds=x)
    assert logits.shape == (2, 1 + 16 + ids.shape[1], len(vocab)) and len(cache) == 2
    assert torch.equal(logits, again)


def test_image_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="image_size 30 is not a multiple of the patch size 8"):
        build_mllm({**SPEC, "image_size": 30}, 10)
