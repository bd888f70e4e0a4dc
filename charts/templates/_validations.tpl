{{/* Cross-key checks of the values that values.schema.json cannot express. Rendered once, from
workflowtemplate.yaml; each failure names the key, what was expected and what was found. */}}
{{- define "korean-llm.validate" -}}
{{- $models := splitList " " (include "korean-llm.modelNames" .) -}}
{{- if and .Values.inference.enabled (not (has .Values.inference.servedModel $models)) -}}
{{- fail (printf "inference.servedModel '%s' is not one of models[].name (%s)" .Values.inference.servedModel (join ", " $models)) -}}
{{- end -}}
{{- if and .Values.inference.enabled (ne (include "korean-llm.claim" (dict "root" . "key" "output" "suffix" "output")) (include "common.names.claim" (dict "root" . "volume" (dict "existingClaim" .Values.inference.outputClaim) "suffix" "output"))) -}}
{{- fail "inference.outputClaim must name the same claim as storage.output.existingClaim (the server reads the releases the pipeline writes)" -}}
{{- end -}}
{{- end -}}
