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
{{- include "korean-llm.validateDeadlines" . -}}
{{- end -}}

{{/* The stages of a model run one after the other inside the workflow's deadline: their own deadlines must fit in
it (models run in parallel, so each model is checked on its own). */}}
{{- define "korean-llm.validateDeadlines" -}}
{{- range $m := .Values.models -}}
{{- $ctx := dict "root" $ "model" $m -}}
{{- $sum := 0 -}}
{{- range $s := splitList " " (include "korean-llm.enabledStages" $ctx) -}}
{{- $st := include "korean-llm.stage" (merge (dict "stage" $s) $ctx) | fromYaml -}}
{{- $sum = add $sum (int64 $st.activeDeadlineSeconds) -}}
{{- end -}}
{{- if gt (int64 $sum) (int64 $.Values.pipeline.activeDeadlineSeconds) -}}
{{- fail (printf "pipeline.activeDeadlineSeconds (%d) is shorter than the stages of models[%s] may take one after the other (sum of their activeDeadlineSeconds: %d); raise it or lower a stage's" (int64 $.Values.pipeline.activeDeadlineSeconds) $m.name (int64 $sum)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Tracking server URIs of the runtime config (runtimeDefaults and every model's config), space separated:
the NetworkPolicy admits their ports. */}}
{{- define "korean-llm.trackingURIs" -}}
{{- $uris := list -}}
{{- with ((.Values.runtimeDefaults).tracking).mlflow_tracking_uri -}}{{- $uris = append $uris . -}}{{- end -}}
{{- range $m := .Values.models -}}
{{- with (($m.config).tracking).mlflow_tracking_uri -}}{{- $uris = append $uris . -}}{{- end -}}
{{- range $s, $st := (default dict $m.stages) -}}
{{- with ((($st).config).tracking).mlflow_tracking_uri -}}{{- $uris = append $uris . -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- range $s, $st := .Values.stageDefaults -}}
{{- with ((($st).config).tracking).mlflow_tracking_uri -}}{{- $uris = append $uris . -}}{{- end -}}
{{- end -}}
{{- join " " (uniq $uris) -}}
{{- end -}}
