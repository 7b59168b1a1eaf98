{{/*
Names, labels and the small computed values every template shares.
*/}}

{{- define "portolan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name, plus the chart name unless the release name holds it. */}}
{{- define "portolan.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of cluster-scoped objects: the full name and the release namespace, so two
releases in two namespaces do not collide. */}}
{{- define "portolan.clusterName" -}}
{{- printf "%s-%s" (include "portolan.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "portolan.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portolan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portolan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "portolan.labels" -}}
helm.sh/chart: {{ include "portolan.chart" . }}
{{ include "portolan.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: portolan
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "portolan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portolan.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "portolan.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The ValidatingWebhookConfiguration (cluster-scoped). */}}
{{- define "portolan.webhookConfigurationName" -}}
{{- include "portolan.clusterName" . }}
{{- end }}

{{- define "portolan.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "portolan.fullname" .)) .Values.webhook.secretName }}
{{- end }}

{{- define "portolan.caSecretName" -}}
{{- default (printf "%s-mesh-ca" (include "portolan.fullname" .)) .Values.identity.ca.secretName }}
{{- end }}

{{- define "portolan.webhookSelfSigned" -}}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate "selfSigned") }}true{{ end }}
{{- end }}

{{- define "portolan.webhookCertManager" -}}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate "certManager") }}true{{ end }}
{{- end }}

{{/* The Service's DNS name, as proxies and the API server reach it. */}}
{{- define "portolan.serviceHost" -}}
{{- printf "%s.%s.svc" (include "portolan.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Rules for the watched objects: one ClusterRole, or one Role per watched namespace. */}}
{{- define "portolan.watchRules" -}}
# Exactly what Portolan calls: watchers list and watch; the status writer server-side applies
# (a PATCH) on /status.
- apiGroups: [""]
  resources: [services, secrets, configmaps, serviceaccounts]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [portolan.dev]
  resources:
    - trafficroutes
    - trafficpolicies
    - gateways
    - externalservices
    - peerauthentications
    - accesspolicies
    - proxyscopes
    - extauthpolicies
    - ratelimitpolicies
    - requestauthentications
    - envoypatchpolicies
  verbs: [list, watch]
- apiGroups: [portolan.dev]
  resources:
    - trafficroutes/status
    - trafficpolicies/status
    - gateways/status
    - externalservices/status
    - peerauthentications/status
    - accesspolicies/status
    - proxyscopes/status
    - extauthpolicies/status
    - ratelimitpolicies/status
    - requestauthentications/status
    - envoypatchpolicies/status
  verbs: [patch]
# The Gateway API (its CRDs may be missing: those kinds then count as empty).
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways, listenersets, httproutes, grpcroutes, tlsroutes, tcproutes, udproutes, referencegrants, backendtlspolicies]
  verbs: [list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways/status, listenersets/status, httproutes/status, grpcroutes/status, tlsroutes/status, tcproutes/status, udproutes/status, backendtlspolicies/status]
  verbs: [patch]
{{- if .Values.gatewayAPI.provisioning.enabled }}
# Provisioned Gateway proxies (server-side apply creates or patches; get reads the Service's
# load balancer address).
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, create, patch]
{{- if .Values.identity.tokenReview.enabled }}
# With token review, each Gateway's proxies run as a ServiceAccount of their own
# (portolan-gateway-NAME), whose token may ask for that Gateway's configuration only.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch]
{{- end }}
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch]
{{- end }}
{{- end }}

{{- define "portolan.clusterScopedRules" -}}
# Cluster-scoped kinds, read whatever namespaces are watched: GatewayClasses (and their
# status) and Namespaces (labels for allowedRoutes namespace selectors).
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses]
  verbs: [list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* The sidecar injector's MutatingWebhookConfiguration (cluster-scoped, like the validating one). */}}
{{- define "portolan.injectConfigurationName" -}}
{{- printf "%s-inject" (include "portolan.clusterName" .) }}
{{- end }}

{{- define "portolan.injection" -}}
{{- if and .Values.webhook.enabled .Values.injection.enabled }}true{{ end }}
{{- end }}

{{/* A ResourceRequirements as `requests.cpu=50m,limits.memory=256Mi` (--inject-*-resources). */}}
{{- define "portolan.resourceFlag" -}}
{{- $items := list }}
{{- range $kind, $quantities := . }}
{{- range $name, $quantity := $quantities }}
{{- $items = append $items (printf "%s.%s=%v" $kind $name $quantity) }}
{{- end }}
{{- end }}
{{- join "," $items }}
{{- end }}

{{- define "portolan.initImage" -}}
{{- default (printf "%s-init:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag)) .Values.injection.initImage }}
{{- end }}
