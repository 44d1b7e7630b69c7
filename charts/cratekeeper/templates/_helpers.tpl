{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "cratekeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cratekeeper.fullname" -}}
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

{{- define "cratekeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cratekeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cratekeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cratekeeper.labels" -}}
helm.sh/chart: {{ include "cratekeeper.chart" . }}
{{ include "cratekeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: cratekeeper
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cratekeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cratekeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "cratekeeper.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces a namespace-scoped operator watches: the list, or the release namespace. */}}
{{- define "cratekeeper.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- join "," (uniq .Values.watchNamespaces) }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Secret names the Jobs pull their images with, comma-separated. */}}
{{- define "cratekeeper.jobPullSecrets" -}}
{{- $names := list }}
{{- range .Values.execution.imagePullSecrets }}
{{- $names = append $names .name }}
{{- end }}
{{- join "," $names }}
{{- end }}

{{/* Non-empty when a private CA bundle is configured (a ConfigMap or a Secret, not both). */}}
{{- define "cratekeeper.caSource" -}}
{{- if and .Values.caBundle.configMap .Values.caBundle.secret }}
{{- fail "caBundle: set configMap or secret, not both" }}
{{- end }}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}yes{{ end }}
{{- end }}

{{/* Leader election: asked for, or implied by more than one replica (non-empty: on). */}}
{{- define "cratekeeper.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}on{{ end }}
{{- end }}

{{/* The name of one instance's Deployment, Service and Lease: (list root shard); "" is main. */}}
{{- define "cratekeeper.instanceName" -}}
{{- $root := index . 0 }}
{{- $shard := index . 1 }}
{{- if $shard }}
{{- printf "%s-%s" (include "cratekeeper.fullname" $root) $shard | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "cratekeeper.fullname" $root }}
{{- end }}
{{- end }}

{{/* The pod label that tells instances apart once there are shards: (list root shard). */}}
{{- define "cratekeeper.shardLabel" -}}
{{- $root := index . 0 }}
{{- $shard := index . 1 }}
{{- if $root.Values.shards }}
cratekeeper.dev/shard: {{ default "main" $shard }}
{{- end }}
{{- end }}

{{/* The label selector of one instance: its shard's Workspaces, or (main) the unlabelled. */}}
{{- define "cratekeeper.shardSelector" -}}
{{- if . }}sharding.fluxcd.io/key in ({{ . }}){{ else }}!sharding.fluxcd.io/key{{ end }}
{{- end }}
