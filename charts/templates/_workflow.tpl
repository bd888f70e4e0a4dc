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
{{- if .Values.notifications.slack.enabled }}
onExit: notify
{{- end }}
{{- end -}}

{{/* Exit handler: posts the run's result to Slack (files/notify.py; webhook from an existing Secret).
Usage: include "korean-llm.notifyTemplate" (dict "root" $ "what" "qwen7b") */}}
{{- define "korean-llm.notifyTemplate" -}}
name: notify
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
