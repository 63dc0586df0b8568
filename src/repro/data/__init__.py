"""Shared data generators and loaders (text corpus here; tasks and videos for later papers)."""
