#!/usr/bin/env python3
"""What scripts/check-kubernetes.sh checks beyond the Kubernetes schemas.

Usage (from the repository root, with .venv-k8s's python, which has PyYAML and jsonschema):
    check-kubernetes-policy.py OUTDIR NAME=RENDERED.yaml ...

Each RENDERED.yaml is the output of `kubectl kustomize` for one kustomization of
deploy/kubernetes. For each, this script
  * checks every pod template against the deployment's security rules (non-root 65532,
    read-only root filesystem, no privilege escalation, all capabilities dropped,
    RuntimeDefault seccomp, no service account token, resource requests and limits,
    Secrets 0400 and mounted file by file), so that an edit cannot drop one silently;
  * checks that the job's size agrees everywhere (the coordinator's --servers/--workers,
    the servers' replicas, the workers' completions and parallelism, and, where the
    certificates come from cert-manager, one Certificate per rank with the rank's URI);
  * checks the flags against the mounts: every file a flag names (--config, --ca, --cert,
    --key, --sign-key, --identity, --trust, --recipients-file) is mounted at that path,
    the private keys from a Secret; --out and --checkpoints lie on a writable
    PersistentVolumeClaim, so a restarted pod finds them;
  * checks the checkpoint flags agree: a coordinator with --checkpoint-every has
    --sign-key and recipients, and every server --checkpoints and --sign-key; a
    coordinator with --resume has --checkpoint-every, --identity and --trust, and every
    server --identity and --trust;
  * checks the network policies (a default deny; allows only to the job's pods, ports
    7070/7071, and DNS);
  * validates the cert-manager.io resources against the subset of cert-manager's
    schema that these manifests use (strict: a field outside it fails, to be added here
    knowingly), since kubernetes-validate has schemas for Kubernetes' own kinds only;
  * writes every other resource to OUTDIR/NAME.yaml, for kubernetes-validate.
It also checks that every YAML file under deploy/kubernetes is used by a kustomization,
so none escapes validation. Exits 1 with one line per problem.
"""

import os
import re
import sys

import jsonschema
import yaml

ROOT = "deploy/kubernetes"
UID = 65532
SECRET_MODE = 0o400
WORKLOAD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
# The ports ward listens on (coordinator, server) and DNS.
JOB_PORTS = {7070, 7071}
DNS_PORT = 53

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


# --- cert-manager.io/v1: the fields these manifests use -----------------------------------

_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
_USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment",
    "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
    "decipher only", "any", "server auth", "client auth", "code signing",
    "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
    "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
]
_METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _resource(kind, spec):
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


CERT_MANAGER_SCHEMAS = {
    "Certificate": _resource("Certificate", {
        "type": "object",
        "additionalProperties": False,
        "required": ["secretName", "issuerRef"],
        "properties": {
            "secretName": {"type": "string", "minLength": 1},
            "commonName": {"type": "string", "maxLength": 64},
            "duration": _DURATION,
            "renewBefore": _DURATION,
            "isCA": {"type": "boolean"},
            "uris": _STRINGS,
            "dnsNames": _STRINGS,
            "usages": {"type": "array", "items": {"enum": _USAGES}, "minItems": 1},
            "privateKey": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                    "encoding": {"enum": ["PKCS1", "PKCS8"]},
                    "rotationPolicy": {"enum": ["Never", "Always"]},
                },
            },
            "issuerRef": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                    "group": {"const": "cert-manager.io"},
                },
            },
        },
    }),
    "Issuer": _resource("Issuer", {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "selfSigned": {"type": "object", "additionalProperties": False},
            "ca": {
                "type": "object",
                "additionalProperties": False,
                "required": ["secretName"],
                "properties": {"secretName": {"type": "string", "minLength": 1}},
            },
        },
    }),
}


def check_cert_manager(where, doc):
    schema = CERT_MANAGER_SCHEMAS.get(doc.get("kind"))
    if schema is None:
        problem(where, f"no schema here for cert-manager kind {doc.get('kind')!r}")
        return
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in error.path) or "(top)"
        problem(where, f"{path}: {error.message}")


# --- pod templates ----------------------------------------------------------------------

def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return (spec.get("template") or {}).get("spec")


