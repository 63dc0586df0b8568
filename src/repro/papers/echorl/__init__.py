"""EchoRL: learning from advantage-degenerated rollouts in RLVR (spec: shared/specs/echorl.md)."""
