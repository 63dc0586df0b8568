"""Routing-Free MoE: experts that activate themselves, unified adaptive balancing (see method.py)."""
