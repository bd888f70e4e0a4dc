"""korean-llm: raw Korean text to a served Korean LLM. See DESIGN in the repository README."""

__version__ = "0.1.0"
