{{/* "repository:tag" of an image block; the schemas reject empty and `latest` tags.
Usage: include "common.images.image" .Values.image */}}
{{- define "common.images.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
