"""One subpackage per paper: method.py (the mechanism), one module per stage, claims.py."""
