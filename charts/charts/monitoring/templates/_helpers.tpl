{{/* "true" when the prometheus-operator API can be used. Usage: include "monitoring.operator" . */}}
{{- define "monitoring.operator" -}}
{{- if or .Values.prometheusOperator.force (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}true{{- end -}}
{{- end -}}

{{/* Labels of operator objects: standard + the `release` label kube-prometheus-stack selects on. */}}
{{- define "monitoring.labels" -}}
{{ include "common.labels.standard" . }}
release: {{ .root.Values.prometheusOperator.release }}
{{- end -}}
