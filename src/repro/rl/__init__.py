"""Group-relative policy optimisation core shared by the RL papers.

rollout.py: batched sampling of G responses per prompt on the KV cache (with the sampling
distribution's log-probs and entropies), and the training-time log-probs of those responses.
grpo.py: group statistics (degenerate groups), advantages with or without std, PPO-clip loss with a
constant-length normaliser. Groups are given by a group id per rollout, so groups of different sizes
(e.g. Memory-R2's global groups beside local re-rollout groups) go through the same functions.
"""
