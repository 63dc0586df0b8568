"""ProactiveLLM: deciding when to interact from endogenous states (spec: shared/specs/proactivellm.md)."""
