{{/* Argo templates of one stage: the training step (an Argo resource step around the job of the training
backend), the container step (preprocess, deploy) and the rollout patch. */}}

{{/* The job backend of the training stages: trainjob (Kubeflow Trainer v2, _trainjob.tpl, the default) or
pytorchjob (Kubeflow training-operator v1, _pytorchjob.tpl). A backend is a pair of helpers
korean-llm.<backend>.manifest and korean-llm.<backend>.conditions (see _pytorchjob.tpl). */}}
{{- define "korean-llm.trainingBackend" -}}
{{- $backend := ((.Values.training).backend) | default "trainjob" -}}
{{- if not (has $backend (list "trainjob" "pytorchjob")) -}}
{{- fail (printf "training.backend must be trainjob or pytorchjob, found %q" $backend) -}}
{{- end -}}
{{- $backend -}}
{{- end -}}

{{/* Name of a stage's job: one per workflow, model and stage, the same for every retry of the step, so a retried
step re-attaches to the job it started (`kubectl apply` returns the existing object) instead of starting a second
one beside an orphan writing the same <stage>.partial/. The model's position in `models` tells the models of one
Workflow apart: the parent template (<release>-all) runs every model's DAG through templateRef inside a single
Workflow, so they share its `workflow.uid`. `<stage>-<index>-<workflow.uid>` (36 characters of uid) stays a
DNS-1035 label with room for the operator's "-master-0" / "-worker-N" and JobSet's "-node-<job>-<pod>-<random>"
pod names within 63 characters (evaluate with a two-digit index: 63). */}}
{{- define "korean-llm.jobName" -}}
{{- $index := 0 -}}
{{- range $i, $m := .root.Values.models -}}{{- if eq $m.name $.model.name -}}{{- $index = $i -}}{{- end -}}{{- end -}}
{{- printf "%s-%d-%s" .stage $index "{{workflow.uid}}" -}}
{{- end -}}

{{/* Labels of a stage's job: the model's labels, the run, the Kueue queue, and the workflow uid the exit handler
selects on. */}}
{{- define "korean-llm.jobLabels" -}}
{{ include "korean-llm.labels" (dict "root" .root "model" .model "component" .stage) }}
korean-llm/run: {{ include "korean-llm.runParam" . | quote }}
korean-llm/workflow-uid: {{ "{{workflow.uid}}" | quote }}
{{- with .root.Values.scheduling.kueueQueueName }}
kueue.x-k8s.io/queue-name: {{ . }}
{{- end }}
{{- end -}}

{{/* Retries of a step whose pod was lost (node drain, preemption, eviction, a deleted pod: Argo marks those
Error, or the container ends on a signal), never of a failure that would repeat. `retryPolicy: Always` hands the
decision to the expression (argo-workflows v4.1.2 docs/retries.md). No backoff.maxDuration: it counts from the
first attempt's start, so it would forbid any retry of a training step that ran longer than it.
Usage: include "korean-llm.retryStrategy" (dict "root" $ "permanent" "<expr: the failure will repeat>" | "") */}}
{{- define "korean-llm.retryStrategy" -}}
retryStrategy:
  limit: {{ .root.Values.pipeline.retry.limit }}
  retryPolicy: Always
  {{- with .permanent }}
  expression: {{ printf "lastRetry.status == \"Error\" || !(%s)" . | quote }}
  {{- end }}
  backoff:
    duration: {{ printf "%ds" (int .root.Values.pipeline.retry.backoffSeconds) | quote }}
    factor: 2
{{- end -}}

{{/* The Argo resource step of a training stage, for any job backend.
- No step deadline: Argo counts it from the step's start, so time queued in Kueue would count against it. The
  job's own activeDeadlineSeconds is the stage's limit (training-operator v1.9 counts it from status.startTime,
  set when Kueue admits the job: pkg/controller.v1/common/job.go); the workflow's deadline is the backstop.
- Retries re-attach (deterministic name, `apply`). A job that failed fails the retried step again on its first
  poll; the expression does not even retry when the executor reported the failure condition (argoexec exits 64
  for every error, so only the message tells a failed job from a lost pod: cmd/argoexec/main.go).
Usage: include "korean-llm.trainingStep" (merge (dict "backend" "pytorchjob") $stageContext) */}}
{{- define "korean-llm.trainingStep" -}}
{{- $conditions := include (printf "korean-llm.%s.conditions" .backend) . | fromYaml -}}
{{ include "korean-llm.retryStrategy" (dict "root" .root "permanent" "lastRetry.message contains \"failure condition\"") }}
resource:
  action: apply
  setOwnerReference: true
  {{- if eq .backend "trainjob" }}
  # Server-side apply: a retried step's apply merges spec.runtimePatches by `manager` (a list map) and leaves
  # Kueue's own entry (kueue.x-k8s.io/manager) alone; a client-side apply would send the whole list, and Trainer's
  # webhook refuses any change of runtimePatches on a running TrainJob (jobset/jobset.go:214-251 at v2.3.0).
  flags: [--server-side]
  {{- end }}
  successCondition: {{ $conditions.successCondition }}
  failureCondition: {{ $conditions.failureCondition }}
  manifest: |
    {{- include (printf "korean-llm.%s.manifest" .backend) . | nindent 4 }}
{{- end -}}

