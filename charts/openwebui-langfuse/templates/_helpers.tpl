{{/*
Expand the name of the chart.
*/}}
{{- define "openwebui-langfuse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, truncated to leave room for component suffixes
("-pipelines", "-pre-delete"): names are limited to 63 characters.
*/}}
{{- define "openwebui-langfuse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "openwebui-langfuse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "openwebui-langfuse.labels" -}}
helm.sh/chart: {{ include "openwebui-langfuse.chart" . }}
{{ include "openwebui-langfuse.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: openwebui-langfuse
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "openwebui-langfuse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openwebui-langfuse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Per-component names and labels: pass (dict "root" $ "component" "pipelines").
*/}}
{{- define "openwebui-langfuse.componentLabels" -}}
{{ include "openwebui-langfuse.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "openwebui-langfuse.componentSelectorLabels" -}}
{{ include "openwebui-langfuse.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "openwebui-langfuse.pipelines.fullname" -}}
{{ include "openwebui-langfuse.fullname" . }}-pipelines
{{- end }}

{{- define "openwebui-langfuse.operator.fullname" -}}
{{ include "openwebui-langfuse.fullname" . }}-operator
{{- end }}

{{/*
The Lease the operator replicas elect their leader with (in the release namespace).
*/}}
{{- define "openwebui-langfuse.operator.leaseName" -}}
{{ include "openwebui-langfuse.operator.fullname" . }}-leader
{{- end }}

{{/*
Create the name of the operator's service account.
*/}}
{{- define "openwebui-langfuse.serviceAccountName" -}}
{{- default (include "openwebui-langfuse.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{/*
An image reference: a digest, when given, wins over the tag. Pass (dict "image" .Values.x.image "default" tag).
*/}}
{{- define "openwebui-langfuse.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .default }}
{{- end -}}
{{- end }}

{{- define "openwebui-langfuse.operator.image" -}}
{{ include "openwebui-langfuse.image" (dict "image" .Values.operator.image "default" .Chart.AppVersion) }}
{{- end }}

{{/*
Namespaces the operator serves (a list, as JSON, for fromJsonArray): the release namespace by default.
*/}}
{{- define "openwebui-langfuse.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- .Values.operator.watchNamespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
"true" when `lookup` sees the cluster (helm install/upgrade, --dry-run=server), "" under
helm template, lint and --dry-run=client. Every namespace has the "default" ServiceAccount, and
a user who may install into the namespace may read it.
*/}}
{{- define "openwebui-langfuse.clusterVisible" -}}
{{- if lookup "v1" "ServiceAccount" .Release.Namespace "default" }}true{{ end }}
{{- end }}

{{/*
The upstream default Pipelines key, which every Pipelines user knows.
*/}}
{{- define "openwebui-langfuse.pipelines.wellKnownKey" -}}
0p3n-w3bu!
{{- end }}

{{- define "openwebui-langfuse.pipelines.apiKeySecretName" -}}
{{- .Values.pipelines.apiKey.existingSecret | default (printf "%s-api-key" (include "openwebui-langfuse.pipelines.fullname" .)) }}
{{- end }}

{{/*
"true" when the operator creates the Pipelines key Secret (neither `existingSecret` nor
`value`): a random key made once where it is kept, never in a template, so every render of
the chart is byte-identical (Argo CD and Flux render with `helm template`).
*/}}
{{- define "openwebui-langfuse.pipelines.operatorMakesKey" -}}
{{- if and .Values.pipelines.enabled (not .Values.pipelines.apiKey.existingSecret) (not .Values.pipelines.apiKey.value) }}true{{ end }}
{{- end }}

{{/*
Fail early on Pipelines key settings that would leave Pipelines open or broken.
*/}}
{{- define "openwebui-langfuse.pipelines.validateApiKey" -}}
{{- $wellKnown := include "openwebui-langfuse.pipelines.wellKnownKey" . }}
{{- if and .Values.pipelines.apiKey.existingSecret .Values.pipelines.apiKey.value }}
{{- fail "pipelines.apiKey: set either existingSecret or value, not both" }}
{{- end }}
{{- if eq .Values.pipelines.apiKey.value $wellKnown }}
{{- fail "pipelines.apiKey.value: refusing the well-known upstream default key 0p3n-w3bu!; leave it empty to generate a key, or use pipelines.apiKey.existingSecret" }}
{{- end }}
{{- with .Values.pipelines.apiKey.existingSecret }}
{{- if include "openwebui-langfuse.clusterVisible" $ }}
{{- $secret := lookup "v1" "Secret" $.Release.Namespace . }}
{{- if not $secret }}
{{- fail (printf "pipelines.apiKey.existingSecret: Secret %q not found in namespace %q; create it first (key %q) or leave existingSecret empty to generate a key" . $.Release.Namespace $.Values.pipelines.apiKey.secretKey) }}
{{- end }}
{{- $data := $secret.data | default dict }}
{{- if not (hasKey $data $.Values.pipelines.apiKey.secretKey) }}
{{- fail (printf "pipelines.apiKey.existingSecret: Secret %q has no key %q (set pipelines.apiKey.secretKey)" . $.Values.pipelines.apiKey.secretKey) }}
{{- end }}
{{- if eq (index $data $.Values.pipelines.apiKey.secretKey | b64dec) $wellKnown }}
{{- fail (printf "pipelines.apiKey.existingSecret: Secret %q holds the well-known upstream default key 0p3n-w3bu!; put a random key in it" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels of the Open WebUI pods, as YAML (matchLabels). values.yaml leaves the selector empty so
that a user's map replaces the default instead of being merged into it; empty never reaches a
policy (it would admit every pod to Pipelines, whose valves routes return the Langfuse secret key
without authentication): it means the official open-webui chart's component label.
*/}}
{{- define "openwebui-langfuse.openWebUI.podSelector" -}}
{{- $selector := .Values.pipelines.networkPolicy.openWebUI.podSelector }}
{{- if empty $selector }}
{{- $selector = dict "app.kubernetes.io/component" "open-webui" }}
{{- end }}
{{- toYaml $selector }}
{{- end }}

{{/*
Names of pods in the release namespace matched by the Open WebUI selector, as a JSON list;
"" when lookup cannot see the cluster or Open WebUI runs in other namespaces.
*/}}
{{- define "openwebui-langfuse.pipelines.openWebUIPodsFound" -}}
{{- $np := .Values.pipelines.networkPolicy }}
{{- if and (include "openwebui-langfuse.clusterVisible" .) (empty $np.openWebUI.namespaceSelector) }}
{{- $found := list }}
{{- range (lookup "v1" "Pod" .Release.Namespace "").items | default list }}
{{- $labels := .metadata.labels | default dict }}
{{- $match := true }}
{{- range $k, $v := include "openwebui-langfuse.openWebUI.podSelector" $ | fromYaml }}
{{- if ne (get $labels $k) $v }}{{ $match = false }}{{ end }}
{{- end }}
{{- if $match }}{{ $found = append $found .metadata.name }}{{ end }}
{{- end }}
{{- $found | toJson }}
{{- end }}
{{- end }}
