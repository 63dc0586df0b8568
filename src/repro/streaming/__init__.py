"""Streaming machinery shared by the streaming papers (proactivellm, tays): group position ids and
explicit 4D streaming attention masks (and the frame-group visibility rule of TaYS), a dual KV cache
(source / target; a batched one for transformers models and a per-layer one for
repro.models.decoder with an inputs_embeds path for frame tokens), a batched READ/WRITE loop over
it, and latency metrics (AL, LAAL; a simulated stream clock, TTFT and the delay after the stream)."""
