#!/usr/bin/env bash
# Deploy the readmission Bento as a KServe InferenceService on MicroK8s, and roll out new champions.
#
#   kserve/deploy.sh [deploy] [--overlay knative|standard|grpc]  build, push, apply, wait for Ready, smoke test
#                    [--monitoring none|operator|standalone [--alert-webhooks FILE]]
#                                                    and monitoring: none (the default), the cluster's Prometheus
#                                                    Operator (observability/operator) or Prometheus and Grafana
#                                                    of our own (observability/k8s)
#   kserve/deploy.sh canary --tag NEW [--model-version V | --no-train]
#                                                    train (or promote V) in MLflow, import, build NEW, 10% canary
#   kserve/deploy.sh promote [--tag NEW]             the canary takes 100%; NEW becomes the tag in kserve/base
#   kserve/deploy.sh rollback                        back to the tag in kserve/base at 100%
#   kserve/deploy.sh backup [--dir DIR]              the stack's configuration as JSON files (no Secrets)
#   kserve/deploy.sh restore --dir DIR               apply a backup
#   --dry-run                                        print every command, run none
#
# Environment: KUBECTL (default "microk8s kubectl"), HELM (default "microk8s helm"), BUILDER
# (docker|podman|buildah, default: the first that works), BENTOML, PYTHON, READMISSION_CLI, API_URL,
# READMISSION_API_TOKEN (the API's bearer token; default: the one in the cluster, else a new random one).
set -euo pipefail

# Pinned versions of what the cluster needs (kserve/README.md names the Kubernetes version validated against).
MICROK8S_CHANNEL="1.34/stable"
CERT_MANAGER_VERSION="v1.17.0"
KNATIVE_SERVING_VERSION="knative-v1.21.1"
KOURIER_VERSION="knative-v1.21.0"
KSERVE_VERSION="v0.17.0"

REGISTRY="localhost:32000"
NAMESPACE="readmission"
ISVC="readmission"
BENTO="readmission"
CANARY_PERCENT=10
# The API's bearer token (key `token`), never in the repository: in the namespaces of the callers' pods,
# the predictor and the UI (readmission) and Locust (loadtest).
API_TOKEN_SECRET="readmission-api-token"  # pragma: allowlist secret (the Secret's name, not a secret)
TOKEN_NAMESPACES=("$NAMESPACE" loadtest)
# The prediction log's PostgreSQL (kserve/postgres): its password (key `password`) and the predictor's URL
# holding it (key `url`), never in the repository.
LOG_SECRET="readmission-prediction-log"  # pragma: allowlist secret (the Secret's name, not a secret)
LOG_DATABASE="readmission"
LOG_HOST="readmission-postgres.$NAMESPACE.svc:5432"
# Monitoring. operator: MicroK8s's `observability` add-on (kube-prometheus-stack: the Prometheus Operator, its
# Alertmanager and Grafana) takes observability/operator (generated: python -m observability.operator_resources);
# the AlertmanagerConfig's receivers read their webhook URLs from a Secret, never in the repository
# (observability/operator_settings.py, WEBHOOK_SECRET). standalone: Prometheus and Grafana of observability/k8s, whose
# Grafana reads its admin login from a Secret.
WEBHOOK_SECRET="readmission-alert-webhooks"  # pragma: allowlist secret (the Secret's name, not a secret)
GRAFANA_SECRET="grafana-admin"               # pragma: allowlist secret (the Secret's name, not a secret)
MONITORING_NAMESPACE="observability"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KSERVE_DIR="$ROOT/kserve"
BASE_KUSTOMIZATION="$KSERVE_DIR/base/kustomization.yaml"
read -r -a KUBECTL <<<"${KUBECTL:-microk8s kubectl}"
read -r -a HELM <<<"${HELM:-microk8s helm}"
BENTOML="${BENTOML:-$ROOT/.venv/bin/bentoml}"
READMISSION_CLI="${READMISSION_CLI:-$ROOT/.venv/bin/readmission}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"  # the gRPC smoke request (overlay grpc): tritonclient from the .venv
API_URL="${API_URL:-http://127.0.0.1:30080}"
export BENTOML_HOME="${BENTOML_HOME:-$ROOT/.readmission/bentoml}"
export BENTOML_DO_NOT_TRACK=true

