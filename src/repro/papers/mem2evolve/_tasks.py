"""What the mem2evolve stages share: the prepared task splits as the agent sees them, and the judge
that alone reads the hidden tests."""
from __future__ import annotations

import json
from pathlib import Path

from repro.papers.mem2evolve.method import Task, passes


class Tasks:
    """The data stage's output. `visible(split)` are the agent's view of the tasks; `judge` and
    `hidden` are for scoring and the leak audit only."""

    def __init__(self, data_dir: Path):
        import datasets

        self.splits = datasets.load_from_disk(str(Path(data_dir) / "dataset"))
        self.rows = {s: list(ds) for s, ds in self.splits.items()}
        self.hidden = {r["task_id"]: json.loads(r["hidden"]) for rows in self.rows.values() for r in rows}
        self.info = {r["task_id"]: {"category": r["category"], "depth": r["depth"]}
                     for rows in self.rows.values() for r in rows}

    def visible(self, split: str) -> list[Task]:
        return [Task(r["task_id"], r["category"], r["in_type"], r["out_type"], r["description"],
                     json.loads(r["visible"])) for r in self.rows[split]]

    def judge(self, task_id: str, program: list[str]) -> bool:
        """Pass@1: the submitted program passes every hidden test."""
        return passes(program, self.hidden[task_id])

    def for_audit(self) -> dict[str, dict]:
        """Every task's split, examples, hidden tests and target program (method.audit)."""
        return {r["task_id"]: {"split": split, "visible": json.loads(r["visible"]), "hidden": self.hidden[r["task_id"]],
                               "program": r["program"]}
                for split, rows in self.rows.items() for r in rows}
