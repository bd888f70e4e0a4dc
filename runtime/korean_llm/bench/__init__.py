"""Measurements of the stage code path (`korean-llm bench`)."""