DRY_RUN=0
COMMAND=deploy
OVERLAY=knative
TAG=""
MODEL_VERSION=""
TRAIN=1
BACKUP_DIR=""
MONITORING=none
ALERT_WEBHOOKS=""

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "deploy.sh: $*" >&2
    exit 1
}

log() {
    echo "==> $*" >&2
}

# Print a command; run it unless --dry-run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ $DRY_RUN -eq 0 ]]; then
        "$@"
    fi
}

# A step that only makes sense against a live cluster: described in --dry-run, run otherwise.
note() {
    printf '+ # %s\n' "$*"
}

kubectl_() {
    run "${KUBECTL[@]}" "$@"
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required (see kserve/README.md, Prerequisites)"
    done
}

base_tag() {
    sed -n 's/^ *newTag: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$BASE_KUSTOMIZATION"
}

choose_builder() {
    if [[ -n "${BUILDER:-}" ]]; then
        echo "$BUILDER"
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    elif command -v podman >/dev/null 2>&1; then
        echo podman
    elif command -v buildah >/dev/null 2>&1; then
        echo buildah
    elif [[ $DRY_RUN -eq 1 ]]; then
        echo docker
    else
        die "no image builder: install docker, podman or buildah (kserve/README.md)"
    fi
}

check_prerequisites() {
    log "checking prerequisites"
    if [[ $DRY_RUN -eq 1 ]]; then
        note "check: microk8s curl python3 $BENTOML and docker|podman|buildah are installed"
        return
    fi
    need "${KUBECTL[0]}" "${HELM[0]}" curl python3
    [[ $OVERLAY != grpc || -x "$PYTHON" ]] || die "the grpc overlay's smoke request needs $PYTHON (make up)"
    if [[ ! -x "$BENTOML" ]]; then
        need bentoml
        BENTOML=bentoml
    fi
}

enable_addons() {
    log "MicroK8s add-ons (channel $MICROK8S_CHANNEL)"
    run microk8s status --wait-ready
    run microk8s enable dns
    run microk8s enable hostpath-storage
    run microk8s enable registry  # a registry on localhost:32000, its storage on hostpath
    run microk8s enable metrics-server  # CPU metrics for the Standard overlay's HPA
}

have() {
    # Is a resource there? Never asked in --dry-run, where every install step is printed.
    [[ $DRY_RUN -eq 0 ]] && "${KUBECTL[@]}" get "$@" >/dev/null 2>&1
}

install_cert_manager() {
    if have crd certificates.cert-manager.io; then
        log "cert-manager is installed"
        return
    fi
    log "installing cert-manager $CERT_MANAGER_VERSION"
    kubectl_ apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
    kubectl_ wait --for=condition=Available deployment --all -n cert-manager --timeout=300s
}

install_knative() {
    if have crd services.serving.knative.dev; then
        log "Knative Serving is installed"
    else
        log "installing Knative Serving $KNATIVE_SERVING_VERSION with Kourier $KOURIER_VERSION"
        local serving="https://github.com/knative/serving/releases/download/$KNATIVE_SERVING_VERSION"
        kubectl_ apply -f "$serving/serving-crds.yaml"
        kubectl_ apply -f "$serving/serving-core.yaml"
        kubectl_ apply -f "https://github.com/knative/net-kourier/releases/download/$KOURIER_VERSION/kourier.yaml"
        kubectl_ wait --for=condition=Available deployment --all -n knative-serving --timeout=300s
        kubectl_ wait --for=condition=Available deployment --all -n kourier-system --timeout=300s
    fi
    # Kourier as Knative's ingress; emptyDir volumes and container security contexts in Knative pods.
    kubectl_ patch configmap/config-network -n knative-serving --type merge \
        -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
    kubectl_ patch configmap/config-features -n knative-serving --type merge \
        -p '{"data":{"kubernetes.podspec-emptydir":"enabled","kubernetes.podspec-securitycontext":"enabled"}}'
}

