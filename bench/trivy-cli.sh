# Sourced by the bench scripts: sets TRIVY to Trivy's CLI at the version
# sluice links (go.mod's), built from its module into $(go env GOPATH)/bin
# when missing, unless TRIVY names one already. Needs ROOT (the repository)
# and GOEXPERIMENT=jsonv2 exported.
if [[ -z ${TRIVY:-} ]]; then
	TRIVY=$(go env GOPATH)/bin/trivy
	if [[ ! -x $TRIVY ]]; then
		trivy_version=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/aquasecurity/trivy)
		echo "building trivy $trivy_version from its module" >&2
		# The module cache first: the proxy may refuse Trivy's version list.
		GOFLAGS=-mod=mod GOPROXY="file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" \
			go install "github.com/aquasecurity/trivy/cmd/trivy@$trivy_version"
	fi
fi
[[ -x $TRIVY ]] || { echo "no trivy binary at $TRIVY" >&2; exit 2; }
