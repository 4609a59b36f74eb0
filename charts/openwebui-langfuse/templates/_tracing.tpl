{{- define "openwebui-langfuse.tracing.name" -}}
{{- .Values.tracing.name | default (include "openwebui-langfuse.fullname" .) }}
{{- end }}

{{/*
The LangfuseTracing spec from values, as YAML: with target pipelines (the default), `pipelines`
defaults to this chart's Pipelines; with target function the filter runs inside Open WebUI and
nothing is filled in.
values.schema.json carries the CRD's structure; the CRD's CEL rules are checked here, so that bad
values fail before Helm creates anything rather than half way through an install.
*/}}
{{- define "openwebui-langfuse.tracing.spec" -}}
{{- $spec := deepCopy .Values.tracing.spec }}
{{- if not $spec.langfuse }}
{{- fail "tracing.spec.langfuse: required when tracing.enabled is true (host, publicKey, secretKey)" }}
{{- end }}
{{- if and (eq ($spec.target | default "pipelines") "pipelines") (not $spec.pipelines) }}
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
{{- $target := .target | default "pipelines" }}
{{- $filter := .filter | default dict }}
{{- $source := $filter.source | default "bundled" }}
{{- if eq $target "function" }}
{{- if hasKey . "pipelines" }}
{{- fail "tracing.spec.pipelines: not allowed when tracing.spec.target is function: the filter runs inside Open WebUI" }}
{{- end }}
{{- if not .openWebUI }}
{{- fail "tracing.spec.openWebUI: required when tracing.spec.target is function: the filter is installed into that Open WebUI (url and auth)" }}
{{- end }}
{{- if hasKey .openWebUI "connectionUrl" }}
{{- fail "tracing.spec.openWebUI.connectionUrl: not allowed when tracing.spec.target is function: there is no connection" }}
{{- end }}
{{- if hasKey $filter "pipelineId" }}
{{- fail "tracing.spec.filter.pipelineId: not allowed when tracing.spec.target is function: use tracing.spec.filter.functionId" }}
{{- end }}
{{- else if hasKey $filter "functionId" }}
{{- fail (printf "tracing.spec.filter.functionId: only allowed when tracing.spec.target is function (it is %s)" $target) }}
{{- end }}
{{- range $field := list "url" "configMap" }}
{{- if and (eq $source $field) (not (hasKey $filter $field)) }}
{{- fail (printf "tracing.spec.filter.%s: required when tracing.spec.filter.source is %s" $field $field) }}
{{- end }}
{{- if and (ne $source $field) (hasKey $filter $field) }}
{{- fail (printf "tracing.spec.filter.%s: only allowed when tracing.spec.filter.source is %s (it is %s)" $field $field $source) }}
{{- end }}
{{- end }}
{{- /* Only Pipelines takes the file name as the id; for a function the operator downloads the file. */}}
{{- if and (eq $target "pipelines") $filter.url (not $filter.pipelineId) (not (regexMatch "/[A-Za-z_][A-Za-z0-9_]{0,62}\\.py(\\?[^#\\s]*)?$" $filter.url)) }}
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
