"""Tests of what ships: the built Bento, the OCI image (buildah/podman as root, the package index), the Kubernetes
and KServe manifests (kustomize, schemas, shellcheck), the pod hardening policy and the supply chain (secrets,
the lock and its exports, the vulnerability audit).
"""
