{{/* Labels every object of the release carries. */}}
{{- define "wharf.labels" -}}
app.kubernetes.io/part-of: wharf
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .component }}
app.kubernetes.io/name: {{ . }}
{{- end }}
{{- end }}

{{/* Pod selector of one component. */}}
{{- define "wharf.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/name: {{ .component }}
{{- end }}

{{/* Object name of one component: <release>-<component>, at most 63 characters. */}}
{{- define "wharf.name" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* repository:tag of an image value, the tag defaulting to .Values.imageTag. */}}
{{- define "wharf.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Values.imageTag .image.tag) -}}
{{- end }}

{{/*
A controller: ServiceAccount, Deployment and metrics Service.
Input: dict "root" $ "component" NAME "values" VALUES "env" LIST-OF-EnvVar
*/}}
{{- define "wharf.controller" -}}
{{- $root := .root -}}
{{- $values := .values -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "wharf.name" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "wharf.labels" . | nindent 4 }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "wharf.name" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "wharf.labels" . | nindent 4 }}
spec:
  replicas: {{ $values.replicas }}
  selector:
    matchLabels:
      {{- include "wharf.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "wharf.labels" . | nindent 8 }}
    spec:
      serviceAccountName: {{ include "wharf.name" . }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "wharf.image" (dict "root" $root "image" $values.image) }}
          imagePullPolicy: {{ $root.Values.imagePullPolicy }}
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: POD_NAMESPACE
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            - name: LOG_FORMAT
              value: {{ $root.Values.logFormat | quote }}
            - name: LOG_LEVEL
              value: {{ $root.Values.logLevel | quote }}
            - name: HTTP_ADDR
              value: "0.0.0.0:8080"
            - name: LEADER_ELECTION
              value: {{ gt (int $values.replicas) 1 | quote }}
            - name: LEADER_ELECTION_NAMESPACE
              value: {{ $root.Release.Namespace | quote }}
            {{- range $name, $value := $values.env }}
            {{- if ne (toString $value) "" }}
            - name: {{ $name }}
              value: {{ $value | toString | quote }}
            {{- end }}
            {{- end }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            # protocol is spelled out: server-side apply on Kubernetes < 1.21 requires it.
            - name: http-metrics
              containerPort: 8080
              protocol: TCP
          livenessProbe:
            {{- if .livenessExec }}
            exec:
              command: {{ toJson .livenessExec }}
            {{- else }}
            httpGet: {path: /healthz, port: http-metrics}
            {{- end }}
            periodSeconds: 20
          readinessProbe:
            httpGet: {path: /readyz, port: http-metrics}
            periodSeconds: 10
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        # The only writable path: the root filesystem is read-only.
        - name: tmp
          emptyDir: {}
{{- if $root.Values.metrics.service }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "wharf.name" . }}-metrics
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "wharf.labels" . | nindent 4 }}
spec:
  selector:
    {{- include "wharf.selector" . | nindent 4 }}
  ports:
    - name: http-metrics
      port: 8080
      protocol: TCP
      targetPort: http-metrics
{{- end }}
{{- if $root.Values.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "wharf.name" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "wharf.labels" . | nindent 4 }}
    {{- with $root.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "wharf.selector" . | nindent 6 }}
  endpoints:
    - port: http-metrics
      path: /metrics
      interval: {{ $root.Values.metrics.serviceMonitor.interval }}
{{- end }}
{{- end }}

{{/* Rules every controller needs: leader election and Events. */}}
{{- define "wharf.commonRules" -}}
# Leader election: the Lease named after the component, in the release namespace.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update, patch]
# Events on the objects it reconciles, so `kubectl describe` shows failures.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
