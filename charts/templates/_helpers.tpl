{{/* Chart name, cut to 63 characters. Usage: include "korean-llm.name" . */}}
{{- define "korean-llm.name" -}}
{{- include "common.names.name" . -}}
{{- end -}}

{{/* Name of a model's objects: <release>-<model>. Usage: include "korean-llm.modelName" (dict "root" $ "model" $m) */}}
{{- define "korean-llm.modelName" -}}
{{- include "common.names.release" (dict "root" .root "suffix" .model.name) -}}
{{- end -}}

{{/* Labels of a model's objects. Usage: include "korean-llm.labels" (dict "root" $ "model" $m "component" "pipeline") */}}
{{- define "korean-llm.labels" -}}
{{ include "common.labels.standard" . }}
korean-llm/model: {{ .model.name }}
{{- end -}}

{{/* Labels every pod of the pipeline carries (NetworkPolicy and PodMonitor select on them).
Usage: include "korean-llm.podLabels" (dict "root" $ "model" $m "component" "cpt") */}}
{{- define "korean-llm.podLabels" -}}
{{ include "common.labels.selector" . }}
app.kubernetes.io/part-of: korean-llm
korean-llm/model: {{ .model.name }}
{{- end -}}

{{/* Names of all models, space separated. */}}
{{- define "korean-llm.modelNames" -}}
{{- $names := list -}}
{{- range .Values.models -}}{{- $names = append $names .name -}}{{- end -}}
{{- join " " $names -}}
{{- end -}}

