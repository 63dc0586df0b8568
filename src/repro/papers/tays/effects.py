"""Claims T1-T3 from the evaluation records of every (arm, seed) and the measured compute costs.

The stream clock (repro.streaming.latency.stream_clock): frame group k (one second of video) is
complete at (k + 1) x the group interval; encoding and prefilling a group costs the measured
`prefill` seconds at the frame rate, every generated token the measured decode step. TaYS encodes on
its own timeline while it reasons (the concurrency of encoder and decoder is simulated from measured
costs: the 2 cores here run one after the other); interleaved prefills and reasons strictly in turn;
both batch arms prefill the whole video after its last group and then reason. The question is asked
before the stream starts (its prefill is off the clock); the answer letter costs one decode step
after the last unit. Our definitions (the public code logs per-sample compute times only):
- TTFT: stream start -> the first generated reasoning token; first content: -> the first token that
  is neither <skip> nor a terminator (the answer when there is none);
- delay: stream end -> the answer;
- rho = compute per group / group interval, compute per group = prefill of one group at the data's
  frame rate + the mean ground-truth unit length (terminator included) x the decode step; the sweep
  sets the interval to compute / rho (rho 1: the checks), the FPS sweep keeps that interval and
  prefills 1, 2 or 4 frames per group (the reasoning tokens stay those generated at the data's rate).
Checks: T1 and T2 against the holistic batch arm (the public batch baseline), T3 against the
per-second batch arm (the controlled comparison), as paired per-video differences with intervals
over seeds, then videos within seeds (`hierarchical`). The test videos are the same for every seed.
"""
from __future__ import annotations

import numpy as np

from repro.core.timing import AA, control, mark_unstable
from repro.report.intervals import hierarchical, speedup
from repro.streaming.latency import end_delay, first_time, stream_clock

MODES = {"tays": "concurrent", "interleaved": "serial", "batch_units": "after_stream",
         "batch_holistic": "after_stream"}


def costs(latency: dict, fps: int) -> dict:
    """Median seconds of the decode step and of one group's prefill per frame rate; the A/A control."""
    pairs = latency["pairs"]
    aa = control(speedup(pairs[AA]))
    per_call = latency["repeat"]  # a timed call runs its operation this many times
    token = float(np.median([t for k in pairs for t in pairs[k]["baseline_s"]])) / per_call
    prefill = {int(f): float(np.median(pairs[f"prefill_fps{f}"]["variant_s"])) / per_call for f in latency["fps"]}
    return {"token_s": token, "prefill_s": prefill, "fps": fps, "control": aa}


def clock(record: dict, arm: str, interval: float, prefill: float, token: float) -> dict:
    """TTFT, first content token and delay of one video (seconds on the stream timeline)."""
    g = record["groups"]
    times = stream_clock([(k + 1) * interval for k in range(g)], [prefill] * g, record["unit_tokens"], token, MODES[arm])
    content = [c for unit in record["content"] for c in unit]
    answer = times[-1] + token
    content_at = first_time(times, content)  # no content token: the answer is the first one
    return {"ttft": first_time(times), "first_content": min(content_at, answer),
            "delay": end_delay(answer, g * interval)}


def per_seed(records: dict, arm: str, fn) -> list[list[float]]:
    """fn(record) for every test video, one list per seed (seeds in sorted order)."""
    return [[fn(r) for r in records[arm][s]] for s in sorted(records[arm])]


def paired(records: dict, a: str, b: str, fa, fb=None) -> dict:
    """Mean over seeds and videos of fa(video of a) - fb(same video of b), hierarchical interval."""
    fb = fb or fa
    if sorted(records[a]) != sorted(records[b]):
        raise ValueError(f"arms {a} and {b} are not paired: seeds {sorted(records[a])} vs {sorted(records[b])}")
    return hierarchical([[fa(x) - fb(y) for x, y in zip(records[a][s], records[b][s])] for s in sorted(records[a])])


def timing_table(records: dict, c: dict, interval: float, fps: int) -> dict:
    """Per arm: TTFT, first content and delay (hierarchical means) at one interval and frame rate."""
    out = {}
    for arm in records:
        timed = {s: [clock(r, arm, interval, c["prefill_s"][fps], c["token_s"]) for r in records[arm][s]]
                 for s in sorted(records[arm])}
        out[arm] = {k: hierarchical([[t[k] for t in timed[s]] for s in timed])
                    for k in ("ttft", "first_content", "delay")}
    return out


