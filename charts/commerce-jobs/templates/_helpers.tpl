{{- define "commerce-jobs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "commerce-jobs.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "commerce-jobs.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "commerce-jobs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "commerce-jobs.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator's configuration file: only the settings that have a value. */}}
{{- define "commerce-jobs.config" -}}
jobDefaults:
{{- range $key, $value := .Values.jobDefaults }}
{{- if $value }}
  {{ $key }}: {{ toJson $value }}
{{- end }}
{{- end }}
queues: {{ toJson .Values.queues }}
defaultQueueMaxRunning: {{ toJson .Values.defaultQueueMaxRunning }}
outputMaxBytes: {{ .Values.outputMaxBytes }}
podStartTimeoutSeconds: {{ .Values.podStartTimeoutSeconds }}
dependencyGraceSeconds: {{ .Values.dependencyGraceSeconds }}
retention: {{ toJson .Values.retention }}
{{- with .Values.allowedCommands }}
allowedCommands: {{ toJson . }}
{{- end }}
{{- end -}}
