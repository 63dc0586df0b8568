"""Streaming machinery shared by the streaming papers (proactivellm, tays): group position ids and
explicit 4D streaming attention masks, a dual KV cache (source / target), a batched READ/WRITE loop
over it, and latency metrics (AL, LAAL)."""
