{{/* Names ------------------------------------------------------------------------------------ */}}
{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "berth.fullname" -}}
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

{{- define "berth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chart" . }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "berth.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* What the values turn on --------------------------------------------------------------------- */}}

{{/* "true" when basic auth is on. */}}
{{- define "berth.htpasswdEnabled" -}}
{{- if or .Values.secrets.htpasswd .Values.secrets.htpasswdExistingSecret }}true{{ end }}
{{- end }}

{{- define "berth.htpasswdSecretName" -}}
{{- .Values.secrets.htpasswdExistingSecret | default (printf "%s-htpasswd" (include "berth.fullname" .)) }}
{{- end }}

{{/* "true" when the chart creates the S3 credentials Secret. */}}
{{- define "berth.s3CreateSecret" -}}
{{- $s3 := .Values.storage.s3 }}
{{- if and (eq .Values.storage.type "s3") (not $s3.existingSecret) (or $s3.accessKey $s3.secretKey) }}true{{ end }}
{{- end }}

{{- define "berth.s3SecretName" -}}
{{- .Values.storage.s3.existingSecret | default (printf "%s-s3" (include "berth.fullname" .)) }}
{{- end }}

{{- define "berth.postgresSecretName" -}}
{{- .Values.metadata.postgres.existingSecret | default (printf "%s-database" (include "berth.fullname" .)) }}
{{- end }}

{{/* "true" when state is shared (s3 + postgres): many replicas and rolling updates are safe. */}}
{{- define "berth.sharedState" -}}
{{- if and (eq .Values.storage.type "s3") (eq .Values.metadata.type "postgres") }}true{{ end }}
{{- end }}

{{/* "true" when the pod needs the persistent volume (filesystem blobs or the embedded database). */}}
{{- define "berth.needsVolume" -}}
{{- if or (eq .Values.storage.type "filesystem") (eq .Values.metadata.type "embedded") }}true{{ end }}
{{- end }}

{{- define "berth.claimName" -}}
{{- .Values.persistence.existingClaim | default (include "berth.fullname" .) }}
{{- end }}

{{- define "berth.scheme" -}}
{{- if .Values.tlsSecretName }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* Mount points inside the container. */}}
{{- define "berth.dataDir" -}}/var/lib/registry{{- end }}
{{- define "berth.configDir" -}}/etc/berth{{- end }}

