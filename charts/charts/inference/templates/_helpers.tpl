{{/* Folder of the served release. Usage: include "inference.modelPath" . */}}
{{- define "inference.modelPath" -}}
{{- .Values.modelPath | default (printf "/output/%s/current" (required "inference.servedModel is required when inference.enabled is true" .Values.servedModel)) -}}
{{- end -}}
