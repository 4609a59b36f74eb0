{{- define "openwebui-langfuse.tracing.name" -}}
{{- .Values.tracing.name | default (include "openwebui-langfuse.fullname" .) }}
{{- end }}

{{/*
The LangfuseTracing spec from values, as YAML: `pipelines` defaults to this chart's Pipelines.
values.schema.json carries the CRD's structure; the CRD's CEL rules are checked here, so that bad
values fail before Helm creates anything rather than half way through an install.
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
{{- if not (or .Values.operator.clusterWide (has .Release.Namespace (include "openwebui-langfuse.watchNamespaces" . | fromJsonArray))) }}
{{- fail (printf "tracing.enabled: the LangfuseTracing is created in the release namespace %q, which operator.watchNamespaces leaves out: add it there" .Release.Namespace) }}
{{- end }}
{{- include "openwebui-langfuse.tracing.validate" $spec }}
{{- toYaml $spec }}
{{- end }}

{{/*
The CRD's CEL rules, restated (same wording, with the values path).
*/}}
{{- define "openwebui-langfuse.tracing.validate" -}}
{{- $publicKey := .langfuse.publicKey | default dict }}
{{- if eq (hasKey $publicKey "value") (hasKey $publicKey "secretKeyRef") }}
{{- fail "tracing.spec.langfuse.publicKey: set exactly one of value or secretKeyRef" }}
{{- end }}
{{- $filter := .filter | default dict }}
{{- $source := $filter.source | default "bundled" }}
{{- range $field := list "url" "configMap" }}
{{- if and (eq $source $field) (not (hasKey $filter $field)) }}
{{- fail (printf "tracing.spec.filter.%s: required when tracing.spec.filter.source is %s" $field $field) }}
{{- end }}
{{- if and (ne $source $field) (hasKey $filter $field) }}
{{- fail (printf "tracing.spec.filter.%s: only allowed when tracing.spec.filter.source is %s (it is %s)" $field $field $source) }}
{{- end }}
{{- end }}
{{- if and $filter.url (not $filter.pipelineId) (not (regexMatch "/[A-Za-z_][A-Za-z0-9_]{0,62}\\.py(\\?[^#\\s]*)?$" $filter.url)) }}
{{- fail "tracing.spec.filter.pipelineId: required when the file name in tracing.spec.filter.url is not a Python module name" }}
{{- end }}
{{- range $valve := list "secret_key" "public_key" "host" "pipelines" "priority" }}
{{- if hasKey ($filter.valves | default dict) $valve }}
{{- fail (printf "tracing.spec.filter.valves: must not set %s: use tracing.spec.langfuse, tracing.spec.filter.models and tracing.spec.filter.priority" $valve) }}
{{- end }}
{{- end }}
{{- if hasKey . "openWebUI" }}
{{- $auth := .openWebUI.auth | default dict }}
{{- if eq (hasKey $auth "apiKey") (hasKey $auth "credentials") }}
{{- fail "tracing.spec.openWebUI.auth: set exactly one of apiKey or credentials" }}
{{- end }}
{{- end }}
{{- with .resyncInterval }}
{{- if regexMatch "^(0+h)?(0+m)?0*[0-9]s$" (toString .) }}
{{- fail (printf "tracing.spec.resyncInterval: must be at least 10s (it is %s)" .) }}
{{- end }}
{{- end }}
{{- end }}
