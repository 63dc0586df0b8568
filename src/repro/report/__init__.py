"""Reports: a paper's claims beside our measurements with a verdict each, and the index."""
