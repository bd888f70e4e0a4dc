{{/* A stage's pod: command, environment, resources, volumes, scheduling, metadata, and the pod template that
every job backend (PyTorchJob replicas, TrainJob pod overrides) and the container steps build from.
Each helper takes the stage context (dict "root" $ "model" $m "stage" "cpt" "st" $st "cfg" $cfg). */}}

{{/* Container command of a stage. The run id comes from the workflow parameter so `argo submit --from` can start
new runs. Distributed stages use torchrun, which reads --nnodes, --nproc-per-node, --node-rank and the
rendezvous address from the PET_* variables the training operator injects (PET_NNODES, PET_NPROC_PER_NODE, ...). */}}
{{- define "korean-llm.stageCommand" -}}
{{- $cmd := list "python" "-m" -}}
{{- if include "korean-llm.distributed" . -}}{{- $cmd = list "torchrun" "--module" -}}{{- end -}}
{{- $config := printf "%s/%s.yaml" .root.Values.configMountPath .stage -}}
{{- $runId := printf "run.run_id=%s" (include "korean-llm.runParam" .) -}}
{{- toYaml (concat $cmd (list "korean_llm" .stage "--config" $config "--set" $runId)) -}}
{{- end -}}

{{/* Environment of a stage container: STAGE, MODEL_SIZE, BASE_MODEL_PATH, WANDB_PROJECT (consistent with the stage config), secrets by reference. */}}
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

{{/* Claim names, checked: every mounted claim is created by the storage subchart or named by the user.
Usage: include "korean-llm.claim" (dict "root" $ "key" "data" "suffix" "data") */}}
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

{{/* The container of a stage, without its name (pytorch in PyTorchJobs, main in container steps). */}}
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

{{/* Scheduling of a stage pod: scheduler, node selector (scheduling.nodeSelector for every pod, plus
scheduling.gpuNodeSelector for GPU pods; a stage's own nodeSelector replaces both), tolerations, priority. */}}
{{- define "korean-llm.stageScheduling" -}}
{{- $v := .root.Values -}}
{{- $gpus := int (default 0 .st.gpus) -}}
{{- $out := dict -}}
{{- if $v.gpuScheduler.enabled -}}{{- $_ := set $out "schedulerName" (include "common.names.scheduler" .root) -}}{{- end -}}
{{- /* GPU nodes carry the nvidia.com/gpu taint: only GPU pods (which tolerate it) are pinned to them */ -}}
{{- $selector := ternary (merge (deepCopy (default dict $v.scheduling.gpuNodeSelector)) (default dict $v.scheduling.nodeSelector)) (default dict $v.scheduling.nodeSelector) (gt $gpus 0) -}}
{{- with (.st.nodeSelector | default $selector) -}}{{- $_ := set $out "nodeSelector" . -}}{{- end -}}
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

{{/* The pod template (metadata + spec) of a training stage, shared by every job backend: a PyTorchJob replica
template, or a TrainJob's pod template override. `containerName` is the container the backend expects
(PyTorchJob: pytorch).
Usage: include "korean-llm.stagePodTemplate" (merge (dict "containerName" "pytorch") $stageContext) */}}
{{- define "korean-llm.stagePodTemplate" -}}
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
    - name: {{ .containerName }}
      {{- include "korean-llm.stageContainer" . | nindent 6 }}
  volumes:
    {{- include "korean-llm.stageVolumes" . | nindent 4 }}
{{- end -}}