install_kserve() {
    local mode
    mode=$([[ $OVERLAY == standard ]] && echo Standard || echo Knative)
    if have crd inferenceservices.serving.kserve.io; then
        log "KServe is installed"
        return
    fi
    log "installing KServe $KSERVE_VERSION ($mode mode by default)"
    run "${HELM[@]}" upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
        --version "$KSERVE_VERSION" --namespace kserve --create-namespace --wait
    run "${HELM[@]}" upgrade --install kserve oci://ghcr.io/kserve/charts/kserve \
        --version "$KSERVE_VERSION" --namespace kserve --wait \
        --set "kserve.controller.deploymentMode=$mode"
    configure_kserve_ingress
    kubectl_ rollout restart deployment/kserve-controller-manager -n kserve
    kubectl_ rollout status deployment/kserve-controller-manager -n kserve --timeout=300s
}

# No Istio: KServe makes no top-level VirtualService or Ingress; the API is reached on NodePort 30080
# (Kourier's gateway in Knative mode, the predictor pods in Standard mode).
configure_kserve_ingress() {
    if [[ $DRY_RUN -eq 1 ]]; then
        note "set disableIstioVirtualHost and disableIngressCreation in configmap/inferenceservice-config (kserve)"
        return
    fi
    local ingress patch
    ingress=$("${KUBECTL[@]}" get configmap inferenceservice-config -n kserve -o 'jsonpath={.data.ingress}')
    patch=$(python3 -c '
import json, sys
ingress = json.loads(sys.argv[1] or "{}")
ingress.update(disableIstioVirtualHost=True, disableIngressCreation=True)
print(json.dumps({"data": {"ingress": json.dumps(ingress, indent=2)}}))' "$ingress")
    kubectl_ patch configmap/inferenceservice-config -n kserve --type merge -p "$patch"
}

build_and_push() {
    local tag=$1 builder image
    image="$REGISTRY/$BENTO:$tag"
    builder=$(choose_builder)
    log "building the Bento $BENTO:$tag and the image $image with $builder"
    if [[ $DRY_RUN -eq 0 ]] && "$BENTOML" get "$BENTO:$tag" >/dev/null 2>&1; then
        log "the Bento $BENTO:$tag exists: a tag is never rebuilt (use a new tag for a new model)"
    else
        run "$BENTOML" build --version "$tag" "$ROOT"
    fi
    run "$BENTOML" containerize "$BENTO:$tag" --backend "$builder" --image-tag "$image"
    case $builder in
        docker) run docker push "$image" ;;
        podman) run podman push --tls-verify=false "$image" ;;
        buildah) run buildah push --tls-verify=false "$image" "docker://$image" ;;
        *) die "unknown builder '$builder' (docker, podman or buildah)" ;;
    esac
}

# The Prometheus Operator (--monitoring operator): MicroK8s's observability add-on, unless its CRDs are there.
install_monitoring() {
    [[ $MONITORING == operator ]] || return 0
    if have crd podmonitors.monitoring.coreos.com; then
        log "the Prometheus Operator is installed"
        return
    fi
    log "enabling MicroK8s's observability add-on (kube-prometheus-stack: Prometheus Operator, Alertmanager, Grafana)"
    run microk8s enable observability --without-tempo  # no tracing here: Tempo would only take memory
}

