{{/* Standard labels plus commonLabels. Usage: include "common.labels.standard" (dict "root" $ "component" "scheduler") */}}
{{- define "common.labels.standard" -}}
{{ include "common.labels.selector" . }}
app.kubernetes.io/part-of: korean-llm
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with (.root.Values.global).commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: name + instance + component only (selectors are immutable).
Usage: include "common.labels.selector" (dict "root" $ "component" "inference") */}}
{{- define "common.labels.selector" -}}
app.kubernetes.io/name: {{ include "common.names.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}
