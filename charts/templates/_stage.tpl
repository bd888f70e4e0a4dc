{{/* The stage model: which stages run, in which order, with which settings and runtime config. */}}

{{/* Stage order of the pipeline; the training stages run as jobs of the training backend, the others as
container steps. The runtime's stage list (korean_llm) names the same stages. */}}
{{- define "korean-llm.stageOrder" -}}preprocess cpt sft rlhf evaluate deploy{{- end -}}
{{- define "korean-llm.jobStages" -}}cpt sft rlhf evaluate{{- end -}}

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
{{- if not $out -}}{{- fail (printf "models[%s]: every stage is disabled" $.model.name) -}}{{- end -}}
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
stageDefaults.<stage>.config < models[].stages.<stage>.config, plus what the chart decides (stage, run). */}}
{{- define "korean-llm.stageConfig" -}}
{{- $st := include "korean-llm.stage" . | fromYaml -}}
{{- $cfg := mergeOverwrite (deepCopy (default dict .root.Values.runtimeDefaults)) (deepCopy (default dict .model.config)) (deepCopy (default dict $st.config)) -}}
{{- $run := mergeOverwrite (default dict (get $cfg "run")) (dict "model_name" .model.name "run_id" (toString .root.Values.runId) "data_root" "/data" "output_root" "/output") -}}
{{- $prev := include "korean-llm.previousModelStage" . -}}
{{- /* deploy releases what evaluate judged: it starts from the evaluate manifest when that stage runs */ -}}
{{- if and (eq .stage "deploy") (has "evaluate" (splitList " " (include "korean-llm.enabledStages" .))) -}}
{{- $prev = "evaluate" -}}
{{- end -}}
{{- if $prev -}}{{- $_ := set $run "previous_stage" $prev -}}{{- end -}}
{{- $_ := set $cfg "run" $run -}}
{{- $_ := set $cfg "stage" .stage -}}
{{- /* the datasets registry: source lists in the stage config name its entries */ -}}
{{- with .root.Values.datasets }}{{- $_ := set $cfg "datasets" (deepCopy .) -}}{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* true when a stage's pods are distributed (several GPUs or nodes): torchrun starts one process per GPU. */}}
{{- define "korean-llm.distributed" -}}
{{- if or (gt (int (default 0 .st.gpus)) 1) (gt (int (default 1 .st.nodes)) 1) -}}true{{- end -}}
{{- end -}}