{{/* ServiceAccount of the workflows. */}}
{{- define "korean-llm.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "common.names.release" (dict "root" . "suffix" "workflow")) -}}
{{- end -}}

{{/* The Argo parameter holding the run id, written literally into the rendered templates. */}}
{{- define "korean-llm.runParam" -}}{{ "{{workflow.parameters.run-id}}" }}{{- end -}}

{{/* Stage order of the pipeline; the training stages run as PyTorchJobs, the others as container steps. */}}
{{- define "korean-llm.stageOrder" -}}preprocess cpt sft rlhf evaluate deploy{{- end -}}
{{- define "korean-llm.jobStages" -}}cpt sft rlhf evaluate{{- end -}}

{{/* A model's settings for one stage: stageDefaults.<stage> overlaid with models[].stages.<stage>, as YAML.
Usage: include "korean-llm.stage" (dict "root" $ "model" $m "stage" "cpt") | fromYaml */}}
{{- define "korean-llm.stage" -}}
{{- $defaults := deepCopy (default dict (index .root.Values.stageDefaults .stage)) -}}
{{- $own := deepCopy (default dict (index (default dict .model.stages) .stage)) -}}
{{- toYaml (mergeOverwrite $defaults $own) -}}
{{- end -}}

{{/* Enabled stages of a model, in pipeline order, space separated. */}}
{{- define "korean-llm.enabledStages" -}}
{{- $out := list -}}
{{- range $s := splitList " " (include "korean-llm.stageOrder" .) -}}
{{- if hasKey $.root.Values.stageDefaults $s -}}
{{- $st := include "korean-llm.stage" (dict "root" $.root "model" $.model "stage" $s) | fromYaml -}}
{{- if $st.enabled -}}{{- $out = append $out $s -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $out -}}{{- fail (printf "models[%s]: every stage is disabled" $.model.name) -}}{{- end -}}
{{- join " " $out -}}
{{- end -}}

{{/* The last enabled model-producing stage (cpt, sft, rlhf) before .stage, or "" (start from the base model). */}}
{{- define "korean-llm.previousModelStage" -}}
{{- $prev := "" -}}
{{- $done := false -}}
{{- range $s := splitList " " (include "korean-llm.enabledStages" .) -}}
{{- if eq $s $.stage -}}{{- $done = true -}}{{- end -}}
{{- if and (not $done) (has $s (list "cpt" "sft" "rlhf")) -}}{{- $prev = $s -}}{{- end -}}
{{- end -}}
{{- $prev -}}
{{- end -}}

{{/* Runtime config file of one stage (runtime/korean_llm/config.py): runtimeDefaults < models[].config <
stageDefaults.<stage>.config < models[].stages.<stage>.config, plus what the chart decides (stage, run). */}}
{{- define "korean-llm.stageConfig" -}}
{{- $st := include "korean-llm.stage" . | fromYaml -}}
{{- $cfg := mergeOverwrite (deepCopy (default dict .root.Values.runtimeDefaults)) (deepCopy (default dict .model.config)) (deepCopy (default dict $st.config)) -}}
{{- $run := mergeOverwrite (default dict (get $cfg "run")) (dict "model_name" .model.name "run_id" (toString .root.Values.runId) "data_root" "/data" "output_root" "/output") -}}
{{- $prev := include "korean-llm.previousModelStage" . -}}
{{- /* deploy releases what evaluate judged: it starts from the evaluate manifest when that stage runs */ -}}
{{- if and (eq .stage "deploy") (has "evaluate" (splitList " " (include "korean-llm.enabledStages" .))) -}}
{{- $prev = "evaluate" -}}
{{- end -}}
{{- if $prev -}}{{- $_ := set $run "previous_stage" $prev -}}{{- end -}}
{{- $_ := set $cfg "run" $run -}}
{{- $_ := set $cfg "stage" .stage -}}
{{- with .root.Values.datasets }}{{- $_ := set $cfg "datasets" (deepCopy .) -}}{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* true when a stage's pods are distributed (several GPUs or nodes): torchrun starts one process per GPU. */}}
{{- define "korean-llm.distributed" -}}
{{- if or (gt (int (default 0 .st.gpus)) 1) (gt (int (default 1 .st.nodes)) 1) -}}true{{- end -}}
{{- end -}}

{{/* Container command of a stage. The run id comes from the workflow parameter so `argo submit --from` can start
new runs. Distributed stages use torchrun, which reads --nnodes, --nproc-per-node, --node-rank and the
rendezvous address from the PET_* variables the training operator injects (PET_NNODES, PET_NPROC_PER_NODE, ...).
Usage: include "korean-llm.stageCommand" (dict "root" $ "stage" "cpt" "st" $st) */}}
{{- define "korean-llm.stageCommand" -}}
{{- $cmd := list "python" "-m" -}}
{{- if include "korean-llm.distributed" . -}}{{- $cmd = list "torchrun" "--module" -}}{{- end -}}
{{- $config := printf "%s/%s.yaml" .root.Values.configMountPath .stage -}}
{{- $runId := printf "run.run_id=%s" (include "korean-llm.runParam" .) -}}
{{- toYaml (concat $cmd (list "korean_llm" .stage "--config" $config "--set" $runId)) -}}
{{- end -}}

{{/* Environment of a stage container: the seed's names (consistent with the stage config), secrets by reference.
Usage: include "korean-llm.stageEnv" (dict "root" $ "stage" "cpt" "cfg" $cfg) */}}
{{- define "korean-llm.stageEnv" -}}
- name: STAGE
  value: {{ .stage }}
{{- with (.cfg.model).size }}
- name: MODEL_SIZE
  value: {{ . | quote }}
{{- end }}
{{- with (.cfg.model).base_model }}
- name: BASE_MODEL_PATH
  value: {{ . | quote }}
{{- end }}
{{- with (.cfg.tracking).wandb_project }}
- name: WANDB_PROJECT
  value: {{ . | quote }}
{{- end }}
{{- if .root.Values.storage.hfCache.enabled }}
- name: HF_HOME
  value: /cache/huggingface
{{- end }}
{{- if eq .stage "deploy" }}
- name: KOREAN_LLM_RESULT_DIR
  value: /tmp/korean-llm
{{- end }}
{{- with .root.Values.secrets.wandb.existingSecret }}
- name: WANDB_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.root.Values.secrets.wandb.key }}
{{- end }}
{{- with .root.Values.secrets.mlflow.existingSecret }}
- name: MLFLOW_TRACKING_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.root.Values.secrets.mlflow.key }}
{{- end }}
{{- with .root.Values.secrets.huggingface.existingSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.root.Values.secrets.huggingface.key }}
{{- end }}
{{- end -}}

{{/* Claim names, checked: every mounted claim is created by the storage subchart or named by the user. */}}
{{- define "korean-llm.claim" -}}
{{- $vol := index .root.Values.storage .key -}}
{{- if and (not .root.Values.storage.enabled) (not $vol.existingClaim) -}}
{{- fail (printf "storage.%s.existingClaim is required when storage.enabled is false (the chart mounts that claim)" .key) -}}
{{- end -}}
{{- include "common.names.claim" (dict "root" .root "volume" $vol "suffix" .suffix) -}}
{{- end -}}