{{/* An Argo container step (preprocess, deploy): the stage container as the step's main container; retried when
its pod is lost or it stops on a signal (143: the runtime saved a checkpoint), not on exits 1-3. */}}
{{- define "korean-llm.containerStep" -}}
activeDeadlineSeconds: {{ .st.activeDeadlineSeconds | int64 }}
{{- /* the runtime's permanent exits: 1 a bug, 2 bad config or data, 3 a failed gate (README exit codes) */}}
{{ include "korean-llm.retryStrategy" (dict "root" .root "permanent" "lastRetry.exitCode in [\"1\", \"2\", \"3\"]") }}
{{- include "korean-llm.executorPatch" . }}
{{- with include "korean-llm.stageScheduling" . }}
{{ . }}
{{- end }}
container:
  {{- include "korean-llm.stageContainer" . | nindent 2 }}
volumes:
  {{- include "korean-llm.stageVolumes" . | nindent 2 }}
{{- if eq .stage "deploy" }}
outputs:
  parameters:
    - name: version
      valueFrom:
        path: /tmp/korean-llm/version
{{- end }}
{{- end -}}

{{/* The rollout (a steps template, cluster only): `rollout-patch` points the inference Deployment at the new release folder (strategic merge: the
`server` container's MODEL_PATH, so each ReplicaSet pins one release and `kubectl rollout undo` rolls the model
back) and stamps the version; `rollout-status` then waits for `kubectl rollout status` so the DAG ends only
when the new pods serve (it fails after progressDeadlineSeconds). Usage: include "korean-llm.rolloutSteps" (dict "root" $ "model" $m) */}}
{{- define "korean-llm.rolloutSteps" -}}
{{- $deployment := include "common.names.inference" .root -}}
- name: rollout
  inputs:
    parameters:
      - name: version
  steps:
    - - name: patch
        template: rollout-patch
        arguments:
          parameters:
            - name: version
              value: "{{ "{{inputs.parameters.version}}" }}"
    - - name: status
        template: rollout-status
- name: rollout-patch
  inputs:
    parameters:
      - name: version
  {{- include "korean-llm.retryStrategy" (dict "root" .root "permanent" "") | nindent 2 }}
  resource:
    action: patch
    mergeStrategy: strategic
    manifest: |
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: {{ $deployment }}
      spec:
        template:
          metadata:
            annotations:
              korean-llm/model-version: "{{ "{{inputs.parameters.version}}" }}"
          spec:
            containers:
              - name: server
                env:
                  - name: MODEL_PATH
                    value: "/output/{{ .model.name }}/releases/{{ "{{inputs.parameters.version}}" }}"
- name: rollout-status
  activeDeadlineSeconds: {{ add .root.Values.inference.probes.startupTimeoutSeconds 900 }}
  {{- include "korean-llm.retryStrategy" (dict "root" .root "permanent" "") | nindent 2 }}
  {{- include "korean-llm.executorPatch" . | nindent 2 }}
  container:
    image: {{ include "korean-llm.kubectlImage" .root | quote }}
    imagePullPolicy: IfNotPresent
    command: [kubectl, rollout, status, {{ printf "deployment/%s" $deployment }}, --watch, {{ printf "--timeout=%ds" (int (add .root.Values.inference.probes.startupTimeoutSeconds 600)) }}]
    resources:
      requests: {cpu: 50m, memory: 64Mi}
      limits: {cpu: 200m, memory: 128Mi}
    securityContext:
      {{- include "common.security.container" dict | nindent 6 }}
{{- end -}}

{{/* kubectl for the rollout-status step: registry.k8s.io/kubectl at the cluster's version (kubectl supports one
minor of skew either way), unless pipeline.kubectlImage names one. */}}
{{- define "korean-llm.kubectlImage" -}}
{{- .Values.pipeline.kubectlImage | default (printf "registry.k8s.io/kubectl:%s" (regexFind "^v[0-9]+\\.[0-9]+\\.[0-9]+" .Capabilities.KubeVersion.Version)) -}}
{{- end -}}
