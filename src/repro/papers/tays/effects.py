"""Claims T1-T3, their regimes and controls, from the evaluation records of every (arm, seed) and the
measured compute costs.

The stream clock (repro.streaming.latency.stream_clock): frame group k (one second of video) is
complete at (k + 1) x the group interval; encoding and prefilling a group costs the measured
`prefill` seconds at the frame rate, every generated token the measured decode step. TaYS encodes on
its own timeline while it reasons (the concurrency of encoder and decoder is simulated from measured
costs: the 2 cores here run one after the other); interleaved prefills and reasons strictly in turn;
both batch arms prefill the whole video after its last group and then reason. The question is asked
before the stream starts (its prefill is off the clock); the answer costs one decode step after the
last unit. Our definitions (the public code logs per-sample compute times only):
- TTFT: stream start -> the first generated reasoning token; first content: -> the first token that
  is neither <skip> nor a terminator (the answer when there is none);
- delay: stream end -> the answer;
- rho = compute per group / group interval, compute per group = prefill of one group at the data's
  frame rate + the mean ground-truth unit length of the TRAINING split (terminator included) x the
  decode step (never the test split's); the sweep sets the interval to compute / rho (rho 1: the
  checks), the FPS sweep keeps that interval and prefills 1, 2 or 4 frames per group (the reasoning
  tokens stay those generated at the data's rate).
T1 and T2's comparison with batch follow from the clock (TTFT(TaYS) ~ one group interval, TTFT(batch)
~ the clip): measured from the run and labelled by design. The sampled effects are paired per-video
comparisons over seeds x the test videos every arm and seed shares (`hierarchical`, crossed): T2
against interleaved as a ratio of mean delays, widened by the latency job's A/A control
(`against_aa`), and T3 against the per-second batch arm. The seed-only A/A control runs T3's and T2's
effect code on the per-second batch arm against itself trained on disjoint seeds (`aa_seeds`).
"""
from __future__ import annotations

import numpy as np

from repro.core.timing import AA
from repro.report.intervals import against_aa, by_design, hierarchical, hierarchical_diff, hierarchical_ratio, speedup
from repro.report.verdicts import fmt_ci, seed_control, timing_control
from repro.streaming.latency import end_delay, first_time, stream_clock

MODES = {"tays": "concurrent", "interleaved": "serial", "batch_units": "after_stream",
         "batch_holistic": "after_stream"}


def costs(latency: dict, fps: int) -> dict:
    """Median seconds of the decode step and of one group's prefill per frame rate; the A/A effect."""
    pairs = latency["pairs"]
    per_call = latency["repeat"]  # a timed call runs its operation this many times
    token = float(np.median([t for k in pairs for t in pairs[k]["baseline_s"]])) / per_call
    prefill = {int(f): float(np.median(pairs[f"prefill_fps{f}"]["variant_s"])) / per_call for f in latency["fps"]}
    return {"token_s": token, "prefill_s": prefill, "fps": fps, "aa": speedup(pairs[AA])}


def clock(record: dict, arm: str, interval: float, prefill: float, token: float) -> dict:
    """TTFT, first content token and delay of one video (seconds on the stream timeline)."""
    g = record["groups"]
    times = stream_clock([(k + 1) * interval for k in range(g)], [prefill] * g, record["unit_tokens"], token, MODES[arm])
    content = [c for unit in record["content"] for c in unit]
    answer = times[-1] + token
    content_at = first_time(times, content)  # no content token: the answer is the first one
    return {"ttft": first_time(times), "first_content": min(content_at, answer),
            "delay": end_delay(answer, g * interval)}


def items(runs: dict, fn) -> dict:
    """{seed: [fn(video) for every test video]} of one arm's runs ({seed: records})."""
    return {s: [fn(r) for r in runs[s]] for s in sorted(runs)}


def relabel(aa: dict, main: dict) -> dict:
    """The A/A runs under the main seeds' labels, paired positionally (seed i with A/A seed i)."""
    if len(aa) != len(main) or set(aa) & set(main):
        raise ValueError(f"the seed A/A control needs as many seeds as the main set, disjoint from it: aa_seeds "
                         f"{sorted(aa)} vs seeds {sorted(main)}")
    return dict(zip(sorted(main), (aa[s] for s in sorted(aa))))


def delay_ratio(x: dict, y: dict, delay_x, delay_y, aa: dict) -> dict:
    """Mean delay of x's videos / mean delay of the same videos in y (seeds x videos, paired), its
    interval widened by the latency job's A/A control: T2's effect against interleaved."""
    e = hierarchical_ratio(items(x, delay_x), items(y, delay_y), "no delay to compare with")
    return e if e["ci"][0] is None else against_aa(e, aa)  # one seed: no interval to widen


def length_ratio(runs: dict) -> dict:
    """Generated tokens of the units / ground-truth tokens of the same units (seeds x videos)."""
    return hierarchical_ratio(items(runs, lambda r: sum(r["unit_tokens"])), items(runs, lambda r: sum(r["truth_tokens"])),
                              "no ground-truth tokens")


