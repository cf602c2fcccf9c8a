{{- define "focusforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "focusforge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "focusforge.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "focusforge.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "focusforge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "focusforge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: focusforge
{{- end -}}

{{- define "focusforge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "focusforge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "focusforge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "focusforge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "focusforge.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
A checksum of what the Secret is made from, so pods restart when it
changes (the values, not the rendered Secret, whose generated default
differs on every render).
*/}}
{{- define "focusforge.secretChecksum" -}}
{{ toJson (list .Values.auth .Values.mongodb .Values.redis .Values.openai) | sha256sum }}
{{- end -}}

{{/* The Secret this chart writes. */}}
{{- define "focusforge.secretName" -}}
{{ include "focusforge.fullname" . }}
{{- end -}}

{{/* "true" when MongoDB and Redis are set: the API pods keep no state. */}}
{{- define "focusforge.shared" -}}
{{- if and (or .Values.mongodb.uri .Values.mongodb.existingSecret) (or .Values.redis.url .Values.redis.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/* The services of the binary but memory, which runs apart with shared state. */}}
{{- define "focusforge.apiServices" -}}
{{- if .Values.api.services -}}
{{- join "," .Values.api.services -}}
{{- else if include "focusforge.shared" . -}}
chain,tasks,users,planner,jobs,mcp,mood,gamification,focus,calendar,analytics,integrations,events,orchestrator
{{- end -}}
{{- end -}}

{{- define "focusforge.validate" -}}
{{- $shared := include "focusforge.shared" . -}}
{{- $several := or (gt (int .Values.api.replicas) 1) .Values.api.autoscaling.enabled -}}
{{- if and $several (not $shared) -}}
{{- fail "api.replicas > 1 or api.autoscaling needs mongodb and redis: the embedded store, cache and queue belong to one process" -}}
{{- end -}}
{{- if and .Values.worker.enabled (not $shared) -}}
{{- fail "worker.enabled needs mongodb and redis: workers share the queue and the store with the API" -}}
{{- end -}}
{{- if and .Values.api.podDisruptionBudget.enabled (not $several) -}}
{{- fail "api.podDisruptionBudget with one API pod would block node drains: run several (api.replicas or api.autoscaling)" -}}
{{- end -}}
{{- range $section, $keys := dict "auth" (list "jwt_secret") "mongodb" (list "uri") "redis" (list "url") "openai" (list "api_key") -}}
{{- range $keys -}}
{{- if hasKey (get $.Values.config $section | default dict) . -}}
{{- fail (printf "config.%s.%s would land in a ConfigMap: set it through the chart's %s values (a Secret)" $section . $section) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $shared (has "memory" .Values.api.services) -}}
{{- fail "api.services: memory runs in its own deployment when mongodb and redis are set (it owns the Lance tables)" -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the API and the workers. */}}
{{- define "focusforge.env" -}}
- name: FOCUSFORGE_CONFIG
  value: /etc/focusforge/focusforge.toml
- name: FOCUSFORGE_DATA_DIR
  value: /var/lib/focusforge
- name: FOCUSFORGE_MODELS_DIR
  value: /opt/focusforge/models
- name: FOCUSFORGE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: FOCUSFORGE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: FOCUSFORGE_METRICS_LISTEN
  value: "0.0.0.0:{{ .Values.metrics.port }}"
- name: FOCUSFORGE_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret | default (include "focusforge.secretName" .) }}
      key: {{ if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}jwt-secret{{ end }}
{{- with .Values.auth.issuer }}
- name: FOCUSFORGE_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- if or .Values.mongodb.uri .Values.mongodb.existingSecret }}
- name: FOCUSFORGE_MONGODB_URI
  valueFrom:
    secretKeyRef:
      name: {{ .Values.mongodb.existingSecret | default (include "focusforge.secretName" .) }}
      key: {{ if .Values.mongodb.existingSecret }}{{ .Values.mongodb.existingSecretKey }}{{ else }}mongodb-uri{{ end }}
- name: FOCUSFORGE_MONGODB_DATABASE
  value: {{ .Values.mongodb.database | quote }}
{{- end }}
{{- if or .Values.redis.url .Values.redis.existingSecret }}
- name: FOCUSFORGE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | default (include "focusforge.secretName" .) }}
      key: {{ if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}
{{- if or .Values.openai.apiKey .Values.openai.existingSecret }}
- name: FOCUSFORGE_OPENAI_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.openai.existingSecret | default (include "focusforge.secretName" .) }}
      key: {{ if .Values.openai.existingSecret }}{{ .Values.openai.existingSecretKey }}{{ else }}openai-api-key{{ end }}
{{- end }}
{{- end -}}

{{- define "focusforge.podSecurity" -}}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "focusforge.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
A TOML value. Helm reads numbers as floats, so whole numbers are written
as integers: the configuration's counts and sizes are integers.
*/}}
{{- define "focusforge.tomlValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq . (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "focusforge.tomlValue" $v }}{{ end }}]
{{- else if kindIs "map" . -}}
{{- fail "config: tables nest one level deep, e.g. config.jobs.workers" -}}
{{- else if kindIs "invalid" . -}}
{{- fail "config: a key has no value (null); remove it to keep the default" -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* The `config` values as a TOML document: top-level keys, then tables. */}}
{{- define "focusforge.toml" -}}
{{- range $k, $v := . }}
{{- if not (kindIs "map" $v) }}
{{ toJson $k }} = {{ include "focusforge.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := . }}
{{- if kindIs "map" $v }}

[{{ toJson $k }}]
{{- range $k2, $v2 := $v }}
{{ toJson $k2 }} = {{ include "focusforge.tomlValue" $v2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* gRPC health (grpc.health.v1) on the serving port; start-up loads the local models. */}}
{{- define "focusforge.probes" -}}
startupProbe:
  grpc:
    port: {{ .Values.service.port }}
  periodSeconds: 2
  failureThreshold: 90
readinessProbe:
  grpc:
    port: {{ .Values.service.port }}
  periodSeconds: 10
livenessProbe:
  grpc:
    port: {{ .Values.service.port }}
  periodSeconds: 20
  failureThreshold: 3
{{- end -}}

{{/* Egress of every pod: DNS, the chart's own pods, and networkPolicy.egress. */}}
{{- define "focusforge.egress" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
- to:
    - podSelector:
        matchLabels:
          {{- include "focusforge.selectorLabels" . | nindent 10 }}
  ports:
    - {port: {{ .Values.service.port }}, protocol: TCP}
{{- with .Values.networkPolicy.egress }}
{{ toYaml . }}
{{- end }}
{{- end -}}
