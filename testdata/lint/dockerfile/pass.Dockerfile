FROM alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d
RUN apk add --no-cache curl=8.12.1-r0
USER 10001
HEALTHCHECK CMD curl -f http://localhost:8080/healthz || exit 1
CMD ["/usr/bin/curl", "--version"]
