{{/*
Egress rules shared by the NetworkPolicies of the chart's pods, each a YAML list of
NetworkPolicyEgressRule objects (include them under `egress:` with nindent). A rule is left out
when it has no destination: an egress rule without `to` would allow every destination.
*/}}

{{/* The cluster DNS, UDP and TCP: every pod resolves names. */}}
{{- define "openwebui-langfuse.egress.dns" -}}
{{- $dns := .Values.networkPolicy.egress.dns }}
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml $dns.namespaceSelector | nindent 10 }}
      podSelector:
        matchLabels:
          {{- toYaml $dns.podSelector | nindent 10 }}
  ports:
    - port: {{ $dns.port }}
      protocol: UDP
    - port: {{ $dns.port }}
      protocol: TCP
{{- end }}

{{/* The Kubernetes API server's endpoints (policies see them, not the Service's ClusterIP). */}}
{{- define "openwebui-langfuse.egress.kubernetesAPI" -}}
{{- $api := .Values.networkPolicy.egress.kubernetesAPI }}
{{- if $api.cidrs }}
- to:
    {{- range $api.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range $api.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/* Langfuse: the operator's credential checks and the filter's traces. */}}
{{- define "openwebui-langfuse.egress.langfuse" -}}
{{- $lf := .Values.networkPolicy.egress.langfuse }}
{{- if or $lf.cidrs $lf.peers }}
- to:
    {{- range $lf.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
    {{- with $lf.peers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- range $lf.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/* Open WebUI's pods, found by the same selectors as Pipelines' ingress policy. */}}
{{- define "openwebui-langfuse.egress.openWebUI" -}}
{{- $owui := .Values.pipelines.networkPolicy.openWebUI }}
- to:
    - podSelector:
        matchLabels:
          {{- include "openwebui-langfuse.openWebUI.podSelector" . | nindent 10 }}
      {{- with $owui.namespaceSelector }}
      namespaceSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
      {{- end }}
  ports:
    - port: {{ .Values.networkPolicy.egress.openWebUI.port }}
      protocol: TCP
{{- end }}

{{/* This chart's Pipelines pod, on its container port. */}}
{{- define "openwebui-langfuse.egress.pipelines" -}}
{{- if .Values.pipelines.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "openwebui-langfuse.componentSelectorLabels" (dict "root" . "component" "pipelines") | nindent 10 }}
  ports:
    - port: 9099
      protocol: TCP
{{- end }}
{{- end }}

{{/* The pods of the hook Jobs (pre-delete, helm test), as a LabelSelector. */}}
{{- define "openwebui-langfuse.hooks.podSelector" -}}
matchLabels:
  {{- include "openwebui-langfuse.selectorLabels" . | nindent 2 }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [pre-delete, smoke-test]
{{- end }}