# Secret readmission-alert-webhooks (one key per webhook of observability/alertmanager/alertmanager.yml, each a URL)
# from --alert-webhooks FILE (lines `key=URL`, read by kubectl: no URL on a command line nor printed), else the one
# in the cluster; without either the operator would drop the AlertmanagerConfig, so the deploy stops here.
ensure_alert_webhooks() {
    local keys="the keys in the header of observability/operator/alertmanagerconfig.yaml"
    log "the alert webhooks: Secret/$WEBHOOK_SECRET"
    if [[ -n $ALERT_WEBHOOKS ]]; then
        [[ $DRY_RUN -eq 1 || -r $ALERT_WEBHOOKS ]] || die "--alert-webhooks $ALERT_WEBHOOKS: no such readable file"
        if [[ $DRY_RUN -eq 1 ]]; then
            note "${KUBECTL[*]} create secret generic $WEBHOOK_SECRET --from-env-file=$ALERT_WEBHOOKS -n $NAMESPACE --dry-run=client -o yaml | ${KUBECTL[*]} apply -f -"
            return
        fi
        "${KUBECTL[@]}" create secret generic "$WEBHOOK_SECRET" -n "$NAMESPACE" --from-env-file="$ALERT_WEBHOOKS" \
            --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
    elif [[ $DRY_RUN -eq 1 ]]; then
        note "keep Secret/$WEBHOOK_SECRET of namespace $NAMESPACE; without it: stop, --alert-webhooks FILE needed ($keys)"
    elif have secret "$WEBHOOK_SECRET" -n "$NAMESPACE"; then
        log "Secret/$WEBHOOK_SECRET is there: kept"
    else
        die "the AlertmanagerConfig reads its webhook URLs from Secret/$WEBHOOK_SECRET: --alert-webhooks FILE ($keys, one key=URL a line)"
    fi
}

# Secret grafana-admin of observability/k8s's Grafana: kept when there, else admin with a random password (never printed).
ensure_grafana_admin() {
    local folder password
    log "Grafana's login: Secret/$GRAFANA_SECRET"
    kubectl_ apply -f "$ROOT/observability/k8s/namespace.yaml"
    if [[ $DRY_RUN -eq 1 ]]; then
        note "keep Secret/$GRAFANA_SECRET of namespace $MONITORING_NAMESPACE, else: ${KUBECTL[*]} create secret generic $GRAFANA_SECRET --from-literal=admin-user=admin --from-file=admin-password=<openssl rand -base64 24> -n $MONITORING_NAMESPACE"
        return
    fi
    if have secret "$GRAFANA_SECRET" -n "$MONITORING_NAMESPACE"; then
        log "Secret/$GRAFANA_SECRET is there: kept"
        return
    fi
    folder=$(mktemp -d)  # mode 700: the password never appears on a command line
    # shellcheck disable=SC2064  # expand now: the folder of this call
    trap "rm -rf '$folder'" RETURN
    password=$(openssl rand -base64 24 2>/dev/null || python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    printf '%s' "$password" >"$folder/password"
    "${KUBECTL[@]}" create secret generic "$GRAFANA_SECRET" -n "$MONITORING_NAMESPACE" --from-literal=admin-user=admin \
        --from-file=admin-password="$folder/password"
    log "read Grafana's password with: ${KUBECTL[*]} get secret $GRAFANA_SECRET -n $MONITORING_NAMESPACE -o jsonpath='{.data.admin-password}' | base64 -d"
}

# --monitoring: the Prometheus Operator's resources, or the standalone Prometheus and Grafana, or nothing.
apply_monitoring() {
    case $MONITORING in
        none)
            log "no monitoring applied (--monitoring operator|standalone; kserve/README.md, Monitoring)"
            ;;
        operator)
            ensure_alert_webhooks
            log "applying observability/operator: PodMonitor, PrometheusRule, AlertmanagerConfig, dashboard ConfigMap"
            kubectl_ apply -k "$ROOT/observability/operator"
            ;;
        standalone)
            ensure_grafana_admin
            log "applying observability/k8s: Prometheus (NodePort 30090) and Grafana (NodePort 30030)"
            kubectl_ apply -k "$ROOT/observability/k8s"
            kubectl_ rollout status deployment/prometheus -n "$MONITORING_NAMESPACE" --timeout=300s
            kubectl_ rollout status deployment/grafana -n "$MONITORING_NAMESPACE" --timeout=300s
            ;;
        *) die "unknown monitoring '$MONITORING'" ;;
    esac
}

