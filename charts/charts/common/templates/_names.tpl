{{/* Chart name, cut to 63 characters. Usage: include "common.names.name" . */}}
{{- define "common.names.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name shared across charts: <release>-<suffix>. The umbrella and a subchart compute the
same name from the same suffix, so no chart hard-codes another's names.
Usage: include "common.names.release" (dict "root" $ "suffix" "inference") */}}
{{- define "common.names.release" -}}
{{- printf "%s-%s" .root.Release.Name .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Scheduler name of the gpu-scheduler subchart. Usage: include "common.names.scheduler" $ */}}
{{- define "common.names.scheduler" -}}
{{- include "common.names.release" (dict "root" . "suffix" "gpu-scheduler") -}}
{{- end -}}

{{/* Name of the inference Deployment (patched by the pipeline's rollout step). Usage: include "common.names.inference" $ */}}
{{- define "common.names.inference" -}}
{{- include "common.names.release" (dict "root" . "suffix" "inference") -}}
{{- end -}}

{{/* Claim of one storage volume: its existingClaim, else <release>-<suffix> (created by the storage subchart).
Usage: include "common.names.claim" (dict "root" $ "volume" .Values.storage.data "suffix" "data") */}}
{{- define "common.names.claim" -}}
{{- if .volume.existingClaim -}}
{{- .volume.existingClaim -}}
{{- else -}}
{{- include "common.names.release" (dict "root" .root "suffix" .suffix) -}}
{{- end -}}
{{- end -}}
