#!/usr/bin/env python3
"""The chart and example checks that are not helm or kubernetes-validate themselves.

Run by scripts/chart-check.sh (with .venv's Python: PyYAML, jsonschema). Subcommands:

  crds                   charts/portolan/crds/ holds exactly the files of crds/, byte for byte
  split FILE OUT IGNORED  copy the Kubernetes objects of FILE into OUT, leaving out the kinds
                         kubernetes-validate has no schema for (cert-manager, Prometheus
                         Operator, portolan.dev), which are written to IGNORED instead
  assert-render CASE FILE  the rendered chart keeps the flag/RBAC contract (docs/helm-values.md)
  examples               every portolan.dev object under examples/ is valid against the
                         openAPIV3Schema in crds/; a broken copy of each kind is rejected
  patched-route OUT      examples/kubernetes/canary-50-50.patch applied to canary-90-10.yaml
  bootstraps BIN [--write]  the Envoy bootstrap ConfigMaps in examples/kubernetes/ equal what
                         `portolan bootstrap` prints for the command in their annotation
  values-doc             every key of values.yaml is in docs/helm-values.md
  dockerfile             the Dockerfile's rules: multi-stage, non-root, binary only, no remote ADD
"""

import copy
import glob
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "portolan")
# Kinds kubernetes-validate does not know (their CRDs are not Kubernetes' own).
EXTERNAL_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
BOOTSTRAP_ANNOTATION = "portolan.dev/bootstrap-args"


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# === crds ===


def check_crds():
    src = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "crds", "*.yaml")))
    dst = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CHART, "crds", "*.yaml")))
    if not src:
        fail("crds/ holds no CRD")
    if src != dst:
        fail(f"charts/portolan/crds/ has {dst}, crds/ has {src}: run scripts/sync-chart-crds.sh")
    for name in src:
        with open(os.path.join(ROOT, "crds", name), "rb") as a, open(
            os.path.join(CHART, "crds", name), "rb"
        ) as b:
            if a.read() != b.read():
                fail(f"charts/portolan/crds/{name} differs from crds/{name}: run scripts/sync-chart-crds.sh")
    print(f"crds: {len(src)} CRDs in the chart equal crds/")


# === split ===


def split(path, out, ignored):
    kept, skipped = [], []
    for doc in load_all(path):
        key = (doc.get("apiVersion"), doc.get("kind"))
        group = str(doc.get("apiVersion", "")).split("/")[0]
        (skipped if key in EXTERNAL_KINDS or group == "portolan.dev" else kept).append(doc)
    with open(out, "w") as f:
        yaml.safe_dump_all(kept, f, sort_keys=False)
    with open(ignored, "w") as f:
        yaml.safe_dump_all(skipped, f, sort_keys=False)
    names = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in skipped) or "none"
    print(f"{os.path.basename(path)}: {len(kept)} objects for kubernetes-validate; not known to it: {names}")