{{/* Refusals: combinations that would lose or corrupt data, or values that cannot work. ---------- */}}
{{- define "berth.validate" -}}
{{- $v := .Values }}
{{- if and (or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled) (not (include "berth.sharedState" .)) }}
{{- fail (printf "replicaCount=%d, autoscaling.enabled=%t: more than one Berth pod needs storage.type=s3 AND metadata.type=postgres (now storage.type=%s, metadata.type=%s). The embedded SQLite database and a ReadWriteOnce volume belong to exactly one pod; two writers would corrupt them." (int $v.replicaCount) $v.autoscaling.enabled $v.storage.type $v.metadata.type) }}
{{- end }}
{{- if and (eq (default "" $v.updateStrategy.type) "RollingUpdate") (not (include "berth.sharedState" .)) }}
{{- fail "updateStrategy.type=RollingUpdate runs the old and the new pod at once; that needs storage.type=s3 AND metadata.type=postgres. Leave updateStrategy empty (Recreate) for single-writer setups." }}
{{- end }}
{{- if and (eq $v.storage.type "s3") (not $v.storage.s3.bucket) }}
{{- fail "storage.type=s3 needs storage.s3.bucket" }}
{{- end }}
{{- if and (eq $v.storage.type "s3") (not $v.storage.s3.existingSecret) (not (and $v.storage.s3.accessKey $v.storage.s3.secretKey)) (or $v.storage.s3.accessKey $v.storage.s3.secretKey) }}
{{- fail "storage.s3: set both accessKey and secretKey (or existingSecret, or neither for IAM credentials)" }}
{{- end }}
{{- if and (eq $v.metadata.type "postgres") (not $v.metadata.postgres.existingSecret) (not $v.metadata.postgres.url) }}
{{- fail "metadata.type=postgres needs metadata.postgres.existingSecret (a Secret with the URL) or metadata.postgres.url" }}
{{- end }}
{{- if and (include "berth.needsVolume" .) (not $v.persistence.enabled) (gt (int $v.replicaCount) 1) }}
{{- fail "persistence.enabled=false with more than one replica" }}
{{- end }}
{{- $pdbMin := toString $v.podDisruptionBudget.minAvailable }}
{{- $pdbMax := toString $v.podDisruptionBudget.maxUnavailable }}
{{- if and $v.podDisruptionBudget.enabled (ne $pdbMin "") (ne $pdbMax "") }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to \"\")" }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (eq $pdbMin "") (eq $pdbMax "") }}
{{- fail "podDisruptionBudget.enabled needs minAvailable or maxUnavailable" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is greater than autoscaling.maxReplicas" }}
{{- end }}
{{- if and $v.autoscaling.enabled (not $v.autoscaling.targetCPUUtilizationPercentage) (not $v.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- $overStorage := dig "storage" (dict) $v.configOverrides }}
{{- if kindIs "map" $overStorage }}
{{- range $driver := list "filesystem" "s3" "inmemory" "azure" "gcs" "swift" "oss" }}
{{- if and (hasKey $overStorage $driver) (ne $driver $v.storage.type) }}
{{- fail (printf "configOverrides.storage.%s conflicts with storage.type=%s; choose the driver with storage.type" $driver $v.storage.type) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $path, $value := dict "http.addr" "containerPort" "http.tls" "tlsSecretName" "http.debug" "metrics.enabled/metrics.port" "storage.filesystem" "storage.type" "storage.delete" "storage.deleteEnabled" "auth" "secrets.htpasswd/secrets.htpasswdExistingSecret" "database" "metadata.*" }}
{{- $node := $v.configOverrides }}
{{- range $key := splitList "." $path }}
{{- if kindIs "map" $node }}{{ $node = get $node $key }}{{ else }}{{ $node = "" }}{{ end }}
{{- end }}
{{- if not (kindIs "invalid" $node) }}{{ if or (not (kindIs "string" $node)) $node }}
{{- fail (printf "configOverrides.%s is managed by the chart; set %s instead" $path $value) }}
{{- end }}{{ end }}
{{- end }}
{{- end }}

{{/* config.yml ----------------------------------------------------------------------------------- */}}
{{- define "berth.config" -}}
{{- $v := .Values }}
{{- $http := dict "addr" (printf ":%d" (int $v.containerPort)) }}
{{- if $v.tlsSecretName }}
{{- $_ := set $http "tls" (dict "certificate" (printf "%s/tls/tls.crt" (include "berth.configDir" .)) "key" (printf "%s/tls/tls.key" (include "berth.configDir" .))) }}
{{- end }}
{{- if $v.metrics.enabled }}
{{- $_ := set $http "debug" (dict "addr" (printf ":%d" (int $v.metrics.port))) }}
{{- end }}
{{- $storage := dict "delete" (dict "enabled" $v.storage.deleteEnabled) }}
{{- if eq $v.storage.type "filesystem" }}
{{- $_ := set $storage "filesystem" (dict "rootdirectory" (include "berth.dataDir" .)) }}
{{- else }}
{{- $s3 := dict "region" $v.storage.s3.region "bucket" $v.storage.s3.bucket "secure" $v.storage.s3.secure "forcepathstyle" $v.storage.s3.forcePathStyle }}
{{- with $v.storage.s3.regionEndpoint }}{{ $_ := set $s3 "regionendpoint" . }}{{ end }}
{{- with $v.storage.s3.rootDirectory }}{{ $_ := set $s3 "rootdirectory" . }}{{ end }}
{{- $_ := set $storage "s3" $s3 }}
{{- $_ := set $storage "redirect" (dict "disable" $v.storage.s3.disableRedirect) }}
{{- end }}
{{- $config := dict "version" "0.1" "http" $http "storage" $storage }}
{{- if include "berth.htpasswdEnabled" . }}
{{- $_ := set $config "auth" (dict "htpasswd" (dict "realm" $v.secrets.htpasswdRealm "path" (printf "%s/auth/htpasswd" (include "berth.configDir" .)))) }}
{{- end }}
{{- if eq $v.metadata.type "postgres" }}
{{- /* The URL itself comes from the REGISTRY_DATABASE_URL environment variable (a Secret). */}}
{{- $_ := set $config "database" (dict "poolsize" (int $v.metadata.postgres.poolSize)) }}
{{- else if eq $v.storage.type "s3" }}
{{- /* Embedded metadata next to S3 blobs: on the volume, not in the working directory. */}}
{{- $_ := set $config "database" (dict "url" (printf "sqlite://%s/berth-meta.sqlite" (include "berth.dataDir" .))) }}
{{- end }}
{{- $merged := mustMergeOverwrite $config (deepCopy $v.configOverrides) }}
{{- toYaml $merged }}
{{- end }}
