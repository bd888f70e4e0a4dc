{{/* Names and labels of the umbrella chart. The other partials, by concern:
  _stage.tpl        the stage model: stage order, settings per model and stage, runtime config files
  _pod.tpl          a stage's pod: container, env, volumes, scheduling, the pod template both job backends embed
  _pytorchjob.tpl   the PyTorchJob backend of training steps (Kubeflow training-operator v1)
  _steps.tpl        Argo templates: the training (resource) step for any job kind, container steps, rollout
  _workflow.tpl     settings every Workflow shares, the exit handler (notification, cleanup)
  _validations.tpl  cross-key checks of the values that the JSON schema cannot express */}}

{{/* Name of a model's objects: <release>-<model>. Usage: include "korean-llm.modelName" (dict "root" $ "model" $m) */}}
{{- define "korean-llm.modelName" -}}
{{- include "common.names.release" (dict "root" .root "suffix" .model.name) -}}
{{- end -}}

{{/* Labels of a model's objects. Usage: include "korean-llm.labels" (dict "root" $ "model" $m "component" "pipeline") */}}
{{- define "korean-llm.labels" -}}
{{ include "common.labels.standard" . }}
korean-llm/model: {{ .model.name }}
{{- end -}}

{{/* Labels every pod of the pipeline carries (NetworkPolicy and PodMonitor select on them).
Usage: include "korean-llm.podLabels" (dict "root" $ "model" $m "component" "cpt") */}}
{{- define "korean-llm.podLabels" -}}
{{ include "common.labels.selector" . }}
app.kubernetes.io/part-of: korean-llm
korean-llm/model: {{ .model.name }}
{{- end -}}

{{/* Names of all models, space separated. */}}
{{- define "korean-llm.modelNames" -}}
{{- $names := list -}}
{{- range .Values.models -}}{{- $names = append $names .name -}}{{- end -}}
{{- join " " $names -}}
{{- end -}}

{{/* ServiceAccount of the workflows. */}}
{{- define "korean-llm.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "common.names.release" (dict "root" . "suffix" "workflow")) -}}
{{- end -}}

{{/* The Argo parameter holding the run id, written literally into the rendered templates. */}}
{{- define "korean-llm.runParam" -}}{{ "{{workflow.parameters.run-id}}" }}{{- end -}}