def quality(x: dict, y: dict, key: str) -> dict:
    """Mean over seeds x videos of key(video of x) - key(same video of y): T3's effects."""
    fn = (lambda r: float(r[key]))
    return hierarchical_diff(items(x, fn), items(y, fn))


def timing_table(records: dict, c: dict, interval: float, fps: int) -> dict:
    """Per arm: TTFT, first content and delay (seeds x videos means) at one interval and frame rate."""
    return {arm: {k: hierarchical(list(items(runs, lambda r, k=k: clock(r, arm, interval, c["prefill_s"][fps],
                                                                        c["token_s"])[k]).values()))
                  for k in ("ttft", "first_content", "delay")}
            for arm, runs in records.items()}


def decide(records: dict, aa_runs: dict, latency: dict, a: dict, unit_tokens_mean: float, fps: int) -> dict:
    """Every effect, regime metric and control the claims read, the sweeps and the descriptive rows.
    `records`: arm -> seed -> evaluation records (the same test videos, in order, for every arm and
    seed); `aa_runs`: seed -> records of the per-second batch arm on the A/A seeds;
    `unit_tokens_mean`: the training split's mean ground-truth unit length (rho)."""
    c = costs(latency, fps)
    per_group = c["prefill_s"][fps] + unit_tokens_mean * c["token_s"]
    interval = {float(rho): per_group / rho for rho in a["rho"]}
    at = interval[float(a["check_rho"])]
    timed = lambda arm, key, scale=1.0: (lambda r: scale * clock(r, arm, at, c["prefill_s"][fps], c["token_s"])[key])  # noqa: E731
    roles = a["roles"]
    missing = {k: v for k, v in roles.items() if v not in records}
    if missing:
        raise ValueError(f"analysis.roles names arms that were not run: {missing} (arms: {sorted(records)})")
    tays, inter, hol, units = roles["tays"], roles["interleaved"], roles["batch"], roles["batch_units"]
    r = records
    aa_units = relabel(aa_runs, r[units])
    clock_note = "follows from the simulated stream clock (TTFT(TaYS) ~ one group interval, TTFT(batch) ~ the clip)"
    t1 = hierarchical_diff(items(r[tays], timed(tays, "ttft")), items(r[hol], timed(hol, "ttft", 0.2)))
    t2a = hierarchical_diff(items(r[tays], timed(tays, "delay")), items(r[hol], timed(hol, "delay", 0.5)))
    arms = {arm: {"accuracy": hierarchical(list(items(runs, lambda v: float(v["correct"])).values())),
                  "deviation": hierarchical(list(items(runs, lambda v: v["deviation"]).values())),
                  "described": hierarchical(list(items(runs, lambda v: v["described"]).values())),
                  "tokens": hierarchical(list(items(runs, lambda v: sum(v["unit_tokens"])).values())),
                  "length_ratio": length_ratio(runs)}
            for arm, runs in {**r, f"{units}_aa_seeds": aa_units}.items()}
    rho_sweep = {str(rho): timing_table(r, c, iv, fps) for rho, iv in interval.items()}
    fps_sweep = {str(f): timing_table(r, c, at, f) for f in c["prefill_s"]}
    check = rho_sweep[str(float(a["check_rho"]))]
    controls = {
        "seed_aa": seed_control(quality(r[units], aa_units, "correct"),
                                f"accuracy of {units}: seeds {sorted(r[units])} - A/A seeds {sorted(aa_runs)} (T3's code)"),
        "seed_aa_deviation": seed_control(quality(r[units], aa_units, "deviation"),
                                          f"event deviation of {units}, main - A/A seeds (T3's code)"),
        "seed_aa_delay": seed_control(delay_ratio(r[units], aa_units, timed(units, "delay"), timed(units, "delay"),
                                                  c["aa"]), f"delay of {units}, main / A/A seeds (T2's code)", null=1.0),
        "latency_aa": timing_control(c["aa"], "decode step vs an identical copy (latency job)"),
    }
    return {
        "t1": {"ttft_minus_fifth_of_batch": by_design(t1["value"], clock_note), "ttft_sampled": t1,
               "ttft_ratio": _ratio(check, tays, hol, "ttft")},
        "t2": {"delay_minus_half_of_batch": by_design(t2a["value"], clock_note), "delay_minus_half_sampled": t2a,
               "delay_ratio_to_interleaved": delay_ratio(r[tays], r[inter], timed(tays, "delay"), timed(inter, "delay"),
                                                         c["aa"]),
               "delay_minus_interleaved": hierarchical_diff(items(r[tays], timed(tays, "delay")),
                                                            items(r[inter], timed(inter, "delay"))),
               "delay_reduction_vs_batch": 1 - _ratio(check, tays, hol, "delay"),
               "delay_reduction_vs_interleaved": 1 - _ratio(check, tays, inter, "delay"),
               "length_ratio": {"tays": arms[tays]["length_ratio"], "interleaved": arms[inter]["length_ratio"]}},
        "t3": {"accuracy_minus_batch_units": quality(r[tays], r[units], "correct"),
               "deviation_minus_batch_units": quality(r[tays], r[units], "deviation"),
               "batch_units_accuracy": arms[units]["accuracy"], "batch_units_described": arms[units]["described"],
               "deviation_reduction_vs_batch_units": 1 - arms[tays]["deviation"]["value"] / arms[units]["deviation"]["value"]
               if arms[units]["deviation"]["value"] else None},
        "clock": {"token_s": c["token_s"], "prefill_s": {str(k): v for k, v in c["prefill_s"].items()},
                  "compute_per_group_s": per_group, "unit_tokens_mean": unit_tokens_mean,
                  "interval_s": {str(k): v for k, v in interval.items()}, "rho_real_time": per_group / 1.0},
        "controls": controls, "arms": arms, "rho_sweep": rho_sweep, "fps_sweep": fps_sweep,
    }