def decide(records: dict, latency: dict, a: dict, unit_tokens_mean: float, fps: int) -> dict:
    """Every effect the claims read, the sweeps and the descriptive rows. `records`: arm -> seed ->
    list of evaluation records (the same test videos, in order, for every arm and seed)."""
    c = costs(latency, fps)
    per_group = c["prefill_s"][fps] + unit_tokens_mean * c["token_s"]
    interval = {float(rho): per_group / rho for rho in a["rho"]}
    at = interval[float(a["check_rho"])]
    timed = lambda arm, key: (lambda r: clock(r, arm, at, c["prefill_s"][fps], c["token_s"])[key])  # noqa: E731
    ctrl = c["control"]
    roles = a["roles"]
    tays, inter, hol, units = roles["tays"], roles["interleaved"], roles["batch"], roles["batch_units"]
    t1 = mark_unstable(paired(records, tays, hol, timed(tays, "ttft"), lambda r: 0.2 * timed(hol, "ttft")(r)), ctrl)
    t2a = mark_unstable(paired(records, tays, hol, timed(tays, "delay"), lambda r: 0.5 * timed(hol, "delay")(r)), ctrl)
    t2b = mark_unstable(paired(records, tays, inter, timed(tays, "delay"), timed(inter, "delay")), ctrl)
    t3a = paired(records, tays, units, lambda r: float(r["correct"]))
    t3b = paired(records, tays, units, lambda r: r["deviation"])
    arms = {arm: {"accuracy": hierarchical(per_seed(records, arm, lambda r: float(r["correct"]))),
                  "deviation": hierarchical(per_seed(records, arm, lambda r: r["deviation"])),
                  "described": hierarchical(per_seed(records, arm, lambda r: r["described"])),
                  "tokens": hierarchical(per_seed(records, arm, lambda r: sum(r["unit_tokens"])))}
            for arm in records}
    rho_sweep = {str(rho): timing_table(records, c, iv, fps) for rho, iv in interval.items()}
    fps_sweep = {str(f): timing_table(records, c, at, f) for f in c["prefill_s"]}
    return {
        "t1": {"ttft_minus_fifth_of_batch": t1,
               "ttft_ratio": _ratio(rho_sweep[str(float(a["check_rho"]))], tays, hol, "ttft")},
        "t2": {"delay_minus_half_of_batch": t2a, "delay_minus_interleaved": t2b,
               "delay_reduction_vs_batch": 1 - _ratio(rho_sweep[str(float(a["check_rho"]))], tays, hol, "delay"),
               "delay_reduction_vs_interleaved": 1 - _ratio(rho_sweep[str(float(a["check_rho"]))], tays, inter, "delay")},
        "t3": {"accuracy_minus_batch_units": t3a, "deviation_minus_batch_units": t3b,
               "deviation_reduction_vs_batch_units": 1 - arms[tays]["deviation"]["value"] / arms[units]["deviation"]["value"]
               if arms[units]["deviation"]["value"] else None},
        "clock": {"token_s": c["token_s"], "prefill_s": {str(k): v for k, v in c["prefill_s"].items()},
                  "compute_per_group_s": per_group, "unit_tokens_mean": unit_tokens_mean,
                  "interval_s": {str(k): v for k, v in interval.items()},
                  "rho_real_time": per_group / 1.0, "control": ctrl},
        "arms": arms, "rho_sweep": rho_sweep, "fps_sweep": fps_sweep,
    }


def _ratio(table: dict, a: str, b: str, key: str) -> float:
    return table[a][key]["value"] / table[b][key]["value"]


def _fmt(e: dict, scale: float = 1.0, digits: int = 3) -> str:
    lo, hi = e["ci"]
    f = lambda x: f"{x * scale:.{digits}f}"  # noqa: E731
    return f(e["value"]) + ("" if lo is None else f" [{f(lo)}, {f(hi)}]")


def report_tables(m: dict, seeds: list, fps: int) -> str:
    ck = m["clock"]
    lines = [f"Seeds {seeds} vary training (initialisation and batch order) and so the generated reasoning; "
             "the test videos and the measured compute costs are the same for every seed. Intervals: 95%, over "
             "seeds, then test videos within seeds.", "",
             "### Measured compute costs (the clock's inputs)", "",
             f"- decode step (dual KV cache): {ck['token_s'] * 1e3:.2f} ms; one group's prefill: "
             + ", ".join(f"{f} fps {v * 1e3:.2f} ms" for f, v in ck["prefill_s"].items()),
             f"- compute per group at {fps} fps: {ck['compute_per_group_s'] * 1e3:.2f} ms "
             f"({ck['unit_tokens_mean']:.2f} ground-truth tokens per unit); rho with real 1 s groups: "
             f"{ck['rho_real_time']:.4f}",
             "- group interval per rho: " + ", ".join(f"rho {r}: {v * 1e3:.2f} ms" for r, v in ck["interval_s"].items()),
             f"- A/A control (decode step vs an identical copy): {_fmt(ck['control'])} "
             f"({'stable' if ck['control']['stable'] else 'UNSTABLE'})", "",
             "### Quality per arm", "",
             "| arm | accuracy | deviation (groups) | changes described | tokens per video |", "|---|---|---|---|---|"]
    for arm, r in m["arms"].items():
        lines.append(f"| {arm} | {_fmt(r['accuracy'])} | {_fmt(r['deviation'], digits=2)} | {_fmt(r['described'])} | "
                     f"{_fmt(r['tokens'], digits=1)} |")
    for name, sweep in (("rho", m["rho_sweep"]), ("frame rate (interval of the checked rho)", m["fps_sweep"])):
        lines += ["", f"### Stream timing per {name} (ms on the simulated clock)", "",
                  f"| {name.split(' ')[0]} | arm | TTFT | first content token | delay after stream end |",
                  "|---|---|---|---|---|"]
        for key, table in sweep.items():
            for arm, r in table.items():
                lines.append(f"| {key} | {arm} | {_fmt(r['ttft'], 1e3, 2)} | {_fmt(r['first_content'], 1e3, 2)} | "
                             f"{_fmt(r['delay'], 1e3, 2)} |")
    lines += ["", "### Claim effects", "",
              f"- T1 TTFT(TaYS) / TTFT(batch) = {m['t1']['ttft_ratio']:.3f}; TTFT(TaYS) - 0.2 x TTFT(batch) = "
              f"{_fmt(m['t1']['ttft_minus_fifth_of_batch'], 1e3, 2)} ms",
              f"- T2 delay reduction vs batch {m['t2']['delay_reduction_vs_batch']:.1%}, vs interleaved "
              f"{m['t2']['delay_reduction_vs_interleaved']:.1%}",
              f"- T3 accuracy TaYS - per-second batch {_fmt(m['t3']['accuracy_minus_batch_units'])}; deviation "
              f"TaYS - per-second batch {_fmt(m['t3']['deviation_minus_batch_units'], digits=2)} groups"]
    return "\n".join(lines) + "\n"
