{{/* The stage model: which stages run, in which order, with which settings and runtime config. */}}

{{/* Stage order of the pipeline; the training stages run as jobs of the training backend, the others as
container steps. The runtime's stage list (korean_llm) names the same stages. */}}
{{- define "korean-llm.stageOrder" -}}preprocess vocab cpt sft rlhf evaluate deploy{{- end -}}
{{- define "korean-llm.jobStages" -}}cpt sft rlhf evaluate{{- end -}}

{{/* A model's settings for one stage: stageDefaults.<stage> overlaid with models[].stages.<stage>, as YAML.
Usage: include "korean-llm.stage" (dict "root" $ "model" $m "stage" "cpt") | fromYaml */}}
{{- define "korean-llm.stage" -}}
{{- $defaults := deepCopy (default dict (index .root.Values.stageDefaults .stage)) -}}
{{- $own := deepCopy (default dict (index (default dict .model.stages) .stage)) -}}
{{- $st := mergeOverwrite $defaults $own -}}
{{- if and (eq .stage "deploy") (not (hasKey $own "memory")) -}}
{{- with include "korean-llm.deployMemory" (dict "root" .root "model" .model "st" $st) -}}{{- $_ := set $st "memory" . -}}{{- end -}}
{{- end -}}
{{- toYaml $st -}}
{{- end -}}

{{/* Memory of the deploy step, from the model size and deploy.merge_dtype: the runtime's deploy holds one copy
of the weights in the merge type (float32: 4 bytes per parameter; the 16-bit release type: 2), casts it in place
and checks the saved files tensor by tensor (runtime/korean_llm/stages/deploy.py, merge_into), plus 15% for the
process and the tokenizer. Parameter counts of the Qwen2.5 base models that model.size names. "" when the size
is unknown (a custom base_model): stageDefaults.deploy.memory applies. A model's own stages.deploy.memory wins.
Usage: include "korean-llm.deployMemory" (dict "root" $ "model" $m "st" $deployStage) */}}
{{- define "korean-llm.deployMemory" -}}
{{- $size := ((.model.config).model).size | default ((.root.Values.runtimeDefaults).model).size | default "" | toString -}}
{{- $base := ((.model.config).model).base_model | default "" -}}
{{- $params := dict "0.5b" 0.49 "1.5b" 1.54 "3b" 3.09 "7b" 7.62 "14b" 14.8 "32b" 32.8 "72b" 72.7 -}}
{{- if and $size (hasKey $params $size) (not $base) -}}
{{- $deploy := mergeOverwrite (deepCopy (default dict ((.root.Values.runtimeDefaults).deploy))) (deepCopy (default dict ((.model.config).deploy))) (deepCopy (default dict ((.st.config).deploy))) -}}
{{- $bytes := ternary 4 2 (eq (toString ($deploy.merge_dtype | default "float32")) "float32") -}}
{{- $gib := ceil (divf (mulf (index $params $size) 1e9 $bytes 1.15) 1073741824) -}}
{{- $floor := 16 -}}
{{- printf "%dGi" (int (max $gib $floor)) -}}
{{- end -}}
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

{{/* The last enabled model-producing stage (vocab, cpt, sft, rlhf) before .stage, or "" (start from the base model). */}}
{{- define "korean-llm.previousModelStage" -}}
{{- $prev := "" -}}
{{- $done := false -}}
{{- range $s := splitList " " (include "korean-llm.enabledStages" .) -}}
{{- if eq $s $.stage -}}{{- $done = true -}}{{- end -}}
{{- if and (not $done) (has $s (list "vocab" "cpt" "sft" "rlhf")) -}}{{- $prev = $s -}}{{- end -}}
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
