"""Stage 4: streaming evaluation of one trained arm and seed on the test videos: greedy decoding in
the arm's own paradigm (TaYS on the real dual KV cache), one video at a time. Per video it records
what the simulated clock needs (tokens per unit, which are <skip>), the ground truth's tokens per
unit, the chosen option and the reasoning-event deviation; records.json keeps them for the analysis. Deterministic: no timing here
(the latency stage measures the compute costs)."""
import numpy as np
import torch
from tqdm.auto import tqdm

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.events import LETTERS
from repro.models.mllm import TinyMLLM
from repro.papers.tays._split import load_split
from repro.papers.tays.method import codec_for, deviation, generate, unit_texts


def run(ctx: StageContext) -> dict:
    p, arm, seed = ctx.params, ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    e = p["evaluate"]
    codec = codec_for(p)
    model = TinyMLLM.load(ctx.inputs["model"] / "model", "cuda" if torch.cuda.is_available() else "cpu")
    rows = load_split(ctx.inputs["data"], "test")[: e["videos"]]
    records = []
    for row in tqdm(rows, desc=f"evaluate {arm} seed {seed}", mininterval=5):
        out = generate(model, codec, row, arm, p["data"]["fps"], e["max_unit"], e["max_holistic"])
        texts = unit_texts(codec, out["units"])
        dev, described = deviation(texts, arm, row["units"])
        skip = codec.marker["<skip>"]
        records.append({"groups": len(row["units"]), "kind": str(row["kind"]),
                        "unit_tokens": [len(u) for u in out["units"]],
                        # the ground truth's, terminator included: the T2 regime compares lengths
                        "truth_tokens": [len(codec.encode(u)) + 1 for u in row["units"]],
                        "content": [[t != skip and t not in codec.terminators for t in u] for u in out["units"]],
                        "correct": LETTERS[out["letter"]] == row["answer"], "deviation": dev, "described": described,
                        "units": texts})
    atomic_write_json(ctx.out / "records.json", records)
    kinds = sorted({r["kind"] for r in records})
    return {"arm": arm, "seed": seed, "videos": len(records),
            "accuracy": float(np.mean([r["correct"] for r in records])),
            "accuracy_by_kind": {k: float(np.mean([r["correct"] for r in records if r["kind"] == k])) for k in kinds},
            "deviation": float(np.mean([r["deviation"] for r in records])),
            "described": float(np.mean([r["described"] for r in records])),
            "tokens_per_video": float(np.mean([sum(r["unit_tokens"]) for r in records]))}


if __name__ == "__main__":
    main(run)