def _ratio(table: dict, a: str, b: str, key: str) -> float:
    return table[a][key]["value"] / table[b][key]["value"]


def _fmt(e: dict, scale: float = 1.0, digits: int = 3) -> str:
    lo, hi = e["ci"]
    f = lambda x: f"{x * scale:.{digits}f}"  # noqa: E731
    return f(e["value"]) + ("" if lo is None else f" [{f(lo)}, {f(hi)}]")


def report_tables(m: dict, seeds: list, aa_seeds: list, fps: int) -> str:
    ck = m["clock"]
    lines = [f"Seeds {seeds} vary training (initialisation and batch order) and so the generated reasoning; the "
             f"per-second batch arm is trained again on seeds {aa_seeds} for the seed A/A control. The test videos "
             "and the measured compute costs are the same for every arm and seed. Intervals: 95%, crossed over "
             "seeds x the shared test videos.", "",
             "### Measured compute costs (the clock's inputs)", "",
             f"- decode step (dual KV cache): {ck['token_s'] * 1e3:.2f} ms; one group's prefill: "
             + ", ".join(f"{f} fps {v * 1e3:.2f} ms" for f, v in ck["prefill_s"].items()),
             f"- compute per group at {fps} fps: {ck['compute_per_group_s'] * 1e3:.2f} ms "
             f"({ck['unit_tokens_mean']:.2f} ground-truth tokens per unit in the training split); rho with real "
             f"1 s groups: {ck['rho_real_time']:.4f}",
             "- group interval per rho: " + ", ".join(f"rho {r}: {v * 1e3:.2f} ms" for r, v in ck["interval_s"].items()),
             f"- timing A/A (decode step vs an identical copy): {fmt_ci(m['controls']['latency_aa']['effect'])}; "
             "T2's ratio against interleaved is widened by it", "",
             "### Quality per arm", "",
             "| arm | accuracy | deviation (groups) | changes described | tokens per video | generated / true unit tokens |",
             "|---|---|---|---|---|---|"]
    for arm, r in m["arms"].items():
        lines.append(f"| {arm} | {_fmt(r['accuracy'])} | {_fmt(r['deviation'], digits=2)} | {_fmt(r['described'])} | "
                     f"{_fmt(r['tokens'], digits=1)} | {_fmt(r['length_ratio'])} |")
    for name, sweep in (("rho", m["rho_sweep"]), ("frame rate (interval of the checked rho)", m["fps_sweep"])):
        lines += ["", f"### Stream timing per {name} (ms on the simulated clock)", "",
                  f"| {name.split(' ')[0]} | arm | TTFT | first content token | delay after stream end |",
                  "|---|---|---|---|---|"]
        for key, table in sweep.items():
            for arm, r in table.items():
                lines.append(f"| {key} | {arm} | {_fmt(r['ttft'], 1e3, 2)} | {_fmt(r['first_content'], 1e3, 2)} | "
                             f"{_fmt(r['delay'], 1e3, 2)} |")
    t2 = m["t2"]
    lines += ["", "### Claim effects", "",
              f"- T1 TTFT(TaYS) / TTFT(batch) = {m['t1']['ttft_ratio']:.3f}; TTFT(TaYS) - 0.2 x TTFT(batch) = "
              f"{_fmt(m['t1']['ttft_sampled'], 1e3, 2)} ms (by design)",
              f"- T2 delay reduction vs batch {t2['delay_reduction_vs_batch']:.1%} (by design), vs interleaved "
              f"{t2['delay_reduction_vs_interleaved']:.1%}: delay(TaYS) / delay(interleaved) "
              f"{_fmt(t2['delay_ratio_to_interleaved'])} (A/A-widened), difference "
              f"{_fmt(t2['delay_minus_interleaved'], 1e3, 2)} ms",
              f"- T3 accuracy TaYS - per-second batch {_fmt(m['t3']['accuracy_minus_batch_units'])}; deviation "
              f"TaYS - per-second batch {_fmt(m['t3']['deviation_minus_batch_units'], digits=2)} groups"]
    return "\n".join(lines) + "\n"