# Render an overlay with another image tag, without touching the files in the repository.
apply_with_tag() {
    local overlay=$1 tag=$2 dir
    if [[ $tag == "$(base_tag)" ]]; then
        kubectl_ apply -k "$KSERVE_DIR/overlays/$overlay"
        return
    fi
    dir=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: the folder of this call
    trap "rm -rf '$dir'" RETURN
    cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$dir" "$KSERVE_DIR/overlays/$overlay")
images:
  - name: $REGISTRY/$BENTO
    newTag: "$tag"
EOF
    note "$dir/kustomization.yaml: overlays/$overlay with the image $REGISTRY/$BENTO:$tag"
    kubectl_ apply -k "$dir"
}

# The API token as it is in the cluster (empty when there is none yet).
read_api_token() {
    "${KUBECTL[@]}" get secret "$API_TOKEN_SECRET" -n "$NAMESPACE" -o 'jsonpath={.data.token}' 2>/dev/null |
        base64 -d 2>/dev/null || true
}

# The prediction log's password as it is in the cluster (empty when there is none yet).
read_log_password() {
    "${KUBECTL[@]}" get secret "$LOG_SECRET" -n "$NAMESPACE" -o 'jsonpath={.data.password}' 2>/dev/null |
        base64 -d 2>/dev/null || true
}

# Secret readmission-prediction-log (the password kept across deploys, else a new random one; never printed),
# then PostgreSQL (kserve/postgres), ready before the predictor that writes to it.
ensure_prediction_log() {
    local password folder
    log "the prediction log: Secret/$LOG_SECRET and PostgreSQL (kserve/postgres)"
    if [[ $DRY_RUN -eq 1 ]]; then
        note "password: the Secret's, else openssl rand -hex 24 (never printed); url: postgresql://$LOG_DATABASE:<password>@$LOG_HOST/$LOG_DATABASE"
        note "${KUBECTL[*]} create secret generic $LOG_SECRET --from-file=password=<file> --from-file=url=<file> -n $NAMESPACE --dry-run=client -o yaml | ${KUBECTL[*]} apply -f -"
    else
        password=$(read_log_password)
        [[ -n $password ]] || password=$(openssl rand -hex 24 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(24))')
        folder=$(mktemp -d)  # mode 700: neither value appears on a command line
        # shellcheck disable=SC2064  # expand now: the folder of this call
        trap "rm -rf '$folder'" RETURN
        printf '%s' "$password" >"$folder/password"
        printf 'postgresql://%s:%s@%s/%s' "$LOG_DATABASE" "$password" "$LOG_HOST" "$LOG_DATABASE" >"$folder/url"  # pragma: allowlist secret
        "${KUBECTL[@]}" create secret generic "$LOG_SECRET" -n "$NAMESPACE" --from-file=password="$folder/password" \
            --from-file=url="$folder/url" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
    fi
    kubectl_ apply -k "$KSERVE_DIR/postgres"
    kubectl_ rollout status statefulset/readmission-postgres -n "$NAMESPACE" --timeout=300s
}

# Secret readmission-api-token in every namespace of TOKEN_NAMESPACES: the token is $READMISSION_API_TOKEN,
# else the one already in the cluster (kept across deploys), else a new random one. Never printed.
ensure_api_token() {
    local namespaces=${TOKEN_NAMESPACES[*]} token file ns
    log "the API token: Secret/$API_TOKEN_SECRET in namespaces $namespaces"
    kubectl_ apply -f "$KSERVE_DIR/base/namespace.yaml"
    kubectl_ apply -f "$ROOT/loadtest/k8s/namespace.yaml"
    if [[ $DRY_RUN -eq 1 ]]; then
        note "token: \$READMISSION_API_TOKEN, else the Secret's, else openssl rand -hex 32 (never printed)"
        note "${KUBECTL[*]} create secret generic $API_TOKEN_SECRET --from-file=token=<file> -n <ns> --dry-run=client -o yaml | ${KUBECTL[*]} apply -f - (for $namespaces)"
        return
    fi
    token=${READMISSION_API_TOKEN:-}
    [[ -n $token ]] || token=$(read_api_token)
    [[ -n $token ]] || token=$(openssl rand -hex 32 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(32))')
    file=$(mktemp)  # mode 600: the token never appears on a command line
    # shellcheck disable=SC2064  # expand now: the file of this call
    trap "rm -f '$file'" RETURN
    printf '%s' "$token" >"$file"
    for ns in "${TOKEN_NAMESPACES[@]}"; do
        "${KUBECTL[@]}" create secret generic "$API_TOKEN_SECRET" -n "$ns" --from-file=token="$file" \
            --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
    done
    log "read the token with: ${KUBECTL[*]} get secret $API_TOKEN_SECRET -n $NAMESPACE -o jsonpath='{.data.token}' | base64 -d"
    log "pods read it when they start: after a new token, restart the predictor, the UI and Locust"
}

