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
startedEventHoldSeconds: {{ .Values.startedEventHoldSeconds }}
retention: {{ toJson .Values.retention }}
{{- with .Values.allowedCommands }}
allowedCommands: {{ toJson . }}
{{- end }}
{{- end -}}

{{/* `helm test`: the namespace of its CommerceJob (one that the operator watches), and the job's name. */}}
{{- define "commerce-jobs.testNamespace" -}}
{{- $namespace := .Values.tests.namespace | default (first .Values.watchNamespaces) | default .Release.Namespace -}}
{{- if and .Values.watchNamespaces (not (has $namespace .Values.watchNamespaces)) -}}
{{- fail (printf "tests.namespace %s is not one of watchNamespaces: the operator would never run its job" $namespace) -}}
{{- end -}}
{{- $namespace -}}
{{- end -}}

{{- define "commerce-jobs.testJobName" -}}
{{- printf "%s-helm-test" (include "commerce-jobs.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The test hook's labels: not the operator's selector labels, so that neither the console's Service nor the
NetworkPolicy selects its pod. */}}
{{- define "commerce-jobs.testLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator's image: by digest when one is given, else by tag (default: the chart's appVersion). */}}
{{- define "commerce-jobs.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
