{{/* Argo templates of one stage: the training step (an Argo resource step around the job of the training
backend), the container step (preprocess, deploy) and the rollout patch. */}}

{{/* The job backend of the training stages: pytorchjob (Kubeflow training-operator v1). A backend is a pair of
helpers korean-llm.<backend>.manifest and korean-llm.<backend>.conditions (see _pytorchjob.tpl). */}}
{{- define "korean-llm.trainingBackend" -}}
{{- ((.Values.training).backend) | default "pytorchjob" -}}
{{- end -}}

{{/* The Argo resource step of a training stage, for any job backend: deadline, conditions, manifest.
Usage: include "korean-llm.trainingStep" (merge (dict "backend" "pytorchjob") $stageContext) */}}
{{- define "korean-llm.trainingStep" -}}
{{- $conditions := include (printf "korean-llm.%s.conditions" .backend) . | fromYaml -}}
# The step's own deadline is the backstop should the job never finish.
activeDeadlineSeconds: {{ add .st.activeDeadlineSeconds .root.Values.pipeline.resourceGraceSeconds | int64 }}
resource:
  action: create
  setOwnerReference: true
  successCondition: {{ $conditions.successCondition }}
  failureCondition: {{ $conditions.failureCondition }}
  manifest: |
    {{- include (printf "korean-llm.%s.manifest" .backend) . | nindent 4 }}
{{- end -}}

{{/* An Argo container step (preprocess, deploy): the stage container as the step's main container. */}}
{{- define "korean-llm.containerStep" -}}
activeDeadlineSeconds: {{ .st.activeDeadlineSeconds | int64 }}
{{- with include "korean-llm.stageScheduling" . }}
{{ . }}
{{- end }}
container:
  {{- include "korean-llm.stageContainer" . | nindent 2 }}
volumes:
  {{- include "korean-llm.stageVolumes" . | nindent 2 }}
{{- if eq .stage "deploy" }}
outputs:
  parameters:
    - name: version
      valueFrom:
        path: /tmp/korean-llm/version
{{- end }}
{{- end -}}

{{/* The rollout step: bumps the pod-template annotation so the inference Deployment rolls to the new release. */}}
{{- define "korean-llm.rolloutStep" -}}
name: rollout
inputs:
  parameters:
    - name: version
resource:
  action: patch
  mergeStrategy: merge
  manifest: |
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: {{ include "common.names.inference" . }}
    spec:
      template:
        metadata:
          annotations:
            korean-llm/model-version: "{{ "{{inputs.parameters.version}}" }}"
{{- end -}}
