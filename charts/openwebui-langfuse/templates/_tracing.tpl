{{- define "openwebui-langfuse.tracing.name" -}}
{{- .Values.tracing.name | default (include "openwebui-langfuse.fullname" .) }}
{{- end }}

{{/*
The LangfuseTracing spec from values, as YAML: `pipelines` defaults to this chart's Pipelines.
The cross-field rules of the CRD's CEL validations are checked here too, so that bad values fail
before Helm creates anything rather than half way through an install.
*/}}
{{- define "openwebui-langfuse.tracing.spec" -}}
{{- $spec := deepCopy .Values.tracing.spec }}
{{- if not $spec.langfuse }}
{{- fail "tracing.spec.langfuse: required when tracing.enabled is true (host, publicKey, secretKey)" }}
{{- end }}
{{- if not $spec.pipelines }}
{{- if not .Values.pipelines.enabled }}
{{- fail "tracing.spec.pipelines: required when pipelines.enabled is false (url and apiKey of your Pipelines)" }}
{{- end }}
{{- $url := printf "http://%s.%s.svc:%v" (include "openwebui-langfuse.pipelines.fullname" .) .Release.Namespace .Values.pipelines.service.port }}
{{- $ref := dict "name" (include "openwebui-langfuse.pipelines.apiKeySecretName" .) "key" .Values.pipelines.apiKey.secretKey }}
{{- $_ := set $spec "pipelines" (dict "url" $url "apiKey" (dict "secretKeyRef" $ref)) }}
{{- end }}
{{- with $spec.langfuse.publicKey }}
{{- if eq (hasKey . "value") (hasKey . "secretKeyRef") }}
{{- fail "tracing.spec.langfuse.publicKey: set exactly one of value or secretKeyRef" }}
{{- end }}
{{- end }}
{{- with $spec.filter }}
{{- $filter := . }}
{{- $source := .source | default "bundled" }}
{{- range $field := list "url" "configMap" }}
{{- if and (eq $source $field) (not (hasKey $filter $field)) }}
{{- fail (printf "tracing.spec.filter.%s: required when tracing.spec.filter.source is %s" $field $field) }}
{{- end }}
{{- if and (ne $source $field) (hasKey $filter $field) }}
{{- fail (printf "tracing.spec.filter.%s: only allowed when tracing.spec.filter.source is %s (it is %s)" $field $field $source) }}
{{- end }}
{{- end }}
{{- end }}
{{- with $spec.openWebUI }}
{{- with .auth }}
{{- if eq (hasKey . "apiKey") (hasKey . "credentials") }}
{{- fail "tracing.spec.openWebUI.auth: set exactly one of apiKey or credentials" }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $spec }}
{{- end }}
