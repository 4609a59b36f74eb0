{{/*
Policy-scanner exceptions (checkov, kube-score) of the chart's workloads: what the chart keeps on
purpose, each with its one reason. Every exception is the scanner's own annotation on the object
(checkov: `checkov.io/skipN: CHECK=reason`; kube-score: `kube-score/ignore: check,...`, which has
no room for a reason) and a row of the chart README's "Policy scanners" table with the same
reason; tests/chart/test_policy_scanners.py checks both and fails on anything unexplained.
Reasons must not contain "=" (checkov splits on it).
*/}}
{{- define "openwebui-langfuse.policy.exceptions" -}}
{{- $noCPULimit := "no CPU limit: throttling a reconciler or a server on the chat path hurts more than it protects (CPU and memory requests and memory limits are set)" }}
{{- $pullPolicy := "imagePullPolicy IfNotPresent: images are pinned (a fixed tag, and a digest in the released chart), so Always only makes every pod start depend on the registry; set image.pullPolicy to Always to re-check registry credentials on every start" }}
{{- $digest := "no digest in a render of the source tree: digests come from the release (ci/release sets image.digest in the packaged chart), and a digest given in values is used" }}
{{- $apiToken := "the pod calls the Kubernetes API with its ServiceAccount token (namespaced RBAC: the operator's, which the helm test Job shares, reads every Secret of the namespaces it serves; the pre-delete hook's only LangfuseTracings; Pipelines mounts none)" }}
{{- dict
  "cpu-limit" (dict "checkov" "CKV_K8S_11" "kubeScore" "container-resources" "reason" $noCPULimit)
  "pull-policy" (dict "kubeScore" "container-image-pull-policy" "reason" $pullPolicy)
  "pull-policy-by-tag" (dict "checkov" "CKV_K8S_15" "reason" $pullPolicy)
  "digest" (dict "checkov" "CKV_K8S_43" "reason" $digest)
  "api-token" (dict "checkov" "CKV_K8S_38" "reason" $apiToken)
  "pipelines-key-env" (dict "checkov" "CKV_K8S_35" "reason" "PIPELINES_API_KEY as an environment variable from a Secret: the only way Pipelines reads its key")
  "smoke-key-env" (dict "checkov" "CKV_K8S_35" "reason" "the helm test command reads the Open WebUI API key from its environment, from a Secret; a short-lived Job that never prints it")
  "pipelines-probes" (dict "kubeScore" "pod-probes-identical" "reason" "Pipelines has one status route (GET /); liveness waits a minute, readiness 30 s, and the single replica has no peer to take over anyway")
  "pipelines-recreate" (dict "kubeScore" "deployment-strategy" "reason" "Recreate: never two Pipelines servers on one filter directory")
  "pipelines-one-replica" (dict "kubeScore" "deployment-replicas" "reason" "one replica: Pipelines keeps filters and valves in process memory, a second replica would diverge")
  | toJson }}
{{- end }}

{{/*
The annotations of one workload's exceptions. Pass (dict "exceptions" (list "cpu-limit" ...)
"image" .Values.<component>.image): the image decides the digest and pull-policy exceptions,
which apply only while they hold: checkov accepts IfNotPresent for an image pinned by digest,
kube-score does not.
*/}}
{{- define "openwebui-langfuse.policy.annotations" -}}
{{- $all := include "openwebui-langfuse.policy.exceptions" . | fromJson }}
{{- $names := .exceptions }}
{{- if not .image.digest }}{{ $names = append $names "digest" }}{{ end }}
{{- if ne .image.pullPolicy "Always" }}
{{- $names = append $names "pull-policy" }}
{{- if not .image.digest }}{{ $names = append $names "pull-policy-by-tag" }}{{ end }}
{{- end }}
{{- $kubeScore := list }}
{{- $n := 0 }}
{{- range $names }}
{{- $e := get $all . }}
{{- if not $e }}{{ fail (printf "policy exception %q is not defined in _policy.tpl" .) }}{{ end }}
{{- with $e.checkov }}
{{- $n = add1 $n }}
checkov.io/skip{{ $n }}: {{ printf "%s=%s" . $e.reason | quote }}
{{- end }}
{{- with $e.kubeScore }}{{ $kubeScore = append $kubeScore . }}{{ end }}
{{- end }}
{{- with $kubeScore }}
kube-score/ignore: {{ join "," . | quote }}
{{- end }}
{{- end }}
