"""korean-llm: raw Korean text to a served Korean LLM (the pipeline runtime; the README describes its layout)."""

__version__ = "0.1.0"