wait_ready() {
    log "waiting for inferenceservice/$ISVC to be Ready"
    kubectl_ wait --for=condition=Ready "inferenceservice/$ISVC" -n "$NAMESPACE" --timeout=600s
}

# The predictor's Knative host name, from the InferenceService's status: Kourier routes by it (Host, :authority).
predictor_host() {
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "<host of .status.components.predictor.url>"
        return
    fi
    local url
    url=$("${KUBECTL[@]}" get "inferenceservice/$ISVC" -n "$NAMESPACE" -o 'jsonpath={.status.components.predictor.url}')
    echo "${url#*://}"
}

smoke_test() {
    if [[ $OVERLAY == grpc ]]; then
        grpc_smoke_test
        return
    fi
    log "V2 smoke request through $API_URL"
    local host=() zeros body auth
    if [[ $OVERLAY == knative ]]; then
        host=(-H "Host: $(predictor_host)")
    fi
    zeros=$(printf '0,%.0s' $(seq 262))0
    # /infer needs the bearer token: passed in a header file so that it is never printed
    auth=$(mktemp)
    # shellcheck disable=SC2064  # expand now: the file of this call
    trap "rm -f '$auth'" RETURN
    if [[ $DRY_RUN -eq 0 ]]; then
        printf 'Authorization: Bearer %s\n' "$(read_api_token)" >"$auth"
    fi
    body='{"id":"smoke","inputs":[{"name":"input-0","shape":[1,263],"datatype":"FP32","data":['"$zeros"']}]}'
    run curl -fsS --retry 5 --retry-all-errors --max-time 10 "${host[@]}" "$API_URL/v2/models/$BENTO/ready"
    run curl -fsS --max-time 10 "${host[@]}" -H "@$auth" -H 'Content-Type: application/json' \
        -d "$body" "$API_URL/v2/models/$BENTO/infer"
    echo
}

# The same V2 requests over gRPC through Kourier (overlay grpc: the route carries gRPC only): ServerReady,
# ModelReady and ModelInfer with tritonclient, the :authority set to the predictor's host; the token in a file.
GRPC_SMOKE='
import sys
import numpy as np
import tritonclient.grpc as grpcclient
target, authority, token_file, model = sys.argv[1:5]
client = grpcclient.InferenceServerClient(target, channel_args=[("grpc.default_authority", authority)])
assert client.is_server_ready() and client.is_model_ready(model), "the server or the model is not ready"
row = grpcclient.InferInput("input-0", [1, 263], "FP32")
row.set_data_from_numpy(np.zeros((1, 263), dtype=np.float32))
token = open(token_file).read().strip()
print(client.infer(model, [row], headers={"authorization": "Bearer " + token}).get_response())
'

