{{/* Chart name, cut to 63 characters. Usage: include "korean-llm.name" . */}}
{{- define "korean-llm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a model's objects: <release>-<model>. Usage: include "korean-llm.modelName" (dict "root" $ "model" $m) */}}
{{- define "korean-llm.modelName" -}}
{{- printf "%s-%s" .root.Release.Name .model.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of a model's objects. Usage: include "korean-llm.labels" (dict "root" $ "model" $m "component" "pipeline") */}}
{{- define "korean-llm.labels" -}}
app.kubernetes.io/name: {{ include "korean-llm.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: korean-llm
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
korean-llm/model: {{ .model.name }}
{{- end -}}

{{/* Stage order of the pipeline. */}}
{{- define "korean-llm.stageOrder" -}}preprocess cpt sft rlhf evaluate deploy{{- end -}}

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
stage config, plus what the chart decides (stage, run). */}}
{{- define "korean-llm.stageConfig" -}}
{{- $st := include "korean-llm.stage" . | fromYaml -}}
{{- $cfg := mergeOverwrite (deepCopy (default dict .root.Values.runtimeDefaults)) (deepCopy (default dict .model.config)) (deepCopy (default dict $st.config)) -}}
{{- $run := mergeOverwrite (default dict (get $cfg "run")) (dict "model_name" .model.name "run_id" (toString .root.Values.runId) "data_root" "/data" "output_root" "/output") -}}
{{- $prev := include "korean-llm.previousModelStage" . -}}
{{- if $prev -}}{{- $_ := set $run "previous_stage" $prev -}}{{- end -}}
{{- $_ := set $cfg "run" $run -}}
{{- $_ := set $cfg "stage" .stage -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Container command of a stage; the run id comes from the workflow parameter so `argo submit --from` can start new runs. */}}
{{- define "korean-llm.stageCommand" -}}
- python
- -m
- korean_llm
- {{ .stage }}
- --config
- {{ printf "%s/%s.yaml" .root.Values.configMountPath .stage }}
- --set
- run.run_id={{ "{{workflow.parameters.run-id}}" }}
{{- end -}}
