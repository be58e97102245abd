{{- define "credgate.labels" -}}
app.kubernetes.io/name: credgate
{{- end }}

{{- define "credgate.clientConfig" -}}
clientConfig:
  service:
    name: credgate
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
{{- end }}

{{- define "credgate.secretRules" -}}
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: [{{ .operations }}]
    resources: ["secrets"]
    scope: Namespaced
{{- end }}

{{- define "credgate.notSystem" -}}
- {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, kube-node-lease, {{ .Release.Namespace }}]}
{{- end }}

{{- define "credgate.common" -}}
admissionReviewVersions: ["v1"]
timeoutSeconds: {{ .root.Values.timeoutSeconds }}
failurePolicy: {{ .policy }}
matchPolicy: Equivalent
{{- end }}

{{- define "credgate.annotations" -}}
{{- if eq .Values.certMode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/credgate
{{- end }}
{{- end }}
