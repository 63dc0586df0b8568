"""One subpackage per paper: method.py (the mechanism), one module per stage, effects.py (the numbers the claim checks read)."""
