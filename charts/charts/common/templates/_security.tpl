{{/* Pod security context meeting the Pod Security Standard "restricted" profile.
Usage: include "common.security.pod" (dict "runAsUser" 10001) */}}
{{- define "common.security.pod" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser | default 10001 }}
runAsGroup: {{ .runAsUser | default 10001 }}
fsGroup: {{ .runAsUser | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context ("restricted"): no privilege escalation, no capabilities, read-only root unless
the process must write there. Usage: include "common.security.container" (dict "readOnlyRootFilesystem" true) */}}
{{- define "common.security.container" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ ternary "true" "false" (ne .readOnlyRootFilesystem false) }}
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
