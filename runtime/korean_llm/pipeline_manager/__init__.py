"""`korean-llm pipeline`: submit, list, watch, read the logs of, stop and clean up pipeline runs.

Two backends with the same commands and output:

- `local` (default): runs of the local runner under `runs/<run-id>/` (`submit` starts `korean-llm run` in
  the background; state from `run.json`, the stages' event feeds and manifests).
- `cluster`: Argo Workflows created from the chart's installed WorkflowTemplates, through the official
  `kubernetes` client (kubeconfig or in-cluster service account); `stop` also deletes the run's
  PyTorchJobs / TrainJobs so no GPU stays held.

Exit codes (korean_llm.errors, the README's `pipeline` table): 0 ok; 1 (`wait`) the run failed or was stopped,
(`stop`, local) a process outlived SIGKILL; 2 bad input (unknown template, run or parameter, bad duration);
3 (`wait`) the evaluate gate stopped the run; 5 no permission on the cluster (RBAC; 4 is the stages' disk full);
124 (`wait`) timed out; 129 the cluster cannot be reached.
"""
