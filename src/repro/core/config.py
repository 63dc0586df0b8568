"""Params files: loading, validation against the JSON schemas, section selection and hashing."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
PROFILES = ("smoke", "mini", "paper")


class ParamsError(ValueError):
    """A params file that does not match its schema; the message names the file and the key."""


def load_yaml(path: Path | str) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def _key_path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def check(data: dict, schema: dict, source: str, prefix: tuple = ()) -> None:
    """Validate `data` against a JSON schema; raise ParamsError naming `source` and the failing key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = _key_path(prefix + tuple(err.absolute_path))
        raise ParamsError(f"{source}: key '{where}': {err.message}")


def validate_config(config: dict, source: str = "params/config.yaml") -> None:
    check(config, load_yaml(SCHEMA_DIR / "config.schema.yaml"), source)


def validate_paper(params: dict, paper: str, source: str | None = None) -> None:
    """A paper file has a section per profile (checked by the paper's own schema) and `claims`."""
    source = source or f"params/{paper}.yaml"
    for i, claim in enumerate(params.get("claims") or []):  # the schema's oneOf, with a readable message
        if isinstance(claim, dict) and ("regime" in claim) == ("regime_none" in claim):
            raise ParamsError(f"{source}: key 'claims.{i}': claim {claim.get('id')!r} needs `regime:` (the checks "
                              "that say when its checks mean something) or `regime_none:` (why none is needed), "
                              "exactly one of the two")
    check(params, load_yaml(SCHEMA_DIR / "paper.schema.yaml"), source)
    section_schema = load_yaml(SCHEMA_DIR / f"{paper}.schema.yaml")
    for profile in PROFILES:
        check(params[profile], section_schema, source, prefix=(profile,))
    validate_claims(params["claims"], declared_metrics(paper), source)


# What a check's threshold must be for each kind of metric an analysis declares; `control` records
# (controls.<name>: a timing or seed-only A/A) are named by a claim's `controls:`, never checked.
KINDS = {"effect": ((int, float), (">", ">=", "<", "<=", "==", "!="), "a number"),
         "bool": ((bool,), ("==", "!="), "true or false"),
         "name": ((str,), ("==", "!="), "a string"),
         "control": ((), (), "a control record")}


def declared_metrics(paper: str) -> dict[str, str]:
    """{metric path: kind} that a paper's analysis declares it writes (`ANALYSIS_METRICS` in its
    package's __init__, light to import); claims may check only these."""
    import importlib

    try:
        module = importlib.import_module(f"repro.papers.{paper}")
    except ModuleNotFoundError:
        raise ParamsError(f"params/{paper}.yaml: no package repro.papers.{paper} declares its metrics") from None
    declared = getattr(module, "ANALYSIS_METRICS", None)
    if not isinstance(declared, dict) or not declared or set(declared.values()) - set(KINDS):
        raise ParamsError(f"repro.papers.{paper}.ANALYSIS_METRICS must map metric paths to one of {sorted(KINDS)}")
    return declared


def validate_claims(claims: list[dict], declared: dict[str, str], source: str) -> None:
    """Ids unique; each check and regime check names a declared metric and a threshold of that
    metric's kind; each named control is a declared control."""
    seen = set()
    for i, claim in enumerate(claims):
        where = f"{source}: key 'claims.{i}"
        if claim["id"] in seen:
            raise ParamsError(f"{where}.id': claim id {claim['id']!r} appears twice")
        seen.add(claim["id"])
        for part in ("checks", "regime"):
            for j, c in enumerate(claim.get(part, [])):
                _validate_check(c, declared, f"{where}.{part}.{j}")
        controls = sorted(m.split(".", 1)[1] for m, kind in declared.items() if kind == "control")
        for j, name in enumerate(claim.get("controls", [])):
            if name not in controls:
                raise ParamsError(f"{where}.controls.{j}': {name!r} is not a control the analysis declares; "
                                  f"it writes {', '.join(controls) or 'none'}")


def _validate_check(c: dict, declared: dict[str, str], at: str) -> None:
    if c["metric"] not in declared or declared[c["metric"]] == "control":
        close = [m for m in declared if m.split(".")[0] == c["metric"].split(".")[0]] or sorted(declared)
        raise ParamsError(f"{at}.metric': {c['metric']!r} is not a metric the analysis declares; "
                          f"it writes {', '.join(sorted(close))}")
    types, ops, what = KINDS[declared[c["metric"]]]
    value_ok = isinstance(c["value"], types) and not (bool not in types and isinstance(c["value"], bool))
    if not value_ok:
        raise ParamsError(f"{at}.value': {c['value']!r} ({type(c['value']).__name__}) for "
                          f"{c['metric']} ({declared[c['metric']]}): expected {what}")
    if c["op"] not in ops:
        raise ParamsError(f"{at}.op': {c['op']!r} cannot compare {declared[c['metric']]} "
                          f"{c['metric']}; use one of {', '.join(ops)}")


def load_paper(paper: str, path: Path | str | None = None) -> dict:
    path = Path(path) if path else REPO_ROOT / "params" / f"{paper}.yaml"
    params = load_yaml(path)
    validate_paper(params, paper, str(path))
    return params


def select(section: dict, names: Iterable[str]) -> dict:
    """The sub-sections a job reads; a missing one is a params error, not a KeyError mid-run."""
    missing = [n for n in names if n not in section]
    if missing:
        raise ParamsError(f"params section lacks {missing}; it has {sorted(section)}")
    return {n: section[n] for n in names}


def shift_seeds(section: Any, offset: int) -> Any:
    """The same section with every training seed moved by `offset` (keys seed/seeds and *_seed/*_seeds,
    at any depth): a replication on a disjoint seed set. The data's seed (params/config.yaml) stays."""
    if not offset:
        return section
    if isinstance(section, list):
        return [shift_seeds(v, offset) for v in section]
    if not isinstance(section, dict):
        return section
    out = {}
    for key, value in section.items():
        seedy = key in ("seed", "seeds") or key.endswith(("_seed", "_seeds"))
        if seedy and isinstance(value, int) and not isinstance(value, bool):
            out[key] = value + offset
        elif seedy and isinstance(value, list) and all(isinstance(v, int) for v in value):
            out[key] = [v + offset for v in value]
        else:
            out[key] = shift_seeds(value, offset)
    return out


def run_name(profile: str, seed_offset: int) -> str:
    """The folder of a run under results/ and reports/: the profile, or a replication's own."""
    return profile if not seed_offset else f"{profile}-seeds{seed_offset}"


def params_hash(obj: Any) -> str:
    """Stable across key order and runs: sha256 of canonical JSON, first 12 hex digits."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def parent_hash(section: dict, seed: int) -> str:
    """Identity of a paper's whole run at one profile: the MLflow parent run groups jobs by it."""
    return params_hash({"section": section, "seed": seed})
