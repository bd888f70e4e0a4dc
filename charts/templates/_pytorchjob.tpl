{{/* The PyTorchJob backend of training steps (Kubeflow training-operator v1, kubeflow.org/v1 PyTorchJob).
A backend provides two helpers for "korean-llm.trainingStep" (_steps.tpl):
  korean-llm.<backend>.manifest    the job object the Argo resource step creates
  korean-llm.<backend>.conditions  its successCondition / failureCondition (Argo label-selector syntax), as YAML
Both take the stage context (dict "root" $ "model" $m "stage" "cpt" "st" $st "cfg" $cfg). */}}

{{- define "korean-llm.pytorchjob.manifest" -}}
{{- $nodes := int (default 1 .st.nodes) -}}
{{- $pod := include "korean-llm.stagePodTemplate" (merge (dict "containerName" "pytorch") .) -}}
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  # Embedded in the workflow, created by Argo per run; generateName keeps retried runs apart.
  generateName: {{ printf "%s-%s-" (include "korean-llm.modelName" .) .stage }}
  labels:
    {{- include "korean-llm.labels" (dict "root" .root "model" .model "component" .stage) | nindent 4 }}
    korean-llm/run: {{ include "korean-llm.runParam" . | quote }}
    {{- with .root.Values.scheduling.kueueQueueName }}
    kueue.x-k8s.io/queue-name: {{ . }}
    {{- end }}
spec:
  {{- if include "korean-llm.distributed" . }}
  nprocPerNode: {{ ternary (toString .st.gpus) "1" (gt (int (default 0 .st.gpus)) 0) | quote }}
  {{- end }}
  runPolicy:
    activeDeadlineSeconds: {{ .st.activeDeadlineSeconds | int64 }}
    backoffLimit: {{ .st.backoffLimit | int64 }}
    # A failed or timed-out job frees its GPUs; finished pods stay for their logs.
    cleanPodPolicy: Running
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: ExitCode
      template:
        {{- $pod | nindent 8 }}
    {{- if gt $nodes 1 }}
    Worker:
      replicas: {{ sub $nodes 1 }}
      restartPolicy: ExitCode
      template:
        {{- $pod | nindent 8 }}
    {{- end }}
{{- end -}}

{{/* Argo's executor (v4.1.2 workflow/executor/resource.go, matchConditions) fails the step as soon as ANY ONE
comma-separated failure requirement matches, and succeeds when ALL success requirements match; keys are
gjson paths restricted to label-key characters, so a condition cannot search the conditions list by type.
training-operator v1.9 (pkg/util/status.go setCondition) keeps at most one condition per type - Created,
Running or Restarting (they replace each other), Suspended, Succeeded, Failed: five entries - appends new
types at the end, and freezes the list once Failed is set. So "a Failed condition exists" is the OR below
over every index it can take, whatever path failed the job: a non-retryable exit under restartPolicy
ExitCode (Failed without completionTime), backoffLimit or activeDeadlineSeconds (with completionTime).
Queued (Suspended), running and restarting jobs (Master.failed is 1 while a pod that exited 128+ is
replaced) match neither condition and the step waits.
Success: the Master pod succeeded (the operator sets Succeeded in the same update). */}}
{{- define "korean-llm.pytorchjob.conditions" -}}
successCondition: status.replicaStatuses.Master.succeeded > 0
failureCondition: {{ range $i := until 5 }}{{ if $i }}, {{ end }}status.conditions.{{ $i }}.type == Failed{{ end }}
{{- end -}}