{{/* Resources of a stage pod: requests = limits (a training pod is never throttled below what it asked for). */}}
{{- define "korean-llm.resources" -}}
{{- $r := dict "cpu" (toString .st.cpu) "memory" (toString .st.memory) -}}
{{- if gt (int (default 0 .st.gpus)) 0 -}}{{- $_ := set $r "nvidia.com/gpu" (int .st.gpus) -}}{{- end -}}
{{- toYaml (dict "requests" $r "limits" $r) -}}
{{- end -}}

{{/* The container of a stage: pytorch for PyTorchJobs, main for container steps.
Usage: include "korean-llm.stageContainer" (dict "root" $ "model" $m "stage" "cpt" "st" $st "cfg" $cfg "name" "pytorch") */}}
{{- define "korean-llm.stageContainer" -}}
{{- $root := .root -}}
{{- $port := int (default 0 ((.cfg.metrics).port)) -}}
image: {{ include "common.images.image" $root.Values.image | quote }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
command:
  {{- include "korean-llm.stageCommand" . | nindent 2 }}
env:
  {{- include "korean-llm.stageEnv" . | nindent 2 }}
{{- if and (gt $port 0) (ne ((.cfg.metrics).enabled) false) }}
ports:
  - name: metrics
    containerPort: {{ $port }}
{{- end }}
resources:
  {{- include "korean-llm.resources" . | nindent 2 }}
securityContext:
  {{- include "common.security.container" (dict "readOnlyRootFilesystem" $root.Values.podSecurity.readOnlyRootFilesystem) | nindent 2 }}
volumeMounts:
  - name: config
    mountPath: {{ $root.Values.configMountPath }}
    readOnly: true
  - name: data
    mountPath: /data
  - name: output
    mountPath: /output
  {{- if $root.Values.storage.hfCache.enabled }}
  - name: hf-cache
    mountPath: /cache/huggingface
  {{- end }}
  - name: tmp
    mountPath: /tmp
  {{- if gt (int (default 0 .st.gpus)) 0 }}
  - name: dshm
    mountPath: /dev/shm
  {{- end }}
{{- end -}}

{{/* Volumes matching "korean-llm.stageContainer". */}}
{{- define "korean-llm.stageVolumes" -}}
- name: config
  configMap:
    name: {{ include "korean-llm.modelName" . }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "korean-llm.claim" (dict "root" .root "key" "data" "suffix" "data") }}
- name: output
  persistentVolumeClaim:
    claimName: {{ include "korean-llm.claim" (dict "root" .root "key" "output" "suffix" "output") }}
{{- if .root.Values.storage.hfCache.enabled }}
- name: hf-cache
  persistentVolumeClaim:
    claimName: {{ include "korean-llm.claim" (dict "root" .root "key" "hfCache" "suffix" "hf-cache") }}
{{- end }}
- name: tmp
  emptyDir: {}
{{- if gt (int (default 0 .st.gpus)) 0 }}
- name: dshm
  emptyDir:
    medium: Memory
{{- end }}
{{- end -}}

{{/* Scheduling of a stage pod: scheduler, node selector, tolerations, priority. */}}
{{- define "korean-llm.stageScheduling" -}}
{{- $v := .root.Values -}}
{{- $gpus := int (default 0 .st.gpus) -}}
{{- $out := dict -}}
{{- if $v.gpuScheduler.enabled -}}{{- $_ := set $out "schedulerName" (include "common.names.scheduler" .root) -}}{{- end -}}
{{- with (.st.nodeSelector | default $v.scheduling.nodeSelector) -}}{{- $_ := set $out "nodeSelector" . -}}{{- end -}}
{{- with (.st.tolerations | default (ternary $v.scheduling.gpuTolerations list (gt $gpus 0))) -}}{{- $_ := set $out "tolerations" . -}}{{- end -}}
{{- with $v.scheduling.priorityClassName -}}{{- $_ := set $out "priorityClassName" . -}}{{- end -}}
{{- if $out -}}{{- toYaml $out -}}{{- end -}}
{{- end -}}

{{/* Pod metadata of a stage: labels, and the scrape annotations of the plain Prometheus config. */}}
{{- define "korean-llm.stagePodMetadata" -}}
labels:
  {{- include "korean-llm.podLabels" (dict "root" .root "model" .model "component" .stage) | nindent 2 }}
  korean-llm/run: {{ include "korean-llm.runParam" . | quote }}
{{- $port := int (default 0 ((.cfg.metrics).port)) }}
{{- if gt $port 0 }}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ $port | quote }}
  prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* The PyTorchJob of a training stage (the manifest of its Argo resource step).
