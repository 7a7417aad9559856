#!/usr/bin/env bash
# Makes a tree of N (default 200) configuration files for bench/lint.sh: a
# mix of Dockerfiles, Kubernetes manifests, Helm charts, Terraform modules,
# CloudFormation templates, GitHub workflows and Tekton tasks, about half of
# them with misconfigurations. The content is a function of the index only,
# so every run makes the same tree.
#
#   bash bench/lint-tree.sh DIR [N]
set -euo pipefail

DIR=${1:?usage: lint-tree.sh DIR [N]}
N=${2:-200}
mkdir -p "$DIR"
count=0

emit() { # path: writes stdin to DIR/path and counts it
	mkdir -p "$DIR/$(dirname "$1")"
	cat >"$DIR/$1"
	count=$((count + 1))
}

dockerfile() {
	local i=$1
	if ((i % 2)); then
		emit "services/svc$i/Dockerfile" <<EOF
FROM ubuntu:latest
RUN apt-get update && apt-get install -y curl git
EXPOSE 22
CMD ["bash"]
EOF
	else
		emit "services/svc$i/Dockerfile" <<EOF
FROM alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d
RUN apk add --no-cache curl
USER 10001
HEALTHCHECK CMD curl -f http://localhost:8080/ || exit 1
CMD ["/usr/bin/curl", "--version"]
EOF
	fi
}

kubernetes() {
	local i=$1
	if ((i % 2)); then
		emit "k8s/app$i.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: app$i
spec:
  hostNetwork: true
  containers:
    - name: app
      image: nginx:latest
      securityContext:
        privileged: true
EOF
	else
		emit "k8s/app$i.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app$i
  namespace: apps
spec:
  selector:
    matchLabels: {app: app$i}
  template:
    metadata:
      labels: {app: app$i}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: app
          image: gcr.io/example/app$i@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d
          imagePullPolicy: Always
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            runAsUser: 10001
            runAsGroup: 10001
            capabilities: {drop: ["ALL"]}
            seccompProfile: {type: RuntimeDefault}
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: 500m, memory: 256Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: app$i
  namespace: apps
spec:
  selector: {app: app$i}
  ports: [{port: 80, targetPort: 8080}]
EOF
	fi
}

helm() { # a chart of 4 files
	local i=$1 priv=false img=gcr.io/example/web
	if ((i % 2)); then priv=true img=nginx; fi
	emit "charts/web$i/Chart.yaml" <<EOF
apiVersion: v2
name: web$i
version: 0.1.$i
EOF
	emit "charts/web$i/values.yaml" <<EOF
image: $img
tag: "1.$i"
privileged: $priv
EOF
	emit "charts/web$i/templates/_helpers.tpl" <<'EOF'
{{- define "web.name" -}}{{ .Chart.Name }}{{- end -}}
EOF
	emit "charts/web$i/templates/deployment.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "web.name" . }}
spec:
  selector:
    matchLabels: {app: {{ include "web.name" . }}}
  template:
    metadata:
      labels: {app: {{ include "web.name" . }}}
    spec:
      containers:
        - name: web
          image: "{{ .Values.image }}:{{ .Values.tag }}"
          securityContext:
            privileged: {{ .Values.privileged }}
            readOnlyRootFilesystem: true
EOF
}

terraform() { # a module of 2 files
	local i=$1 cidr=10.0.0.0/8 acl=private
	if ((i % 2)); then cidr=0.0.0.0/0 acl=public-read; fi
	emit "infra/mod$i/network.tf" <<EOF
resource "aws_security_group" "sg$i" {
  name        = "sg$i"
  description = "service $i"
  ingress {
    description = "https"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["$cidr"]
  }
}
EOF
	emit "infra/mod$i/storage.tf" <<EOF
resource "aws_s3_bucket" "b$i" {
  bucket = "example-$i"
  acl    = "$acl"
}
EOF
}

cloudformation() {
	local i=$1 cidr=10.0.0.0/8
	if ((i % 2)); then cidr=0.0.0.0/0; fi
	emit "cfn/stack$i.yaml" <<EOF
AWSTemplateFormatVersion: "2010-09-09"
Description: stack $i
Resources:
  SG:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: stack $i
      SecurityGroupIngress:
        - IpProtocol: tcp
          FromPort: 443
          ToPort: 443
          CidrIp: $cidr
          Description: https
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: q$i
EOF
}

workflow() {
	local i=$1 ref=v4 perms="permissions: {contents: read}"
	if ((i % 2)); then ref=11bd71901bbe5b1630ceea73d27597364c9af683; fi
	if ((i % 3 == 0)); then perms=""; fi
	emit ".github/workflows/wf$i.yml" <<EOF
name: wf$i
on: [pull_request]
$perms
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@$ref
      - run: echo "\${{ github.event.pull_request.title }}"
EOF
}

tekton() {
	local i=$1 p=image
	if ((i % 2)); then p=imagee; fi
	emit "tekton/task$i.yaml" <<EOF
apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: build$i
spec:
  params:
    - name: image
  steps:
    - name: build
      image: gcr.io/kaniko-project/executor@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d
      args: ["--destination=\$(params.$p)"]
      script: echo \$(params.$p)
EOF
}

i=0
while ((count < N)); do
	case $((i % 8)) in
	0) dockerfile "$i" ;;
	1) kubernetes "$i" ;;
	2) ((N - count >= 4)) && helm "$i" || kubernetes "$i" ;;
	3) ((N - count >= 2)) && terraform "$i" || dockerfile "$i" ;;
	4) cloudformation "$i" ;;
	5) workflow "$i" ;;
	6) tekton "$i" ;;
	7) kubernetes "$i" ;;
	esac
	i=$((i + 1))
done
echo "$count files in $DIR" >&2
