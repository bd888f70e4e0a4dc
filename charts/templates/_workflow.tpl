{{/* What every Workflow of the chart shares (the model WorkflowTemplates, the parent, the run Workflow, the
CronWorkflow), and the exit handler. */}}

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
onExit: exit
{{- end -}}

{{/* The exit handler of every workflow ("korean-llm.exitTemplates" renders it): when the run did not succeed
(a failed step, `argo stop`, the workflow's deadline), delete the run's training jobs so none keeps holding
GPUs - a job outlives the step that waits for it, and its owner reference only removes it with the Workflow
object. Exit handlers run after `argo stop` and past the workflow's deadline (argo-workflows v4.1.2
workflow/controller/workflowpod.go ignores the deadline for them), not after `argo terminate`. Then the
Slack notification, when enabled.
The notification must never change the run's phase. argo-workflows v4.1.2 workflow/controller/operator.go
(wfOperationCtx.operate, "if main workflow succeeded, but the exit node was unsuccessful") marks a Succeeded
workflow Failed (Error) when the onExit node - the `exit` steps node here - ends Failed (Error). That node fails
only through its step group: workflow/controller/steps.go executeStepGroup fails the group for a child that
FailedOrError() unless `step.ContinuesOn(phase)`, and pkg/apis/workflow/v1alpha1/workflow_types.go `continues`
matches Failed with `continueOn.failed` and Error with `continueOn.error` only. So the `notify` step carries
both; a retryStrategy alone would not do (the retry node ends with its last child's phase). The retries cover a
lost pod (eviction, node drain). `activeDeadlineSeconds` ends a pod that never starts - a missing Secret leaves
it in CreateContainerConfigError, a bad image in ImagePullBackOff, Pending for ever, and exit handlers ignore
the workflow's deadline (workflowpod.go): the kubelet fails a pod past it once it has a status.startTime, which
it sets on admitting the pod before any container starts (kubernetes pkg/kubelet/active_deadline.go). Argo
keeps the template's value for exit-handler pods (workflowpod.go, "ignore the workflow deadline for exit
handler"). A template `timeout` would not help: with a retryStrategy, operator.go checkTemplateTimeouts sees
only the retry node, which is Running, never Pending. */}}
{{- define "korean-llm.exitTemplates" -}}
{{- $backend := include "korean-llm.trainingBackend" .root -}}
- name: exit
  steps:
    - - name: cleanup
        template: cleanup
        when: "{{ "{{workflow.status}}" }} != Succeeded"
      {{- if .root.Values.notifications.slack.enabled }}
      - name: notify
        template: notify
        continueOn:
          failed: true
          error: true
      {{- end }}
- name: cleanup
  {{- include "korean-llm.retryStrategy" (dict "root" .root "permanent" "") | nindent 2 }}
  resource:
    action: delete
    flags:
      - {{ include (printf "korean-llm.%s.resource" $backend) .root }}
      - --selector
      - {{ printf "korean-llm/workflow-uid=%s" "{{workflow.uid}}" | quote }}
      - --wait=false
{{- if .root.Values.notifications.slack.enabled }}
- {{- include "korean-llm.notifyTemplate" . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Exit handler: posts the run's result to Slack (files/notify.py; webhook from an existing Secret).
Usage: include "korean-llm.notifyTemplate" (dict "root" $ "what" "qwen7b") */}}
{{- define "korean-llm.notifyTemplate" -}}
name: notify
{{- include "korean-llm.executorPatch" . }}
{{ include "korean-llm.retryStrategy" (dict "root" .root "permanent" "") }}
{{- /* notify.py's own HTTP timeout (30 s) is far below this */}}
activeDeadlineSeconds: 300
container:
  image: {{ include "common.images.image" .root.Values.image | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: [python, -c]
  args:
    - |
      {{- .root.Files.Get "files/notify.py" | nindent 6 }}
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

{{/* podSpecPatch of a container step: the "restricted" securityContext for the `init` and `wait` containers Argo
injects beside `main`. Argo gives them the controller's `executor.securityContext` (nil unless configured; only
resource steps get a locked-down default, common.MinimalCtrSC): argo-workflows v4.1.2
workflow/controller/workflowpod.go newExecContainer. Resource steps run `main` alone and get no patch (a patch
naming `wait` would add an image-less container there). Off with podSecurity.patchArgoExecutor=false, e.g. with
the controller's initless pods (a `supervisor` container replaces init and wait). */}}
{{- define "korean-llm.executorPatch" -}}
{{- if .root.Values.podSecurity.patchArgoExecutor }}
{{- /* not read-only: Argo leaves their root filesystem writable too (workflowpod.go, "#10787") */}}
{{- $sc := include "common.security.container" (dict "readOnlyRootFilesystem" false) | fromYaml }}
podSpecPatch: {{ toJson (dict "initContainers" (list (dict "name" "init" "securityContext" $sc)) "containers" (list (dict "name" "wait" "securityContext" $sc))) | quote }}
{{- end }}
{{- end -}}