def check_pod(where, ps, claims=()):
    """CLAIMS: the names of a StatefulSet's volumeClaimTemplates, volumes too."""
    psc = ps.get("securityContext") or {}
    if ps.get("automountServiceAccountToken") is not False:
        problem(where, "automountServiceAccountToken must be false")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if ps.get(host):
            problem(where, f"{host} must not be set")
    if psc.get("runAsNonRoot") is not True:
        problem(where, "pod securityContext.runAsNonRoot must be true")
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        if psc.get(field) != UID:
            problem(where, f"pod securityContext.{field} must be {UID}")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problem(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")

    volumes = {name: {"persistentVolumeClaim": {}} for name in claims}
    for v in ps.get("volumes") or []:
        volumes[v["name"]] = v
        if "hostPath" in v:
            problem(where, f"volume {v['name']}: hostPath is not allowed")
        secret_modes = []
        if "secret" in v:
            secret_modes.append(("defaultMode", (v["secret"] or {}).get("defaultMode")))
            for item in (v["secret"] or {}).get("items") or []:
                if "mode" in item:
                    secret_modes.append((f"items {item.get('key')} mode", item["mode"]))
        if "projected" in v:
            projected = v["projected"] or {}
            if any("secret" in s for s in projected.get("sources") or []):
                secret_modes.append(("defaultMode", projected.get("defaultMode")))
            for s in projected.get("sources") or []:
                for item in (s.get("secret") or {}).get("items") or []:
                    if "mode" in item:
                        secret_modes.append((f"items {item.get('key')} mode", item["mode"]))
        for what, mode in secret_modes:
            if mode != SECRET_MODE:
                shown = "unset" if mode is None else oct(mode)
                problem(where, f"volume {v['name']}: {what} must be 0400 (is {shown})")

    containers = [("container", c) for c in ps.get("containers") or []]
    containers += [("initContainer", c) for c in ps.get("initContainers") or []]
    if not containers:
        problem(where, "no containers")
    for role, c in containers:
        at = f"{where} {role} {c.get('name')}"
        csc = c.get("securityContext") or {}
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            problem(at, "runAsNonRoot must be true")
        if csc.get("runAsUser", psc.get("runAsUser")) in (None, 0):
            problem(at, "must run as a non-zero runAsUser")
        if csc.get("readOnlyRootFilesystem") is not True:
            problem(at, "securityContext.readOnlyRootFilesystem must be true")
        if csc.get("allowPrivilegeEscalation") is not False:
            problem(at, "securityContext.allowPrivilegeEscalation must be false")
        if csc.get("privileged"):
            problem(at, "must not be privileged")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problem(at, "securityContext.capabilities.drop must hold ALL")
        if caps.get("add"):
            problem(at, "securityContext.capabilities.add must be empty")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            problem(at, "seccompProfile must be RuntimeDefault")
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    problem(at, f"resources.{kind}.{resource} must be set")
        image = c.get("image") or ""
        if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            problem(at, f"image {image!r} must name a tag other than latest, or a digest")
        for m in c.get("volumeMounts") or []:
            v = volumes.get(m.get("name"))
            if v is None:
                problem(at, f"mount {m.get('mountPath')}: no volume {m.get('name')!r}")
                continue
            if any(k in v for k in ("secret", "configMap", "projected")):
                # ward opens these files without following links; a whole Secret or
                # ConfigMap volume shows each file as a link into ..data/.
                if not (m.get("subPath") or m.get("subPathExpr")):
                    problem(at, f"mount {m.get('mountPath')}: a Secret or ConfigMap is "
                                "mounted file by file (subPath or subPathExpr)")
                if m.get("readOnly") is not True:
                    problem(at, f"mount {m.get('mountPath')}: must be readOnly")
    return volumes


# --- the job's size, and the certificates per rank ---------------------------------------

def flags(args, name):
    """Every value of --NAME in ARGS (--NAME=VALUE or --NAME VALUE)."""
    prefix = f"--{name}="
    values = []
    for i, a in enumerate(args):
        if a.startswith(prefix):
            values.append(a[len(prefix):])
        elif a == f"--{name}" and i + 1 < len(args):
            values.append(args[i + 1])
    return values


def flag(args, name):
    values = flags(args, name)
    return values[0] if values else None


def rank_files(volume, role):
    """{rank: secret name} for the ROLE-I.pem paths of a projected tls volume."""
    ranks = {}
    for s in (volume.get("projected") or {}).get("sources") or []:
        secret = s.get("secret") or {}
        for item in secret.get("items") or []:
            m = re.fullmatch(rf"{role}-(\d+)\.pem", item.get("path", ""))
            if m:
                ranks[int(m.group(1))] = secret.get("name")
    return ranks


def check_job(name, docs, workloads):
    by_component = {}
    for doc, ps, volumes in workloads:
        component = ((doc.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")
        by_component.setdefault(component, []).append((doc, ps, volumes))
    for component, kind in (("coordinator", "StatefulSet"), ("server", "StatefulSet"), ("worker", "Job")):
        found = [d for d, _, _ in by_component.get(component, []) if d.get("kind") == kind]
        if len(found) != 1:
            problem(name, f"expected one {kind} for the {component}, found {len(found)}")
            return
    coordinator, c_ps, c_volumes = by_component["coordinator"][0]
    server, s_ps, s_volumes = by_component["server"][0]
    worker, w_ps, w_volumes = by_component["worker"][0]
    args = (c_ps["containers"][0].get("args") or [])
    try:
        servers = int(flag(args, "servers"))
        workers = int(flag(args, "workers"))
    except (TypeError, ValueError):
        problem(name, "the coordinator's args must give --servers and --workers")
        return
    if coordinator["spec"].get("replicas") != 1:
        problem(name, "the coordinator StatefulSet must have replicas: 1")
    if server["spec"].get("replicas") != servers:
        problem(name, f"ward-server replicas ({server['spec'].get('replicas')}) != coordinator --servers ({servers})")
    wspec = worker["spec"]
    if wspec.get("completionMode") != "Indexed":
        problem(name, "the worker Job must be completionMode: Indexed")
    for field in ("completions", "parallelism"):
        if wspec.get(field) != workers:
            problem(name, f"ward-worker {field} ({wspec.get(field)}) != coordinator --workers ({workers})")

    # Where the certificates are cert-manager's: one Certificate per rank, and the file
    # of rank I comes from the Secret of the Certificate whose URI ends in /ROLE/I.
    uri_of_secret = {}
    for doc in docs:
        if doc.get("apiVersion") == "cert-manager.io/v1" and doc.get("kind") == "Certificate":
            spec = doc.get("spec") or {}
            uris = spec.get("uris") or []
            if not spec.get("isCA"):
                if len(uris) != 1 or not re.fullmatch(
                        r"spiffe://[^/]+/[^/]+/(coordinator|server/\d+|worker/\d+)", uris[0]):
                    problem(name, f"Certificate {doc['metadata']['name']}: one URI SAN "
                                  "spiffe://CLUSTER/JOB/coordinator|server/I|worker/I")
                    continue
                uri_of_secret[spec.get("secretName")] = uris[0]
    for role, volumes, count in (("server", s_volumes, servers), ("worker", w_volumes, workers)):
        tls = volumes.get("tls") or {}
        if "projected" not in tls:
            continue
        ranks = rank_files(tls, role)
        if sorted(ranks) != list(range(count)):
            problem(name, f"the {role}s' tls volume has ranks {sorted(ranks)}, expected 0..{count - 1}")
        for rank, secret in ranks.items():
            uri = uri_of_secret.get(secret)
            if uri is None:
                problem(name, f"{role}-{rank}.pem: no Certificate writes the Secret {secret}")
            elif not uri.endswith(f"/{role}/{rank}"):
                problem(name, f"{role}-{rank}.pem comes from {secret}, whose URI is {uri}")

    check_checkpoints(name, c_ps["containers"][0].get("args") or [],
                      s_ps["containers"][0].get("args") or [])


# --- flags, mounts, and the checkpoint flags ---------------------------------------------

# Flags naming a file ward opens, and those of them that are private keys.
FILE_FLAGS = ("config", "ca", "cert", "key", "sign-key", "identity", "trust", "recipients-file")
KEY_FLAGS = ("key", "sign-key", "identity")
# Flags naming a directory ward writes and must find again after a restart.
STATE_FLAGS = ("out", "checkpoints")


def from_secret(volume):
    if "secret" in volume:
        return True
    sources = (volume.get("projected") or {}).get("sources") or []
    return bool(sources) and all("secret" in s for s in sources)


def check_flag_files(at, c, volumes):
    """The files and directories C's flags name against C's mounts."""
    args = c.get("args") or []
    mounts = c.get("volumeMounts") or []
    by_path = {m.get("mountPath"): m for m in mounts}
    for name in FILE_FLAGS:
        for value in flags(args, name):
            m = by_path.get(value)
            if m is None:
                problem(at, f"--{name}={value}: no file is mounted there")
            elif name in KEY_FLAGS and not from_secret(volumes.get(m.get("name")) or {}):
                problem(at, f"--{name}={value}: a private key must come from a Secret")
    for name in STATE_FLAGS:
        for value in flags(args, name):
            under = [m for m in mounts
                     if value == m.get("mountPath")
                     or value.startswith(m.get("mountPath", "").rstrip("/") + "/")]
            m = max(under, key=lambda m: len(m.get("mountPath")), default=None)
            if (m is None or m.get("readOnly")
                    or "persistentVolumeClaim" not in (volumes.get(m.get("name")) or {})):
                problem(at, f"--{name}={value}: not on a writable PersistentVolumeClaim "
                            "(a restarted pod would not find it)")


def check_checkpoints(name, coordinator, server):
    """The checkpoint flags of the coordinator's and the servers' args, as ward requires
    them (`ward cluster coordinator` and `server` refuse to run, or to resume, without)."""
    def need(who, args, wanted, why):
        for f in wanted:
            if not flags(args, f):
                problem(name, f"{who} needs --{f}: {why}")

    every = flag(coordinator, "checkpoint-every")
    resume = "--resume" in coordinator
    if every is None:
        if flags(coordinator, "recipient") or flags(coordinator, "recipients-file"):
            problem(name, "the coordinator has recipients but no --checkpoint-every")
        if resume:
            problem(name, "the coordinator's --resume needs --checkpoint-every")
        return
    if flag(coordinator, "mode") == "async":
        problem(name, "checkpoints are written in sync mode only: no --mode=async")
    need("the coordinator", coordinator, ["sign-key"], "checkpoints are signed")
    if not (flags(coordinator, "recipient") or flags(coordinator, "recipients-file")):
        problem(name, "the coordinator needs --recipient or --recipients-file: checkpoints are encrypted")
    need("every server", server, ["checkpoints", "sign-key"], "the job checkpoints")
    if resume:
        need("the coordinator", coordinator, ["identity", "trust"], "--resume")
        need("every server", server, ["identity", "trust"], "the coordinator resumes the job")


# --- network policies -------------------------------------------------------------------

def check_network(name, docs):
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    deny = [p for p in policies
            if (p["spec"].get("podSelector") or {}) == {}
            and sorted(p["spec"].get("policyTypes") or []) == ["Egress", "Ingress"]
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    if not deny:
        problem(name, "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for p in policies:
        at = f"{name} NetworkPolicy {p['metadata']['name']}"
        for direction, peers, allowed in (("ingress", "from", JOB_PORTS), ("egress", "to", JOB_PORTS | {DNS_PORT})):
            for rule in p["spec"].get(direction) or []:
                if not rule.get(peers):
                    problem(at, f"an {direction} rule without '{peers}' admits every peer")
                if not rule.get("ports"):
                    problem(at, f"an {direction} rule without ports admits every port")
                for port in rule.get("ports") or []:
                    if port.get("port") not in allowed:
                        problem(at, f"{direction} port {port.get('port')} is not one of {sorted(allowed)}")
                for peer in rule.get(peers) or []:
                    if "ipBlock" in peer:
                        problem(at, f"{direction} to an ipBlock is not expected")


# --- every file used --------------------------------------------------------------------

def check_files_used():
    used = set()
    for dirpath, _, files in os.walk(ROOT):
        if "kustomization.yaml" not in files:
            continue
        with open(os.path.join(dirpath, "kustomization.yaml")) as f:
            k = yaml.safe_load(f) or {}
        for entry in k.get("resources") or []:
            used.add(os.path.normpath(os.path.join(dirpath, entry)))
        for patch in k.get("patches") or []:
            if "path" in patch:
                used.add(os.path.normpath(os.path.join(dirpath, patch["path"])))
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            path = os.path.normpath(os.path.join(dirpath, f))
            if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml" and path not in used:
                problem(path, "not a resource or patch of any kustomization: it would escape validation")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    outdir = sys.argv[1]
    pods = 0
    for spec in sys.argv[2:]:
        name, _, path = spec.partition("=")
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        builtin = []
        workloads = []
        for doc in docs:
            where = f"{name}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            if str(doc.get("apiVersion", "")).startswith("cert-manager.io/"):
                check_cert_manager(where, doc)
                continue
            builtin.append(doc)
            if doc.get("kind") in WORKLOAD_KINDS:
                ps = pod_spec(doc)
                if not ps:
                    problem(where, "no pod template")
                    continue
                pods += 1
                claims = [((t.get("metadata") or {}).get("name"))
                          for t in (doc.get("spec") or {}).get("volumeClaimTemplates") or []]
                volumes = check_pod(where, ps, claims)
                for c in ps.get("containers") or []:
                    check_flag_files(f"{where} container {c.get('name')}", c, volumes)
                workloads.append((doc, ps, volumes))
        check_job(name, docs, workloads)
        check_network(name, docs)
        with open(os.path.join(outdir, f"{name}.yaml"), "w") as f:
            yaml.safe_dump_all(builtin, f, sort_keys=False)
    check_files_used()
    if problems:
        for p in problems:
            print(f"FAIL {p}")
        print(f"policy: {len(problems)} problem(s)")
        return 1
    print(f"policy: {pods} pod templates in {len(sys.argv) - 2} kustomizations: non-root {UID}, "
          "read-only root, no escalation, capabilities dropped, RuntimeDefault seccomp, no token, "
          "requests and limits, Secrets 0400 mounted file by file; flagged files mounted; job size, "
          "ranks, checkpoint flags and network policies consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