# === assert-render ===


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name=None):
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    if len(found) != 1:
        fail(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def rule_set(rules):
    """Rules as a set of (group, resource, verb, resourceName) facts."""
    facts = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r["resources"]:
                for v in r["verbs"]:
                    for n in r.get("resourceNames") or [None]:
                        facts.add((g, res, v, n))
    return facts


def expand(group, resources, verbs, names=(None,)):
    return {(group, r, v, n) for r in resources for v in verbs for n in names}


CRS = [
    "trafficroutes", "trafficpolicies", "gateways", "externalservices",
    "peerauthentications", "accesspolicies", "proxyscopes", "requestauthentications",
    "extauthpolicies", "ratelimitpolicies", "envoypatchpolicies",
]
GW = "gateway.networking.k8s.io"
GW_ROUTES = [
    "gateways", "listenersets", "httproutes", "grpcroutes", "tlsroutes", "tcproutes", "udproutes",
    "backendtlspolicies",
]
WATCH_FACTS = (
    expand("", ["services", "secrets", "configmaps", "serviceaccounts"], ["list", "watch"])
    | expand("discovery.k8s.io", ["endpointslices"], ["list", "watch"])
    | expand("portolan.dev", CRS, ["list", "watch"])
    | expand("portolan.dev", [c + "/status" for c in CRS], ["patch"])
    | expand(GW, GW_ROUTES + ["referencegrants"], ["list", "watch"])
    | expand(GW, [c + "/status" for c in GW_ROUTES], ["patch"])
)
# --provision-gateways: what server-side apply of the Gateways' proxies needs, nothing more.
PROVISION_FACTS = (
    expand("", ["configmaps", "services"], ["get", "create", "patch"])
    | expand("apps", ["deployments"], ["get", "create", "patch"])
)
# Cluster-scoped kinds, granted cluster-wide in every mode.
CLUSTER_FACTS = (
    expand(GW, ["gatewayclasses"], ["list", "watch"])
    | expand(GW, ["gatewayclasses/status"], ["patch"])
    | expand("", ["namespaces"], ["list", "watch"])
)


def container_args(deploy):
    return deploy["spec"]["template"]["spec"]["containers"][0]["args"]


def flag(args, name):
    values = [a.split("=", 1)[1] for a in args if a.startswith(name + "=")]
    return values


def assert_common(docs, ns):
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c["args"]
    if args[:2] != ["serve", "--kubernetes"]:
        fail(f"container args start {args[:2]}, want serve --kubernetes")
    for want in ["--xds-address=0.0.0.0:18000", "--http-address=0.0.0.0:18080"]:
        if want not in args:
            fail(f"{want} missing from {args}")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("grpc-xds") != 18000 or ports.get("http-monitoring") != 18080:
        fail(f"container ports {ports}")
    if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
        fail("probes are not /healthz and /readyz")
    if c["livenessProbe"]["httpGet"]["port"] != "http-monitoring":
        fail("liveness probe not on the HTTP port")
    sc, psc = c["securityContext"], pod["securityContext"]
    if not (
        psc.get("runAsNonRoot")
        and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        and sc.get("readOnlyRootFilesystem")
        and sc.get("allowPrivilegeEscalation") is False
        and sc.get("capabilities", {}).get("drop") == ["ALL"]
    ):
        fail(f"security context is not locked down: pod {psc}, container {sc}")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
    if env.get("POD_NAME") != "metadata.name" or env.get("POD_NAMESPACE") != "metadata.namespace":
        fail(f"POD_NAME/POD_NAMESPACE not from the downward API: {env}")
    if not c["resources"].get("requests") or not c["resources"].get("limits"):
        fail("resources need requests and limits")
    svc = one(docs, "Service")
    if svc["spec"]["selector"] != deploy["spec"]["selector"]["matchLabels"]:
        fail("Service selector differs from the Deployment's")
    lease_role = [r for r in by_kind(docs, "Role") if r["metadata"]["namespace"] == ns and not r["metadata"]["name"].endswith("-watch")]
    facts = rule_set(lease_role[0]["rules"]) if lease_role else set()
    if not expand("coordination.k8s.io", ["leases"], ["get", "create", "update"]) <= facts:
        fail("the release-namespace Role does not grant leases")
    return deploy, args, svc, facts


def assert_webhook(docs, args, svc, ns, role_facts, mode):
    vwc = one(docs, "ValidatingWebhookConfiguration")
    hook = vwc["webhooks"][0]
    cc = hook["clientConfig"]["service"]
    if cc["name"] != svc["metadata"]["name"] or cc["namespace"] != ns or cc["path"] != "/validate":
        fail(f"webhook clientConfig {cc} does not point at the Service's /validate")
    if cc["port"] not in [p["port"] for p in svc["spec"]["ports"] if p["name"] == "https-webhook"]:
        fail("webhook port is not the Service's https-webhook port")
    rule = hook["rules"][0]
    if sorted(rule["resources"]) != sorted(CRS) or sorted(rule["operations"]) != ["CREATE", "UPDATE"]:
        fail(f"webhook rules {rule}")
    if hook["sideEffects"] != "None" or hook["admissionReviewVersions"] != ["v1"]:
        fail("webhook sideEffects/admissionReviewVersions")
    if "--webhook-address=0.0.0.0:18443" not in args:
        fail("--webhook-address missing")
    if mode == "selfSigned":
        if "--webhook-self-signed" not in args:
            fail("--webhook-self-signed missing")
        if flag(args, "--webhook-configuration") != [vwc["metadata"]["name"]]:
            fail("--webhook-configuration does not name the rendered ValidatingWebhookConfiguration")
        if flag(args, "--webhook-service") != [svc["metadata"]["name"]]:
            fail("--webhook-service does not name the Service")
        secret = flag(args, "--webhook-secret")
        if not secret or not expand("", ["secrets"], ["get", "update"], secret) <= role_facts:
            fail("the Role does not grant get/update on the webhook Secret by name")
        if ("", "secrets", "create", None) not in role_facts:
            fail("the Role does not grant creating the webhook Secret")
        cr = [c for c in by_kind(docs, "ClusterRole") if c["metadata"]["name"].endswith("-webhook")]
        want = expand(
            "admissionregistration.k8s.io", ["validatingwebhookconfigurations"],
            ["get", "patch"], [vwc["metadata"]["name"]],
        )
        for mwc in by_kind(docs, "MutatingWebhookConfiguration"):
            want |= expand(
                "admissionregistration.k8s.io", ["mutatingwebhookconfigurations"],
                ["get", "patch"], [mwc["metadata"]["name"]],
            )
        if len(cr) != 1 or rule_set(cr[0]["rules"]) != want:
            fail("the webhook ClusterRole must grant exactly its own configuration")
        if "caBundle" in hook["clientConfig"]:
            fail("selfSigned: the chart must leave caBundle to the controller")
    else:
        cert = one(docs, "Certificate")
        inject = vwc["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
        if inject != f"{ns}/{cert['metadata']['name']}":
            fail(f"inject-ca-from {inject} does not name the Certificate")
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        vols = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
        if vols.get("webhook-tls") != cert["spec"]["secretName"]:
            fail("the mounted Secret is not the Certificate's")
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        if flag(args, "--webhook-cert") != [mounts["webhook-tls"] + "/tls.crt"] or flag(args, "--webhook-key") != [mounts["webhook-tls"] + "/tls.key"]:
            fail("--webhook-cert/--webhook-key are not the mounted Secret's files")
        webhook_secret = expand("", ["secrets"], ["get", "update"], [cert["spec"]["secretName"]])
        if "--webhook-self-signed" in args or webhook_secret & role_facts:
            fail("certManager: no self-signed flag and no access to the webhook Secret")
        if any(c["metadata"]["name"].endswith("-webhook") for c in by_kind(docs, "ClusterRole")):
            fail("certManager: no ClusterRole for the webhook configuration")
        svc_host = f"{svc['metadata']['name']}.{ns}.svc"
        if svc_host not in cert["spec"]["dnsNames"]:
            fail(f"the Certificate does not name {svc_host}")


def assert_injection(docs, args, svc, ns, mode):
    """The sidecar injector: a MutatingWebhookConfiguration on the Service's /inject, pods
    only, on CREATE, never in the release's namespace; --inject and its settings; the caBundle
    kept by the controller (--webhook-mutating-configuration) or cert-manager."""
    mwcs = by_kind(docs, "MutatingWebhookConfiguration")
    if not mwcs:
        if any(a.startswith("--inject") for a in args):
            fail("--inject without a MutatingWebhookConfiguration")
        return
    mwc = one(docs, "MutatingWebhookConfiguration")
    if "--inject" not in args:
        fail("a MutatingWebhookConfiguration without --inject")
    for flag_name in ["--inject-proxy-image", "--inject-init-image", "--inject-xds-address", "--inject-proxy-uid"]:
        if len(flag(args, flag_name)) != 1:
            fail(f"{flag_name} missing")
    if ("--xds-token-review" in args) != bool(flag(args, "--inject-xds-ca")):
        fail("--inject-xds-ca (sidecar token identity) goes with --xds-token-review")
    names = sorted(h["name"] for h in mwc["webhooks"])
    if names != ["namespace.inject.portolan.dev", "pod.inject.portolan.dev"]:
        fail(f"injector webhooks {names}")
    for hook in mwc["webhooks"]:
        cc = hook["clientConfig"]["service"]
        if cc["name"] != svc["metadata"]["name"] or cc["namespace"] != ns or cc["path"] != "/inject":
            fail(f"injector clientConfig {cc} does not point at the Service's /inject")
        if cc["port"] not in [p["port"] for p in svc["spec"]["ports"] if p["name"] == "https-webhook"]:
            fail("injector port is not the Service's https-webhook port")
        rule = hook["rules"][0]
        if rule["resources"] != ["pods"] or rule["operations"] != ["CREATE"] or rule["apiGroups"] != [""]:
            fail(f"injector rules {rule}")
        excluded = [e for e in hook["namespaceSelector"]["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name"]
        if not excluded or excluded[0]["operator"] != "NotIn" or ns not in excluded[0]["values"]:
            fail("the injector must exclude the release's namespace")
        if hook["sideEffects"] != "None" or hook["admissionReviewVersions"] != ["v1"]:
            fail("injector sideEffects/admissionReviewVersions")
    if mode == "selfSigned":
        if flag(args, "--webhook-mutating-configuration") != [mwc["metadata"]["name"]]:
            fail("--webhook-mutating-configuration does not name the rendered MutatingWebhookConfiguration")
        if any("caBundle" in h["clientConfig"] for h in mwc["webhooks"]):
            fail("selfSigned: the chart must leave the injector's caBundle to the controller")
    else:
        cert = one(docs, "Certificate")
        inject = mwc["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
        if inject != f"{ns}/{cert['metadata']['name']}":
            fail(f"injector inject-ca-from {inject} does not name the Certificate")


def assert_render(case, path):
    docs = load_all(path)
    ns = one(docs, "Deployment")["metadata"]["namespace"]
    deploy, args, svc, role_facts = assert_common(docs, ns)
    watch = flag(args, "--watch-namespace")
    binding_roles = {b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding")}
    provision = flag(args, "--provision-gateways") == ["true"]
    WATCH = WATCH_FACTS | (PROVISION_FACTS if provision else set())
    if provision and "--xds-token-review" in args:
        WATCH |= expand("", ["serviceaccounts"], ["get", "create", "patch"])
    if provision and not flag(args, "--gateway-xds-address"):
        fail("--provision-gateways without --gateway-xds-address")
    cluster = [c for c in by_kind(docs, "ClusterRole") if rule_set(c["rules"]) == CLUSTER_FACTS]
    if len(cluster) != 1 or cluster[0]["metadata"]["name"] not in binding_roles:
        fail("one bound ClusterRole with exactly the cluster-scoped kinds' rules expected")
    if watch:
        roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-watch")]
        if sorted(r["metadata"]["namespace"] for r in roles) != sorted(watch):
            fail(f"watch Roles in {[r['metadata']['namespace'] for r in roles]}, want {watch}")
        for r in roles:
            if rule_set(r["rules"]) != WATCH:
                fail(f"Role {r['metadata']['namespace']}/{r['metadata']['name']} differs from the contract")
        if any(rule_set(c["rules"]) & WATCH for c in by_kind(docs, "ClusterRole")):
            fail("watchNamespaces: watched objects must not be granted cluster-wide")
        sel = one(docs, "ValidatingWebhookConfiguration")["webhooks"][0].get("namespaceSelector")
        if sel and sorted(sel["matchExpressions"][0]["values"]) != sorted(watch):
            fail("webhook namespaceSelector differs from watchNamespaces")
    else:
        crs = [c for c in by_kind(docs, "ClusterRole") if rule_set(c["rules"]) == WATCH]
        if len(crs) != 1 or crs[0]["metadata"]["name"] not in binding_roles:
            fail("one bound ClusterRole with exactly the contract's watch rules expected")
    for r in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in r["rules"]:
            if "*" in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", []):
                fail(f"{r['kind']} {r['metadata']['name']} uses a wildcard")
    webhooks = by_kind(docs, "ValidatingWebhookConfiguration")
    if case == "disabled":
        if webhooks or any(a.startswith(("--webhook", "--inject")) for a in args):
            fail("webhook disabled, yet rendered")
    else:
        mode = "certManager" if by_kind(docs, "Certificate") else "selfSigned"
        assert_webhook(docs, args, svc, ns, role_facts, mode)
        assert_injection(docs, args, svc, ns, mode)
    for sm in by_kind(docs, "ServiceMonitor"):
        # Not known to kubernetes-validate: check that it scrapes the Service's metrics port.
        labels = svc["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in sm["spec"]["selector"]["matchLabels"].items()):
            fail("the ServiceMonitor's selector does not match the Service")
        ep = sm["spec"]["endpoints"][0]
        if ep["port"] != "http-monitoring" or ep["path"] != "/metrics":
            fail(f"the ServiceMonitor scrapes {ep}, not http-monitoring /metrics")
    ca_secret = flag(args, "--ca-secret")
    if len(ca_secret) != 1 or not expand("", ["secrets"], ["get", "update"], ca_secret) <= role_facts:
        fail("--ca-secret must name one Secret the release-namespace Role grants get/update on by name")
    if ("", "secrets", "create", None) not in role_facts:
        fail("the Role does not grant creating the mesh CA Secret")
    if any(f[1] == "secrets" and f[2] in ("get", "update") and f[3] is None for f in role_facts):
        fail("Secrets get/update must be limited by name in the release namespace")
    if not flag(args, "--ca-propagation"):
        fail("--ca-propagation missing")
    if case == "token-review" and (
        ca_secret != ["mesh-ca"] or flag(args, "--ca-rotation-grace") != ["12h"]
        or "--enable-ca-rotation" not in args
    ):
        fail("identity.ca values do not reach --ca-secret/--ca-rotation-grace/--enable-ca-rotation")
    if case != "token-review" and ("--enable-ca-rotation" in args or flag(args, "--ca-rotation-grace")):
        fail("the CA rotation endpoint and grace are off by default")
    review = expand("authentication.k8s.io", ["tokenreviews"], ["create"])
    granted = [c for c in by_kind(docs, "ClusterRole") if rule_set(c["rules"]) & review]
    if "--xds-token-review" in args:
        if len(granted) != 1 or rule_set(granted[0]["rules"]) != review or granted[0]["metadata"]["name"] not in binding_roles:
            fail("--xds-token-review needs one bound ClusterRole granting exactly tokenreviews create")
        if not flag(args, "--xds-tls-cert"):
            fail("--xds-token-review without --xds-tls-cert")
    elif granted:
        fail("tokenreviews granted without --xds-token-review")
    assert_crd_hook(case, docs)
    replicas = deploy["spec"]["replicas"]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if replicas > 1 and not pdbs:
        fail("several replicas and no PodDisruptionBudget")
    if replicas == 1 and pdbs:
        fail("one replica with a PodDisruptionBudget would block node drains")
    if replicas > 1 and flag(args, "--leader-election") != ["true"]:
        fail("several replicas need leader election")
    print(f"assert-render {case}: {len(docs)} objects keep the contract")


def assert_crd_hook(case, docs):
    """gatewayAPI.crds.install: a hook Job applies the upstream manifest before install and
    upgrade, with a ServiceAccount of its own granted CRDs only; nothing of it otherwise."""
    jobs = by_kind(docs, "Job")
    if case != "gateway-api-crds":
        if jobs:
            fail("a Job rendered without gatewayAPI.crds.install")
        return
    if len(jobs) != 1:
        fail(f"{len(jobs)} Jobs, want the CRD hook's")
    job = jobs[0]
    hook = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    if sorted(hook.split(",")) != ["pre-install", "pre-upgrade"]:
        fail(f"CRD Job hook {hook!r}")
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    if args[:2] != ["apply", "--server-side"] or not args[-1].startswith("https://github.com/kubernetes-sigs/gateway-api/releases/download/"):
        fail(f"CRD Job args {args}")
    sa = pod["serviceAccountName"]
    bindings = [b for b in by_kind(docs, "ClusterRoleBinding") if any(s["name"] == sa for s in b["subjects"])]
    if len(bindings) != 1:
        fail(f"the CRD Job's ServiceAccount {sa} is bound {len(bindings)} times")
    role = [c for c in by_kind(docs, "ClusterRole") if c["metadata"]["name"] == bindings[0]["roleRef"]["name"]]
    if len(role) != 1 or rule_set(role[0]["rules"]) != expand("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "create", "patch"]):
        fail("the CRD Job's ClusterRole must grant exactly get/list/create/patch on customresourcedefinitions")


# === examples ===


def to_json_schema(s):
    """A structural OpenAPI v3 schema as JSON Schema: `nullable` becomes a null type, and an
    object with properties rejects unknown fields (as the API server's strict field validation,
    kubectl's default, does)."""
    s = {k: v for k, v in s.items() if not k.startswith("x-kubernetes-")}
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    if "properties" in s:
        s["properties"] = {k: to_json_schema(v) for k, v in s["properties"].items()}
        s.setdefault("additionalProperties", False)
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = to_json_schema(s["additionalProperties"])
    if isinstance(s.get("items"), dict):
        s["items"] = to_json_schema(s["items"])
    return s


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def crd_validators():
    validators = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "crds", "*.yaml"))):
        for crd in load_all(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schema = to_json_schema(v["schema"]["openAPIV3Schema"])
                schema["properties"]["apiVersion"] = {"const": f"{group}/{v['name']}"}
                schema["properties"]["kind"] = {"const": kind}
                schema["properties"]["metadata"] = {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
                        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_SUBDOMAIN},
                    },
                }
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                jsonschema.Draft7Validator.check_schema(schema)
                validators[(f"{group}/{v['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def schema_errors(validators, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in validators:
        return [f"no CRD in crds/ for {key[0]} {key[1]}"]
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validators[key].iter_errors(doc)
    ]


# portolan.dev documents that are no Kubernetes objects: route tests (`portolan test`,
# docs/testing-config.md) live in files, not in the cluster, and have no CRD.
NOT_OBJECTS = {"RouteTest"}


def portolan_objects(paths):
    for path in paths:
        for i, doc in enumerate(load_all(path)):
            if doc.get("kind") in NOT_OBJECTS:
                continue
            if str(doc.get("apiVersion", "")).startswith("portolan.dev/"):
                yield f"{os.path.relpath(path, ROOT)}#{i}", doc


# Broken copies that must be rejected, one per kind: (kind, dotted path, bad value, why).
NEGATIVE = [
    ("TrafficRoute", "spec.hosts", "echo", "a string where a list belongs"),
    ("TrafficRoute", "spec.http.0.route.0.weight", "ninety", "a string where an integer belongs"),
    ("TrafficRoute", "spec.http.0.colour", "blue", "an unknown field"),
    ("TrafficPolicy", "spec.outlierDetection.consecutive5xxErrors", "3", "a string where an integer belongs"),
    ("TrafficPolicy", "spec.loadBalancer", {"algorithm": "Fastest"}, "an unknown enum value"),
    ("Gateway", "spec.listeners.0.protocol", "QUIC", "an unknown enum value"),
    ("Gateway", "spec.listeners.0.port", 70000, "a port above 65535"),
    ("ExternalService", "spec.resolution", "Magic", "an unknown enum value"),
    ("ProxyScope", "spec.discovery", "ondemand", "an unknown enum value"),
    ("ProxyScope", "spec.hosts", "./*", "a string where a list belongs"),
]


def set_path(doc, dotted, value):
    parts = dotted.split(".")
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def check_examples():
    validators = crd_validators()
    files = sorted(
        glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True)
        + glob.glob(os.path.join(ROOT, "examples", "**", "*.yml"), recursive=True)
    )
    errors, seen, count = [], {}, 0
    for where, doc in portolan_objects(files):
        count += 1
        seen.setdefault(doc["kind"], doc)
        errors += [f"{where} {doc['kind']} {doc['metadata'].get('name')}: {e}" for e in schema_errors(validators, doc)]
    patched = patched_route()
    errors += [f"canary-50-50.patch applied: {e}" for e in schema_errors(validators, patched)]
    if errors:
        fail("example CRs do not match crds/:\n  " + "\n  ".join(errors))
    kinds = {k for _, k in validators}
    if set(seen) != kinds:
        fail(f"examples/ should hold every kind of crds/ at least once: have {sorted(seen)}, crds/ {sorted(kinds)}")
    for kind, path, value, why in NEGATIVE:
        bad = copy.deepcopy(seen[kind])
        set_path(bad, path, value)
        if not schema_errors(validators, bad):
            fail(f"the schema check accepted a {kind} with {why} at {path}")
    print(f"examples: {count} portolan.dev objects (+ the 50/50 patch) match crds/; {len(NEGATIVE)} broken copies rejected")


# === patched-route ===


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def patched_route():
    base = os.path.join(ROOT, "examples", "kubernetes", "canary-90-10.yaml")
    route = one(load_all(base), "TrafficRoute")
    with open(os.path.join(ROOT, "examples", "kubernetes", "canary-50-50.patch")) as f:
        patch = yaml.safe_load(f)
    out = merge_patch(route, patch)
    weights = [r["weight"] for r in out["spec"]["http"][0]["route"]]
    if weights != [50, 50]:
        fail(f"the 50/50 patch gives weights {weights}")
    return out


def write_patched_route(out_dir):
    docs = load_all(os.path.join(ROOT, "examples", "kubernetes", "canary-90-10.yaml"))
    docs = [patched_route() if d["kind"] == "TrafficRoute" else d for d in docs]
    with open(os.path.join(out_dir, "canary-50-50.yaml"), "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


# === bootstraps ===


def check_bootstraps(binary, write):
    count = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "kubernetes", "*.yaml"))):
        with open(path) as f:
            text = f.read()
        for doc in yaml.safe_load_all(text):
            if not doc or doc.get("kind") != "ConfigMap":
                continue
            args = (doc["metadata"].get("annotations") or {}).get(BOOTSTRAP_ANNOTATION)
            if not args:
                continue
            count += 1
            want = subprocess.run([binary, "bootstrap", *args.split()], check=True, capture_output=True, text=True).stdout
            have = doc["data"]["envoy.yaml"]
            envoy_validate(doc["metadata"]["name"], have)
            if have.rstrip("\n") == want.rstrip("\n"):
                continue
            if not write:
                fail(
                    f"{os.path.relpath(path, ROOT)}: ConfigMap {doc['metadata']['name']} is not what "
                    f"`portolan bootstrap {args}` prints: run scripts/chart-check.sh --write-bootstraps"
                )
            indented = "".join("    " + line if line.strip() else line for line in want.splitlines(True))
            old = "".join("    " + line if line.strip() else line for line in have.splitlines(True))
            if old not in text:
                fail(f"{path}: cannot find the old bootstrap text to replace")
            text = text.replace(old, indented)
            with open(path, "w") as f:
                f.write(text)
            print(f"rewrote {doc['metadata']['name']} in {os.path.relpath(path, ROOT)}")
    if count == 0:
        fail("no bootstrap ConfigMap found in examples/kubernetes/")
    print(f"bootstraps: {count} ConfigMaps equal `portolan bootstrap` output")


def envoy_validate(name, bootstrap):
    """Stock Envoy's own check of a bootstrap (`envoy --mode validate`), when ENVOY_BIN is set."""
    envoy = os.environ.get("ENVOY_BIN")
    if not envoy:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(bootstrap)
        f.flush()
        r = subprocess.run(
            [envoy, "--mode", "validate", "-c", f.name, "--service-node", "check", "--base-id", str(os.getpid() % 60000 + 1000)],
            capture_output=True, text=True,
        )
    if r.returncode != 0:
        fail(f"Envoy rejects the bootstrap of ConfigMap {name}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")


# === values-doc ===


def check_values_doc():
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    with open(os.path.join(ROOT, "docs", "helm-values.md")) as f:
        doc = f.read()
    # The rows of the "## Values" table (other tables name API groups, objects, ...).
    section = doc.split("\n## Values\n", 1)[-1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)`", section, re.M))

    def keys(node, prefix=""):
        for k, v in node.items():
            path = prefix + k
            # A map whose keys are the user's (annotations, labels, ...) is documented as a whole.
            if isinstance(v, dict) and v and not path.endswith(("Context", "resources", "Resources")):
                yield from keys(v, path + ".")
            else:
                yield path

    missing = [k for k in keys(values) if k not in documented]
    stale = [k for k in documented if not has_key(values, k)]
    if missing or stale:
        fail(f"docs/helm-values.md: undocumented values {missing}; documented but not in values.yaml {stale}")
    print(f"values-doc: {len(documented)} values documented, none missing")


def has_key(values, dotted):
    node = values
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return True


# === dockerfile ===


def check_dockerfile():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        lines = [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        fail("Dockerfile: not multi-stage")
    final = lines[lines.index(froms[-1]):]
    users = [l.split(None, 1)[1] for l in final if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        fail("Dockerfile: the runtime stage does not end as a non-root USER")
    for l in lines:
        if l.upper().startswith("ADD ") and re.search(r"https?://", l):
            fail(f"Dockerfile: ADD of a URL: {l}")
    copies = [l for l in final if l.upper().startswith("COPY ")]
    if len(copies) != 1 or "--from=" not in copies[0] or "portolan" not in copies[0]:
        fail(f"Dockerfile: the runtime stage should copy only the binary from the builder: {copies}")
    if any(l.upper().startswith("RUN ") for l in final):
        fail("Dockerfile: the runtime stage runs commands; it should hold the binary only")
    if not any(l.upper().startswith("ENTRYPOINT") and "portolan" in l for l in final):
        fail("Dockerfile: ENTRYPOINT is not portolan")
    if not any("--locked" in l and "-p portolan" in l for l in lines):
        fail("Dockerfile: build with cargo build --release --locked -p portolan")
    print(f"dockerfile: {len(froms)} stages, runtime as USER {users[-1]}, binary only")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    try:
        if cmd == "crds":
            check_crds()
        elif cmd == "split":
            split(argv[2], argv[3], argv[4])
        elif cmd == "assert-render":
            assert_render(argv[2], argv[3])
        elif cmd == "examples":
            check_examples()
        elif cmd == "patched-route":
            write_patched_route(argv[2])
        elif cmd == "bootstraps":
            check_bootstraps(argv[2], "--write" in argv[3:])
        elif cmd == "values-doc":
            check_values_doc()
        elif cmd == "dockerfile":
            check_dockerfile()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as e:
        print(f"FAILED {cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
