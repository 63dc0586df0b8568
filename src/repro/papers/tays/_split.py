"""Reading a split of the stored videos (shared by the train and evaluate stages)."""
from pathlib import Path


def load_split(data: Path, split: str) -> list[dict]:
    """Rows of a split as dicts (frames as uint8 arrays)."""
    import datasets

    ds = datasets.load_from_disk(str(data / "videos"))[split].with_format("numpy")
    rows = ds[:]
    return [{k: rows[k][i] for k in rows} | {"units": list(rows["units"][i]), "options": list(rows["options"][i])}
            for i in range(len(ds))]
