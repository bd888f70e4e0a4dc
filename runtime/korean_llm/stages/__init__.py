"""One module per pipeline stage, each with `main(config)`; the CLI imports `korean_llm.stages.<stage>`."""
