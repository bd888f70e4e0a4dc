"""The local pipeline: `korean-llm run` / `render` (the chart's DAG as local processes) and the HTML report."""