Usage: include "korean-llm.pytorchJob" (dict "root" $ "model" $m "stage" "cpt" "st" $st "cfg" $cfg) */}}
{{- define "korean-llm.pytorchJob" -}}
{{- $nodes := int (default 1 .st.nodes) -}}
{{- $pod := include "korean-llm.pytorchPod" . -}}
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

{{/* Pod template of a PyTorchJob replica. */}}
{{- define "korean-llm.pytorchPod" -}}
metadata:
  {{- include "korean-llm.stagePodMetadata" . | nindent 2 }}
spec:
  automountServiceAccountToken: false
  securityContext:
    {{- include "common.security.pod" (dict "runAsUser" .root.Values.podSecurity.runAsUser) | nindent 4 }}
  {{- with include "korean-llm.stageScheduling" . }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with .root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  containers:
    - name: pytorch
      {{- include "korean-llm.stageContainer" . | nindent 6 }}
  volumes:
    {{- include "korean-llm.stageVolumes" . | nindent 4 }}
{{- end -}}

{{/* Names of the WorkflowTemplates a run starts: the parent when it is rendered, else one per model. */}}
{{- define "korean-llm.entryTemplates" -}}
{{- if include "korean-llm.parentEnabled" . -}}
{{- include "common.names.release" (dict "root" . "suffix" "all") -}}
{{- else -}}
{{- $names := list -}}
{{- range $m := .Values.models -}}{{- $names = append $names (include "korean-llm.modelName" (dict "root" $ "model" $m)) -}}{{- end -}}
{{- join " " $names -}}
{{- end -}}
{{- end -}}

{{- define "korean-llm.parentEnabled" -}}
{{- if and .Values.pipeline.parent.enabled (gt (len .Values.models) 1) -}}true{{- end -}}
{{- end -}}

{{/* Settings every workflow of the chart shares (WorkflowTemplates, the run Workflow, the CronWorkflow). */}}
{{- define "korean-llm.workflowSpecCommon" -}}
serviceAccountName: {{ include "korean-llm.serviceAccountName" . }}
activeDeadlineSeconds: {{ .Values.pipeline.activeDeadlineSeconds | int64 }}
ttlStrategy:
  secondsAfterCompletion: {{ .Values.pipeline.ttlSecondsAfterFinished | int64 }}
podGC:
  strategy: OnPodSuccess
securityContext:
  {{- include "common.security.pod" (dict "runAsUser" .Values.podSecurity.runAsUser) | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- if .Values.notifications.slack.enabled }}
onExit: notify
{{- end }}
{{- end -}}

{{/* Exit handler: posts the run's result to Slack (webhook from an existing Secret).
Usage: include "korean-llm.notifyTemplate" (dict "root" $ "what" "qwen7b") */}}
{{- define "korean-llm.notifyTemplate" -}}
name: notify
container:
  image: {{ include "common.images.image" .root.Values.image | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: [python, -c]
  args:
    - |
      import json, os, urllib.request
      try:
          failed = [f.get("displayName", "?") for f in json.loads(os.environ["FAILURES"])]
      except ValueError:  # no failures: Argo leaves the placeholder
          failed = []
      text = f"korean-llm {os.environ['MODEL']} run {os.environ['RUN_ID']}: {os.environ['STATUS']}"
      if failed:
          text += " - failed step(s): " + ", ".join(failed)
      req = urllib.request.Request(
          os.environ["SLACK_WEBHOOK_URL"], json.dumps({"text": text}).encode(), {"Content-Type": "application/json"}
      )
      urllib.request.urlopen(req, timeout=30)
  env:
    - name: MODEL
      value: {{ .what | quote }}
    - name: RUN_ID
      value: {{ include "korean-llm.runParam" . | quote }}
    - name: STATUS
      value: "{{ "{{workflow.status}}" }}"
    - name: FAILURES
      value: "{{ "{{workflow.failures}}" }}"
    - name: SLACK_WEBHOOK_URL
      valueFrom:
        secretKeyRef:
          name: {{ required "notifications.slack.existingSecret is required when notifications.slack.enabled is true" .root.Values.notifications.slack.existingSecret }}
          key: {{ .root.Values.notifications.slack.key }}
  resources:
    requests: {cpu: 100m, memory: 128Mi}
    limits: {cpu: 500m, memory: 256Mi}
  securityContext:
    {{- include "common.security.container" dict | nindent 4 }}
{{- end -}}