grpc_smoke_test() {
    local target=${API_URL#*://} token
    log "V2 gRPC smoke request through $target"
    token=$(mktemp)
    # shellcheck disable=SC2064  # expand now: the file of this call
    trap "rm -f '$token'" RETURN
    if [[ $DRY_RUN -eq 0 ]]; then
        read_api_token >"$token"
    fi
    run "$PYTHON" -c "$GRPC_SMOKE" "$target" "$(predictor_host)" "$token" "$BENTO"
}

cmd_deploy() {
    local tag
    tag=$(base_tag)
    check_prerequisites
    enable_addons
    install_cert_manager
    if [[ $OVERLAY != standard ]]; then
        install_knative  # knative and grpc
    fi
    install_kserve
    install_monitoring
    run make -C "$ROOT" import  # the champion from MLflow into the BentoML store (stamped)
    build_and_push "$tag"
    ensure_api_token
    ensure_prediction_log
    apply_monitoring  # before the predictor: scraped from its first pod on
    log "applying kserve/overlays/$OVERLAY"
    kubectl_ apply -k "$KSERVE_DIR/overlays/$OVERLAY"
    wait_ready
    smoke_test
}

cmd_canary() {
    [[ -n $TAG ]] || die "canary needs --tag NEW (a new Bento version, e.g. 0.2.0)"
    [[ $TAG != "$(base_tag)" ]] || die "--tag $TAG is the running tag; a new champion needs a new tag"
    [[ $OVERLAY == knative ]] || die "canary rollouts need the knative overlay (traffic split by Knative revisions)"
    check_prerequisites
    log "the new champion in MLflow"
    if [[ -n $MODEL_VERSION ]]; then
        run "$READMISSION_CLI" promote "$MODEL_VERSION"
    elif [[ $TRAIN -eq 1 ]]; then
        run "$READMISSION_CLI" train  # champion only if it beats the current one (see README.md)
    fi
    run "$READMISSION_CLI" import
    build_and_push "$TAG"
    ensure_api_token
    log "canary: $TAG on $CANARY_PERCENT% of the traffic"
    apply_with_tag canary "$TAG"
    wait_ready
    smoke_test
    log "watch it (Grafana on :30030, kubectl get isvc $ISVC -n $NAMESPACE), then: deploy.sh promote --tag $TAG, or rollback"
}

cmd_promote() {
    check_prerequisites
    if [[ -z $TAG ]]; then
        [[ $DRY_RUN -eq 0 ]] || die "promote --dry-run needs --tag NEW"
        local image
        image=$("${KUBECTL[@]}" get "inferenceservice/$ISVC" -n "$NAMESPACE" \
            -o 'jsonpath={.spec.predictor.containers[0].image}')
        TAG=${image##*:}
    fi
    log "promoting $TAG: the tag in kserve/base, 100% of the traffic"
    run sed -i "s/^\( *newTag: \).*/\1\"$TAG\"/" "$BASE_KUSTOMIZATION"
    kubectl_ apply -k "$KSERVE_DIR/overlays/$OVERLAY"  # no canaryTrafficPercent: the latest revision takes all
    wait_ready
    smoke_test
    log "commit kserve/base/kustomization.yaml: the released tag is now $TAG"
}

cmd_rollback() {
    check_prerequisites
    log "rolling back to $(base_tag) (the tag in kserve/base) at 100%"
    kubectl_ apply -k "$KSERVE_DIR/overlays/$OVERLAY"
    wait_ready
    smoke_test
}

# The configuration of the whole stack, as applied objects without their cluster state. Secrets are
# left out on purpose: they are kept outside the cluster and re-created by hand.
BACKUP_KINDS="inferenceservices.serving.kserve.io,deployments,statefulsets,services,configmaps,serviceaccounts"
BACKUP_KINDS="$BACKUP_KINDS,poddisruptionbudgets,networkpolicies,horizontalpodautoscalers,persistentvolumeclaims"

cmd_backup() {
    check_prerequisites
    local dir=${BACKUP_DIR:-$ROOT/backups/$(date +%Y%m%d-%H%M%S)} ns
    log "backing up the configuration into $dir"
    run mkdir -p "$dir"
    for ns in "$NAMESPACE" loadtest observability; do
        if [[ $DRY_RUN -eq 1 ]]; then
            note "${KUBECTL[*]} get $BACKUP_KINDS -n $ns -o json | clean > $dir/$ns.json"
            continue
        fi
        "${KUBECTL[@]}" get "$BACKUP_KINDS" -n "$ns" -o json | clean_for_restore >"$dir/$ns.json"
    done
    for ns in knative-serving kserve; do
        if [[ $DRY_RUN -eq 1 ]]; then
            note "${KUBECTL[*]} get configmaps -n $ns -o json | clean > $dir/$ns-config.json"
            continue
        fi
        "${KUBECTL[@]}" get configmaps -n "$ns" -o json | clean_for_restore >"$dir/$ns-config.json"
    done
    run cp "$BASE_KUSTOMIZATION" "$dir/kustomization.yaml"
}

# Drop what the cluster owns (status, ids, generated names) and what controllers create themselves
# (KServe's and Knative's children of the InferenceService, kube-root-ca.crt).
clean_for_restore() {
    python3 -c '
import json, sys
items = []
for item in json.load(sys.stdin)["items"]:
    meta = item["metadata"]
    owned = any(ref.get("controller") for ref in meta.get("ownerReferences", []))
    if owned or meta["name"] == "kube-root-ca.crt":
        continue
    item.pop("status", None)
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "ownerReferences"):
        meta.pop(key, None)
    meta.get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if item["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs"):
            item["spec"].pop(key, None)
    items.append(item)
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, indent=1)'
}

cmd_restore() {
    [[ -n $BACKUP_DIR ]] || die "restore needs --dir DIR (a folder written by deploy.sh backup)"
    check_prerequisites
    [[ $DRY_RUN -eq 1 || -d $BACKUP_DIR ]] || die "no backup in $BACKUP_DIR"
    log "restoring the configuration from $BACKUP_DIR"
    ensure_api_token  # Secrets are not in backups
    ensure_prediction_log
    local file
    for file in knative-serving-config kserve-config "$NAMESPACE" loadtest observability; do
        if [[ $DRY_RUN -eq 1 || -s "$BACKUP_DIR/$file.json" ]]; then
            kubectl_ apply --server-side --force-conflicts -f "$BACKUP_DIR/$file.json"
        fi
    done
    run cp "$BACKUP_DIR/kustomization.yaml" "$BASE_KUSTOMIZATION"
    wait_ready
}

main() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            deploy | canary | promote | rollback | backup | restore) COMMAND=$1 ;;
            --dry-run) DRY_RUN=1 ;;
            --overlay)
                OVERLAY=${2:?--overlay needs knative, standard or grpc}
                shift
                ;;
            --overlay=*) OVERLAY=${1#*=} ;;
            --tag)
                TAG=${2:?--tag needs a value}
                shift
                ;;
            --model-version)
                MODEL_VERSION=${2:?--model-version needs a registered version}
                shift
                ;;
            --no-train) TRAIN=0 ;;
            --monitoring)
                MONITORING=${2:?--monitoring needs none, operator or standalone}
                shift
                ;;
            --monitoring=*) MONITORING=${1#*=} ;;
            --alert-webhooks)
                ALERT_WEBHOOKS=${2:?--alert-webhooks needs a file of key=URL lines}
                shift
                ;;
            --dir)
                BACKUP_DIR=${2:?--dir needs a folder}
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown argument '$1' (--help)" ;;
        esac
        shift
    done
    [[ $OVERLAY =~ ^(knative|standard|grpc)$ ]] || die "--overlay is knative, standard or grpc, not '$OVERLAY'"
    [[ $MONITORING =~ ^(none|operator|standalone)$ ]] || die "--monitoring is none, operator or standalone, not '$MONITORING'"
    [[ $MONITORING == none || $COMMAND == deploy ]] || die "--monitoring goes with deploy"
    [[ -z $ALERT_WEBHOOKS || $MONITORING == operator ]] || die "--alert-webhooks goes with --monitoring operator"
    [[ -z $TAG || $TAG =~ ^[a-z0-9][a-z0-9._-]{0,127}$ ]] || die "--tag '$TAG' is not a valid Bento version"
    "cmd_$COMMAND"
}

main "$@"
