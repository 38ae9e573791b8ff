"""Offline checks of the Kubernetes deployment in k8s/ (issue 7).

Every overlay is rendered with `kubectl kustomize` and each rendered object is
validated: core kinds against the Kubernetes JSON schemas shipped by
`kubernetes-validate`, RayCluster / RayJob against the KubeRay v1 JSON Schemas in
k8s/schemas/ (and their pod templates against the Kubernetes PodTemplate schema).
Then the manifests are checked against the rest of the repository: the config each
RayJob trains exists and loads, the image's Ray and MLflow versions are the pinned
ones, the GPU learner group matches the config's learners, every container has
requests and limits, and nothing is exposed outside the cluster.

No cluster, registry or network is needed; without kubectl the rendering tests skip.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
OVERLAYS = ("cpu-dev", "gpu", "gpu-postgres-s3")
# Oldest Kubernetes minor still commonly run, and the newest the package ships.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
RAY_WORKING_DIR = "/home/ray/mto"  # the image's WORKDIR and the RayJob runtime env's working_dir

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not on PATH; it renders the kustomize overlays (`kubectl kustomize DIR`). "
    "Install kubectl to run the k8s manifest tests.",
)


# --------------------------------------------------------------------------- helpers


def pinned_version(package: str) -> str:
    """The `==` version of `package` in pyproject.toml's dependencies."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        m = re.fullmatch(rf"{re.escape(package)}(\[[^\]]*\])?==([0-9][0-9.]*)", dep.replace(" ", ""))
        if m:
            return m.group(2)
    raise AssertionError(f"pyproject.toml pins no '{package}==X' dependency; found {deps}")


def python_tag() -> str:
    """`py311` from requires-python `>=3.11,<3.12`."""
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    m = re.search(r">=\s*3\.(\d+)", spec)
    assert m, f"requires-python {spec!r} has no lower bound 3.X"
    return f"py3{m.group(1)}"


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed; the error names the directory on failure."""
    proc = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{proc.stderr}")
    return [obj for obj in yaml.safe_load_all(proc.stdout) if obj]


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def ray_cluster_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, RayClusterSpec) for a RayCluster or a RayJob that creates its cluster."""
    if obj["kind"] == "RayCluster":
        yield name_of(obj), obj["spec"]
    elif obj["kind"] == "RayJob" and "rayClusterSpec" in obj["spec"]:
        yield f"{name_of(obj)}.rayClusterSpec", obj["spec"]["rayClusterSpec"]


def pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) for every pod an object creates."""
    if obj["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        yield name_of(obj), obj["spec"]["template"]
    for where, spec in ray_cluster_specs(obj):
        yield f"{where}.headGroupSpec", spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"{where}.workerGroupSpecs[{group['groupName']}]", group["template"]
    if obj["kind"] == "RayJob" and "submitterPodTemplate" in obj["spec"]:
        # Without one, KubeRay's default submitter pod has requests and limits.
        yield f"{name_of(obj)}.submitterPodTemplate", obj["spec"]["submitterPodTemplate"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return spec.get("initContainers", []) + spec["containers"]


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTOR = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number: '500m' -> 0.5, '2Gi' -> 2147483648."""
    m = _QUANTITY.match(str(value))
    assert m, f"not a resource quantity: {value!r}"
    return float(m.group(1)) * _FACTOR[m.group(2)]


def image_tag(image: str) -> str:
    """The tag of 'registry/name:tag[@sha256:digest]' (the digest, when there, is what gets pulled)."""
    return image.split("@", 1)[0].rsplit(":", 1)[-1]


def image_tag_parts(image: str) -> tuple[str, str, str]:
    """('2.60.0', 'py311', 'gpu') from '...mto:ray2.60.0-py311-gpu[-build-suffix][@sha256:...]'."""
    tag = image_tag(image)
    m = re.fullmatch(r"ray([0-9.]+)-(py3\d+)-(cpu|gpu)(-[\w.-]+)?", tag)
    assert m, f"image {image!r}: tag should read ray<version>-py3XX-<cpu|gpu>[-suffix]"
    return m.group(1), m.group(2), m.group(3)


def gpus(template: dict[str, Any]) -> float:
    """GPUs one pod of this template gets (its limits, which is what the scheduler grants)."""
    return sum(quantity(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) for c in containers(template))


def cpus(template: dict[str, Any]) -> float:
    return sum(quantity(c.get("resources", {}).get("limits", {}).get("cpu", 0)) for c in containers(template))


# ----------------------------------------------- consistency checks on one RayJob


def entrypoint_config(rayjob: dict[str, Any]) -> tuple[str, list[str]]:
    """(config path, --set overrides) of a RayJob whose entrypoint is `mto train CONFIG ...`."""
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    where = f"{name_of(rayjob)}: entrypoint {rayjob['spec']['entrypoint']!r}"
    if argv[:2] != ["mto", "train"] or len(argv) < 3 or argv[2].startswith("-"):
        raise AssertionError(f"{where}: expected `mto train CONFIG [--set KEY=VALUE ...]`")
    overrides: list[str] = []
    rest = argv[3:]
    while rest:
        flag = rest.pop(0)
        if flag == "--set" and rest:
            overrides.append(rest.pop(0))
        elif flag.startswith("--set="):
            overrides.append(flag.removeprefix("--set="))
        elif flag == "--resume" and rest:
            rest.pop(0)
        else:
            raise AssertionError(f"{where}: unexpected argument {flag!r}")
    return argv[2], overrides


def load_entrypoint_config(rayjob: dict[str, Any], root: Path = REPO):
    """The `ExperimentConfig` a RayJob trains; AssertionError naming the file and field if it does not load."""
    from orchestrator.config import ConfigError, load_config

    path, overrides = entrypoint_config(rayjob)
    try:
        return load_config(root / path, overrides)
    except ConfigError as err:
        raise AssertionError(f"{name_of(rayjob)} trains {path}, which does not load:\n{err}") from None


def check_learner_gpus(rayjob: dict[str, Any], cfg) -> None:
    """GPU pods x GPUs per pod must equal rl.num_learners x rl.num_gpus_per_learner.

    With rl.num_learners == 0 RLlib learns in the driver, which runs on the head,
    so then the head must carry rl.num_gpus_per_learner GPUs and the workers none.
    """
    spec = rayjob["spec"]["rayClusterSpec"]
    rl = cfg.rl
    worker_gpus = 0.0
    for group in spec.get("workerGroupSpecs", []):
        per_pod = gpus(group["template"])
        if per_pod:
            replicas = group.get("replicas", 0)
            if not group.get("minReplicas", 0) == replicas == group.get("maxReplicas", 0):
                raise AssertionError(
                    f"{name_of(rayjob)}: GPU group '{group['groupName']}' should be pinned "
                    f"(minReplicas = replicas = maxReplicas) so learners never wait for, or lose, a GPU; "
                    f"got {group.get('minReplicas', 0)}/{replicas}/{group.get('maxReplicas', 0)}"
                )
            worker_gpus += replicas * per_pod
    head_gpus = gpus(spec["headGroupSpec"]["template"])
    path = entrypoint_config(rayjob)[0]
    if rl.num_learners == 0:
        wanted_head, wanted_workers = math.ceil(rl.num_gpus_per_learner), 0
    else:
        wanted_head, wanted_workers = 0, math.ceil(rl.num_learners * rl.num_gpus_per_learner)
    if worker_gpus != wanted_workers or head_gpus < wanted_head:
        raise AssertionError(
            f"{name_of(rayjob)}: worker GPU groups provide {worker_gpus:g} GPU(s) and the head {head_gpus:g}, "
            f"but {path} asks for rl.num_learners={rl.num_learners} x "
            f"rl.num_gpus_per_learner={rl.num_gpus_per_learner:g} "
            f"(= {wanted_workers} on workers, {wanted_head} on the head)"
        )


def check_env_runner_cpus(rayjob: dict[str, Any], cfg) -> None:
    """The CPU groups can grow to hold every EnvRunner."""
    spec = rayjob["spec"]["rayClusterSpec"]
    capacity = sum(
        g.get("maxReplicas", 0) * cpus(g["template"])
        for g in spec.get("workerGroupSpecs", [])
        if not gpus(g["template"])
    )
    wanted = cfg.rl.num_env_runners * cfg.rl.num_cpus_per_env_runner
    if capacity < wanted:
        raise AssertionError(
            f"{name_of(rayjob)}: CPU worker groups hold at most {capacity:g} CPUs, "
            f"but {entrypoint_config(rayjob)[0]} runs {cfg.rl.num_env_runners} EnvRunners x "
            f"{cfg.rl.num_cpus_per_env_runner:g} CPU"
        )


# --------------------------------------------- security checks (issue 28), one object set each

MLFLOW_AUTH_SECRET = "mto-mlflow-auth"
# Pod Security Standards, "restricted" (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}
DASHBOARD_PORT = 8265  # the KubeRay operator polls it; the RayJob submitter sends the job to it


def is_ray_object(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].startswith("ray.io/")


def restricted_problems(template: dict[str, Any], extra_containers: list[dict[str, Any]] = ()) -> list[str]:
    """Where a pod template falls short of the "restricted" Pod Security profile ([] = it meets it).

    ``extra_containers``: containers KubeRay adds to the pod (the autoscaler sidecar), checked with
    the pod's settings. KubeRay's own `wait-gcs-ready` init container copies the Ray container's
    securityContext (KubeRay pod.go), so checking the Ray container covers it.
    """
    spec = template["spec"]
    pod = spec.get("securityContext", {})
    problems = [f"spec.{flag} is true" for flag in ("hostNetwork", "hostPID", "hostIPC") if spec.get(flag)]
    problems += [f"volume {v['name']} is of a type 'restricted' forbids" for v in spec.get("volumes", [])
                 if not set(v) - {"name"} <= RESTRICTED_VOLUME_TYPES]
    if pod.get("sysctls"):
        problems.append("pod sets sysctls")
    for c in [*containers(template), *extra_containers]:
        own = c.get("securityContext", {})
        name = f"container {c['name']}"
        if own.get("privileged"):
            problems.append(f"{name} is privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = own.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = own.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp or 'unset'}, not RuntimeDefault")
        if any(port.get("hostPort") for port in c.get("ports", [])):
            problems.append(f"{name} uses a hostPort")
    return problems


def check_restricted(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        autoscalers = {}
        for where, spec in ray_cluster_specs(obj):
            if spec.get("enableInTreeAutoscaling"):
                options = spec.get("autoscalerOptions", {})
                autoscalers[f"{where}.headGroupSpec"] = [{"name": "autoscaler",
                                                          "securityContext": options.get("securityContext", {})}]
        for where, template in pod_templates(obj):
            problems = restricted_problems(template, autoscalers.get(where, []))
            if problems:
                raise AssertionError(f"{where} is not at Pod Security 'restricted': " + "; ".join(problems))


def needs_service_account(obj: dict[str, Any], where: str) -> bool:
    """Only a head with KubeRay's in-tree autoscaler talks to the Kubernetes API (it scales the groups)."""
    return any(where == f"{w}.headGroupSpec" and spec.get("enableInTreeAutoscaling") for w, spec in ray_cluster_specs(obj))


def check_service_account_tokens(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        for where, template in pod_templates(obj):
            automount = template["spec"].get("automountServiceAccountToken")
            if needs_service_account(obj, where):
                if automount is False:
                    raise AssertionError(f"{where}: the autoscaler needs the service account token")
            elif automount is not False:
                raise AssertionError(f"{where}: automountServiceAccountToken should be false (it calls no Kubernetes API)")


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"this check understands matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def pods_of(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(where, owning object, pod labels) for every pod the objects create."""
    return [(where, obj, t.get("metadata", {}).get("labels", {})) for obj in objs for where, t in pod_templates(obj)]


def admitted(objs: list[dict[str, Any]], labels: dict[str, str]) -> list[tuple[dict[str, Any], list[str]]]:
    """The ingress rules of every NetworkPolicy that selects pods with ``labels``, each with the
    pods ('where') its podSelector peers match; AssertionError if no policy isolates those pods."""
    policies = [o for o in objs if o["kind"] == "NetworkPolicy" and _matches(o["spec"]["podSelector"], labels)
                and "Ingress" in o["spec"].get("policyTypes", ["Ingress"])]
    if not policies:
        raise AssertionError(f"no NetworkPolicy selects pods labelled {labels}: anything may connect to them")
    rules = []
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            if not peers:
                raise AssertionError(f"NetworkPolicy/{policy['metadata']['name']}: a rule without `from` admits every source")
            for peer in peers:
                if "ipBlock" in peer:
                    raise AssertionError(f"NetworkPolicy/{policy['metadata']['name']}: ipBlock {peer['ipBlock']}")
            rules.append((rule, [w for w, _, l in pods_of(objs)
                                 if any("namespaceSelector" not in p and _matches(p["podSelector"], l) for p in peers)]))
    return rules


def _ports(rule: dict[str, Any]) -> set[int] | None:
    """The ports a rule opens (None: all of them)."""
    return {p["port"] for p in rule["ports"]} if rule.get("ports") else None


def check_network_policies(objs: list[dict[str, Any]]) -> None:
    """MLflow: only Ray pods, only its port. A Ray pod: only the pods of its own Ray cluster (its RayJob's
    submitter and the KubeRay operator to the dashboard port only). Every other pod: isolated."""
    pods = pods_of(objs)
    ray_pods = {w for w, o, _ in pods if is_ray_object(o) and "submitterPodTemplate" not in w}
    for where, obj, labels in pods:
        rules = admitted(objs, labels)
        sources = {w for _, ws in rules for w in ws}
        outside = [rule for rule, _ in rules if any("namespaceSelector" in p for p in rule["from"])]
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "mlflow":
            mlflow_port = obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
            if sources != ray_pods or outside or any(_ports(r) != {mlflow_port} for r, _ in rules):
                raise AssertionError(f"{where}: MLflow should admit exactly the Ray pods on port {mlflow_port}; "
                                     f"admits {sorted(sources)} (+ {len(outside)} rule(s) from other namespaces)")
        elif obj["kind"] == "Deployment" and obj["metadata"]["name"] == REDIS_NAME:
            if sources != ray_pods or outside or any(_ports(r) != {REDIS_PORT} for r, _ in rules):
                raise AssertionError(f"{where}: the GCS's Redis should admit exactly the Ray pods on port {REDIS_PORT}; "
                                     f"admits {sorted(sources)} (+ {len(outside)} rule(s) from other namespaces)")
        elif where in ray_pods:
            own = {w for w, o, _ in pods if o is obj}
            members = {w for w in own if w in ray_pods}
            if not members <= sources:
                raise AssertionError(f"{where}: its own cluster's pods {sorted(members - sources)} cannot reach it")
            strangers = sources - own
            if strangers:
                raise AssertionError(f"{where}: Ray's ports are open to pods of another object: {sorted(strangers)}")
            for rule, ws in rules:
                from_elsewhere = any("namespaceSelector" in p for p in rule["from"]) or not set(ws) <= members
                if from_elsewhere and _ports(rule) != {DASHBOARD_PORT}:
                    raise AssertionError(f"{where}: a rule for the submitter or another namespace opens "
                                         f"{_ports(rule) or 'every port'}, not only the dashboard {DASHBOARD_PORT}")
            for rule in outside:
                for peer in rule["from"]:
                    if "namespaceSelector" in peer and peer.get("podSelector", {}).get("matchLabels") != \
                            {"app.kubernetes.io/name": "kuberay-operator"}:
                        raise AssertionError(f"{where}: admits {peer} from other namespaces (only the KubeRay operator may)")
        elif rules:
            raise AssertionError(f"{where} listens on nothing but admits {sorted(sources)}")


REDIS_NAME, REDIS_PORT, REDIS_SECRET = "mto-gcs-redis", 6379, ("mto-redis-auth", "password")


def check_gcs_fault_tolerance(objs: list[dict[str, Any]]) -> None:
    """Every Ray cluster's GCS keeps its tables in the overlay's Redis: the address names a Service that
    selects the Redis pods on their port, the password comes from the Secret Redis itself is started
    with, and Redis writes an append-only file on a persistent volume."""
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    (redis,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == REDIS_NAME]
    pod = redis["spec"]["template"]
    (server,) = containers(pod)
    env = {e["name"]: e for e in server.get("env", [])}
    ref = env.get("REDIS_PASSWORD", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if (ref.get("name"), ref.get("key")) != REDIS_SECRET:
        raise AssertionError(f"Redis's password should come from Secret {REDIS_SECRET}: {env.get('REDIS_PASSWORD')}")
    script = " ".join(server.get("command", []) + server.get("args", []))
    for line in ("requirepass $REDIS_PASSWORD", "appendonly yes"):
        if line not in script:
            raise AssertionError(f"Redis is not started with '{line}': {script}")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
    pvcs = {o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
    data_dir = re.search(r"^\s*dir (\S+)\s*$", script, flags=re.M)
    mounts = {m["mountPath"]: m["name"] for m in server.get("volumeMounts", [])}
    if not claims or not claims <= pvcs or data_dir is None or data_dir.group(1) not in mounts:
        raise AssertionError(f"Redis's data directory should be on a PersistentVolumeClaim: claims {claims}, mounts {mounts}")
    ports = {p["name"]: p["containerPort"] for p in server.get("ports", [])}
    clusters = [(w, spec) for o in objs for w, spec in ray_cluster_specs(o)]
    if not clusters:
        raise AssertionError("no Ray cluster in the overlay")
    for where, spec in clusters:
        ft = spec.get("gcsFaultToleranceOptions")
        if not ft:
            raise AssertionError(f"{where}: GCS fault tolerance is off")
        host, _, port = ft["redisAddress"].removeprefix("redis://").partition(":")
        service = services.get(host)
        if service is None or not _matches({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"]):
            raise AssertionError(f"{where}: redisAddress {ft['redisAddress']} names no Service of the Redis pods")
        targets = [p.get("targetPort", p["port"]) for p in service["spec"]["ports"] if p["port"] == int(port)]
        if [ports.get(t, t) for t in targets] != [REDIS_PORT]:
            raise AssertionError(f"{where}: Service {host} port {port} does not reach Redis's port {REDIS_PORT}")
        secret = ft.get("redisPassword", {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (secret.get("name"), secret.get("key")) != REDIS_SECRET:
            raise AssertionError(f"{where}: the Redis password should come from Secret {REDIS_SECRET}: {ft.get('redisPassword')}")


def check_mlflow_login(objs: list[dict[str, Any]]) -> None:
    """MLflow runs its basic-auth app with the admin login from a Secret, and every Ray container logs
    in with that Secret; no password is written into a manifest."""
    (deployment,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlflow"]
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    args = server.get("args", [])
    if "--app-name" not in args or args[args.index("--app-name") + 1] != "basic-auth":
        raise AssertionError(f"MLflow runs without its basic-auth app: args {args}")
    env = {e["name"]: e for e in server.get("env", [])}
    for name, key in (("MLFLOW_AUTH_ADMIN_USERNAME", "username"), ("MLFLOW_AUTH_ADMIN_PASSWORD", "password"),
                      ("MLFLOW_FLASK_SERVER_SECRET_KEY", "flask-secret-key")):
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (ref.get("name"), ref.get("key")) != (MLFLOW_AUTH_SECRET, key):
            raise AssertionError(f"MLflow's {name} should come from Secret {MLFLOW_AUTH_SECRET} key {key}: {env.get(name)}")
    for obj in objs:
        for where, template in pod_templates(obj):
            for c in containers(template):
                for e in c.get("env", []):
                    if re.search(r"PASSWORD|SECRET|TOKEN", e["name"]) and "value" in e:
                        raise AssertionError(f"{where}: {e['name']} is written in the manifest")
            if is_ray_object(obj) and "submitterPodTemplate" not in where:
                for c in containers(template):
                    ray_env = {e["name"]: e for e in c.get("env", [])}
                    for name, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
                        ref = ray_env.get(name, {}).get("valueFrom", {}).get("secretKeyRef", {})
                        if (ref.get("name"), ref.get("key")) != (MLFLOW_AUTH_SECRET, key):
                            raise AssertionError(f"{where} container {c['name']}: no {name} from {MLFLOW_AUTH_SECRET}")


def check_images_pinned_by_digest(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        for where, template in pod_templates(obj):
            for c in containers(template):
                if not re.search(r"@sha256:[0-9a-f]{64}$", c["image"]):
                    raise AssertionError(f"{where}: image {c['image']} is not pinned by digest")


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay (and the base) rendered once for the module."""
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH; it renders the kustomize overlays")
    out = {name: render(K8S / "overlays" / name) for name in OVERLAYS}
    out["base"] = render(K8S / "base")
    return out


@pytest.fixture(scope="module")
def ray_validators() -> dict[str, jsonschema.protocols.Validator]:
    """Draft 2020-12 validators for RayCluster and RayJob, with cross-file $refs resolved."""
    schemas = {kind: json.loads((K8S / "schemas" / f"{kind.lower()}.schema.json").read_text())
               for kind in ("RayCluster", "RayJob")}
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents(s)) for s in schemas.values()
    )
    for s in schemas.values():
        jsonschema.Draft202012Validator.check_schema(s)
    return {kind: jsonschema.Draft202012Validator(s, registry=registry) for kind, s in schemas.items()}


def objects(rendered, overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in rendered[overlay] if o["kind"] == kind]


ALL = (*OVERLAYS, "base")


# --------------------------------------------------------------------------- tests


@needs_kubectl
def test_overlays_render_the_expected_objects(rendered):
    for overlay in ALL:
        kinds = sorted(name_of(o) for o in rendered[overlay])
        assert "RayCluster/mto" in kinds and "RayJob/mto-train" in kinds, (overlay, kinds)
        assert {"Deployment/mlflow", "Service/mlflow"} <= set(kinds), (overlay, kinds)
        if overlay != "base":
            assert {o["metadata"].get("namespace") for o in rendered[overlay]} == {"mto"}, overlay


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_match_kubernetes_schemas(rendered, overlay, version):
    for obj in rendered[overlay]:
        if obj["apiVersion"].startswith("ray.io/"):
            # Pod templates inside Ray objects are plain Kubernetes: check them as PodTemplates.
            for where, template in pod_templates(obj):
                pod_template = {"apiVersion": "v1", "kind": "PodTemplate",
                                "metadata": {"name": "check"}, "template": template}
                try:
                    kubernetes_validate.validate(pod_template, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    pytest.fail(f"{overlay}: {where}: {'.'.join(map(str, err.path))}: {err.message}")
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{overlay}: {name_of(obj)}: {'.'.join(map(str, err.path))}: {err.message}")


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_ray_objects_match_kuberay_schemas(rendered, ray_validators, overlay):
    ray_objects = [o for o in rendered[overlay] if o["apiVersion"].startswith("ray.io/")]
    assert ray_objects
    for obj in ray_objects:
        assert obj["kind"] in ray_validators, f"{overlay}: no schema in k8s/schemas for {obj['kind']}"
        errors = sorted(ray_validators[obj["kind"]].iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{overlay}: {name_of(obj)}:\n" + "\n".join(
            f"  {'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
        )
        for where, spec in ray_cluster_specs(obj):
            for group in spec.get("workerGroupSpecs", []):
                lo, n, hi = group.get("minReplicas", 0), group.get("replicas", 0), group.get("maxReplicas", 0)
                assert lo <= n <= hi, f"{overlay}: {where} group {group['groupName']}: min {lo} <= replicas {n} <= max {hi}"
            names = [g["groupName"] for g in spec.get("workerGroupSpecs", [])]
            assert len(names) == len(set(names)), f"{overlay}: {where}: duplicate group names {names}"


def _gpu_job(rendered) -> dict[str, Any]:
    return copy.deepcopy(objects(rendered, "gpu", "RayJob")[0])


BAD_RAY_OBJECTS = {
    # A typo in a field name would be silently pruned by the API server.
    "typo in workerGroupSpecs": lambda job: job["spec"]["rayClusterSpec"].update(
        workerGroupSpec=job["spec"]["rayClusterSpec"].pop("workerGroupSpecs")),
    # rayStartParams is map[string]string in the CRD.
    "integer rayStartParams value": lambda job: job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update(
        {"num-cpus": 0}),
    "ttl without shutdown": lambda job: job["spec"].update(shutdownAfterJobFinishes=False),
    "unknown submissionMode": lambda job: job["spec"].update(submissionMode="K8sMode"),
    "unknown auth mode": lambda job: job["spec"]["rayClusterSpec"]["authOptions"].update(mode="password"),
    "negative replicas": lambda job: job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas=-1),
    "cluster spec and selector": lambda job: job["spec"].update(clusterSelector={"ray.io/cluster": "mto"}),
    "group name with capitals": lambda job: job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(groupName="GPU"),
    # GCS fault tolerance (KubeRay's GcsFaultToleranceOptions / RedisCredential).
    "typo in gcsFaultToleranceOptions": lambda job: job["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"].update(
        redisAdress="mto-gcs-redis:6379"),
    "gcs ft without redisAddress": lambda job: job["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"].pop("redisAddress"),
    "redis address without port": lambda job: job["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"].update(
        redisAddress="mto-gcs-redis"),
    "redis password as a bare string": lambda job: job["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"].update(
        redisPassword="hunter2"),
    "redis password value and valueFrom": lambda job: job["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"]
    ["redisPassword"].update(value="hunter2"),
}


@needs_kubectl
@pytest.mark.parametrize("mistake", sorted(BAD_RAY_OBJECTS))
def test_kuberay_schemas_reject_mistakes(rendered, ray_validators, mistake):
    job = _gpu_job(rendered)
    assert ray_validators["RayJob"].is_valid(job)
    BAD_RAY_OBJECTS[mistake](job)
    assert not ray_validators["RayJob"].is_valid(job), mistake


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_every_container_has_requests_and_limits(rendered, overlay):
    for obj in rendered[overlay]:
        for where, template in pod_templates(obj):
            for c in containers(template):
                res = c.get("resources", {})
                for kind in ("requests", "limits"):
                    missing = {"cpu", "memory"} - set(res.get(kind, {}))
                    assert not missing, f"{overlay}: {where} container {c['name']}: no {kind} for {sorted(missing)}"
                for resource, limit in res["limits"].items():
                    request = res["requests"].get(resource, limit)
                    assert quantity(request) <= quantity(limit), f"{overlay}: {where}: {resource} request > limit"
                    if resource == "nvidia.com/gpu":
                        # Extended resources cannot be overcommitted: request must equal limit.
                        assert quantity(request) == quantity(limit), f"{overlay}: {where}: GPU request != limit"
        for where, spec in ray_cluster_specs(obj):
            if spec.get("enableInTreeAutoscaling"):
                res = spec.get("autoscalerOptions", {}).get("resources", {})
                assert set(res) == {"requests", "limits"}, f"{overlay}: {where}: autoscaler container without requests/limits"


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_nothing_is_exposed_outside_the_cluster(rendered, overlay):
    exposed = ("LoadBalancer", "NodePort")
    for obj in rendered[overlay]:
        assert obj["kind"] not in ("Ingress", "Route", "Gateway", "HTTPRoute"), f"{overlay}: {name_of(obj)}"
        if obj["kind"] == "Service":
            assert obj["spec"].get("type", "ClusterIP") not in exposed, f"{overlay}: {name_of(obj)} is {obj['spec']['type']}"
        for where, spec in ray_cluster_specs(obj):
            head = spec["headGroupSpec"]
            assert head.get("serviceType", "ClusterIP") not in exposed, f"{overlay}: {where} head service is {head['serviceType']}"
            assert not head.get("enableIngress", False), f"{overlay}: {where} asks KubeRay for an Ingress"


def test_dockerfile_builds_on_the_pinned_ray_and_mlflow():
    text = (K8S / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S*)", text, flags=re.M))
    assert args["RAY_VERSION"] == pinned_version("ray"), "k8s/Dockerfile RAY_VERSION differs from pyproject.toml's ray pin"
    assert args["PYTHON_TAG"] == python_tag(), "k8s/Dockerfile PYTHON_TAG differs from requires-python"
    assert args["RAY_IMAGE_SUFFIX"].strip('"') == "", "the default image must be the CPU one"
    assert args["MLFLOW_VERSION"] == pinned_version("mlflow"), "MLflow server and clients must be the same version"
    stages = dict((name, base) for base, name in re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, flags=re.M))
    assert stages["app"] == "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}${RAY_IMAGE_SUFFIX}"
    assert stages["minerl"] == "app" and stages["runtime"] == "app"
    assert re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M)[-1] == "runtime", "default target is the app image"
    minerl = text.split("AS minerl", 1)[1].split("\nFROM ", 1)[0]
    assert "openjdk-8-jdk" in minerl and ".[minerl]" in minerl
    assert f"WORKDIR {RAY_WORKING_DIR}" in text
    for path in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", text, flags=re.M):
        assert (REPO / path).exists() or path in ("pyproject.toml", "README.md"), f"Dockerfile copies missing {path}"


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_images_and_ray_versions_match_the_pins(rendered, overlay):
    ray_pin, mlflow_pin = pinned_version("ray"), pinned_version("mlflow")
    for obj in rendered[overlay]:
        for where, spec in ray_cluster_specs(obj):
            assert spec["rayVersion"] == ray_pin, f"{overlay}: {where}.rayVersion {spec['rayVersion']} != pinned {ray_pin}"
        if obj["apiVersion"].startswith("ray.io/"):
            for where, template in pod_templates(obj):
                for c in containers(template):
                    version, py, _ = image_tag_parts(c["image"])
                    assert (version, py) == (ray_pin, python_tag()), f"{overlay}: {where}: {c['image']}"
    # One flavour per overlay, and the GPU one exactly where pods ask for GPUs.
    images = {c["image"] for o in rendered[overlay] if o["apiVersion"].startswith("ray.io/")
              for _, t in pod_templates(o) for c in containers(t)}
    wants_gpu = any(gpus(t) for o in rendered[overlay] for _, t in pod_templates(o))
    assert {image_tag_parts(i)[2] for i in images} == {"gpu" if wants_gpu else "cpu"}, (overlay, images)
    for dep in objects(rendered, overlay, "Deployment"):
        if dep["metadata"]["name"] != "mlflow":
            continue  # the GCS's Redis (gpu overlays) has its own image
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image_tag(image) == f"mlflow{mlflow_pin}", f"{overlay}: MLflow server image {image} is not MLflow {mlflow_pin}"


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_ray_token_auth_comes_from_one_secret(rendered, overlay):
    secret_names = set()
    for obj in rendered[overlay]:
        for where, spec in ray_cluster_specs(obj):
            auth = spec.get("authOptions", {})
            assert auth.get("mode") == "token", f"{overlay}: {where}: Ray token authentication is off"
            secret_names.add(auth.get("secretName"))
            major, minor, _ = map(int, spec["rayVersion"].split("."))
            assert (major, minor) >= (2, 52), f"{overlay}: {where}: token auth needs Ray >= 2.52"
    # Same Secret everywhere, so one token works for the RayCluster and every RayJob.
    assert len(secret_names) == 1 and None not in secret_names, (overlay, secret_names)


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_env_vars_set_a_value_or_a_reference(rendered, overlay):
    for obj in rendered[overlay]:
        for where, template in pod_templates(obj):
            for c in containers(template):
                for env in c.get("env", []):
                    assert ("value" in env) != ("valueFrom" in env), f"{overlay}: {where}: env {env['name']}: {env}"


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_rayjob_trains_a_config_that_loads(rendered, overlay):
    expected = {"cpu-dev": "configs/quickstart.yaml", "gpu": "configs/simon_says_gpu.yaml",
                "gpu-postgres-s3": "configs/simon_says_gpu.yaml", "base": "configs/quickstart.yaml"}
    for job in objects(rendered, overlay, "RayJob"):
        assert entrypoint_config(job)[0] == expected[overlay]
        cfg = load_entrypoint_config(job)
        assert cfg.run_dir == "/mnt/runs", "run folders must go to the mto-runs volume"
        mounts = {m["mountPath"] for c in containers(job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])
                  for m in c.get("volumeMounts", [])}
        assert cfg.run_dir in mounts, f"{overlay}: run_dir {cfg.run_dir} is not a volume on the head"


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_gpu_learners_and_env_runners_fit_the_config(rendered, overlay):
    for job in objects(rendered, overlay, "RayJob"):
        cfg = load_entrypoint_config(job)
        check_learner_gpus(job, cfg)
        check_env_runner_cpus(job, cfg)
        # The long-lived RayCluster of the same overlay can run the same training.
        for cluster in objects(rendered, overlay, "RayCluster"):
            spec = cluster["spec"]
            gpu_capacity = sum(g["maxReplicas"] * gpus(g["template"]) for g in spec.get("workerGroupSpecs", []))
            assert gpu_capacity >= math.ceil(cfg.rl.num_learners * cfg.rl.num_gpus_per_learner), overlay


@needs_kubectl
def test_gpu_overlay_runs_gpu_learners(rendered):
    """Known answer: configs/simon_says_gpu.yaml has 1 learner x 1 GPU -> one 1-GPU pod."""
    job = objects(rendered, "gpu", "RayJob")[0]
    groups = {g["groupName"]: g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    cfg = load_entrypoint_config(job)
    assert groups["gpu"]["replicas"] * gpus(groups["gpu"]["template"]) == cfg.rl.num_learners * cfg.rl.num_gpus_per_learner
    assert cfg.rl.num_learners * cfg.rl.num_gpus_per_learner > 0
    tolerations = groups["gpu"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    # cpu-dev has no GPU anywhere.
    assert not any(gpus(t) for o in rendered["cpu-dev"] for _, t in pod_templates(o))


@needs_kubectl
def test_gpu_mismatch_is_reported_with_the_numbers(rendered):
    job = _gpu_job(rendered)
    cfg = load_entrypoint_config(job)
    group = next(g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"] if gpus(g["template"]))
    group["replicas"] = group["minReplicas"] = group["maxReplicas"] = 3
    with pytest.raises(AssertionError, match=r"provide 3 GPU.*simon_says_gpu\.yaml.*num_learners=1"):
        check_learner_gpus(job, cfg)
    group["minReplicas"] = 0
    with pytest.raises(AssertionError, match="pinned"):
        check_learner_gpus(job, cfg)


def _job(entrypoint: str) -> dict[str, Any]:
    return {"kind": "RayJob", "metadata": {"name": "t"}, "spec": {"entrypoint": entrypoint}}


def test_a_config_that_does_not_load_fails_with_file_and_field(tmp_path):
    bad = tmp_path / "configs" / "broken.yaml"
    bad.parent.mkdir()
    bad.write_text("name: broken\nrl:\n  num_learners: -1\n")
    with pytest.raises(AssertionError) as info:
        load_entrypoint_config(_job("mto train configs/broken.yaml"), root=tmp_path)
    message = str(info.value)
    assert "broken.yaml" in message and "rl.num_learners" in message, message


def test_an_override_that_does_not_load_fails_with_the_field(tmp_path):
    good = tmp_path / "configs" / "ok.yaml"
    good.parent.mkdir()
    good.write_text("name: ok\n")
    assert load_entrypoint_config(_job("mto train configs/ok.yaml --set rl.num_learners=2"), root=tmp_path).rl.num_learners == 2
    with pytest.raises(AssertionError, match=r"rl\.num_lerners"):
        load_entrypoint_config(_job("mto train configs/ok.yaml --set rl.num_lerners=2"), root=tmp_path)


def test_a_missing_config_or_other_command_fails(tmp_path):
    with pytest.raises(AssertionError, match="nope.yaml"):
        load_entrypoint_config(_job("mto train configs/nope.yaml"), root=tmp_path)
    for entrypoint in ("python train.py", "mto eval configs/x.yaml", "mto train --set a=1", "mto train c.yaml --bogus"):
        with pytest.raises(AssertionError, match="entrypoint"):
            entrypoint_config(_job(entrypoint))


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_rayjob_tracks_into_the_in_cluster_mlflow(rendered, overlay):
    from mlflow.server.security_utils import is_allowed_host_header

    service = objects(rendered, overlay, "Service")
    (mlflow_service,) = [s for s in service if s["metadata"]["name"] == "mlflow"]
    deployment = _find(rendered[overlay], "Deployment", "mlflow")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert mlflow_service["spec"]["selector"].items() <= pod_labels.items(), "Service selects no MLflow pod"
    server_env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    allowed = [h.strip() for h in server_env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")]
    namespace = mlflow_service["metadata"].get("namespace", "default")

    for job in objects(rendered, overlay, "RayJob"):
        runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
        assert isinstance(runtime_env, dict), f"{overlay}: runtimeEnvYAML is not a mapping"
        assert runtime_env["working_dir"] == RAY_WORKING_DIR
        uri = urlparse(runtime_env["env_vars"]["MLFLOW_TRACKING_URI"])
        assert uri.scheme == "http" and uri.hostname == "mlflow", uri
        assert uri.port == mlflow_service["spec"]["ports"][0]["port"]
        # MLflow's own Host-header check (DNS-rebinding protection) accepts in-cluster names and the
        # port-forward's localhost:5000 (the namespaced names where an overlay sets the namespace)...
        in_cluster = [uri.netloc, "localhost:5000"]
        if "namespace" in mlflow_service["metadata"]:
            in_cluster += [f"mlflow.{namespace}:{uri.port}", f"mlflow.{namespace}.svc.cluster.local:{uri.port}"]
        for host in in_cluster:
            assert is_allowed_host_header(allowed, host), f"{overlay}: MLflow would refuse Host {host}"
        # ... and refuses every other name: exact entries only, no wildcard.
        assert not [h for h in allowed if "*" in h or "?" in h or "[" in h], f"{overlay}: wildcard in {allowed}"
        for host in ("attacker.example.com", "mlflow.attacker.example", "mlflow.attacker.example:5000", "mlflow",
                     "localhost:8080", "mlflow.evil:5000"):
            assert not is_allowed_host_header(allowed, host), f"{overlay}: MLflow would accept Host {host}"
    for cluster in objects(rendered, overlay, "RayCluster"):
        for where, template in pod_templates(cluster):
            env = {e["name"]: e.get("value") for c in containers(template) for e in c.get("env", [])}
            assert env.get("MLFLOW_TRACKING_URI") == "http://mlflow:5000", f"{overlay}: {where}"


@needs_kubectl
def test_postgres_s3_overlay_reads_stores_from_a_secret(rendered):
    deployment = _find(rendered["gpu-postgres-s3"], "Deployment", "mlflow")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-store", name
    assert "mlflow-data" not in {o["metadata"]["name"] for o in objects(rendered, "gpu-postgres-s3", "PersistentVolumeClaim")}
    # The default keeps SQLite on the volume.
    default = _find(rendered["gpu"], "Deployment", "mlflow")
    env = {e["name"]: e for e in default["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("sqlite:////mlflow/")


@pytest.mark.slow
@needs_kubectl
def test_mlflow_server_starts_with_the_deployment_settings(rendered, tmp_path):
    """Run the real `mlflow server` with the Deployment's args and env (SQLite in tmp, the Secret's
    values made up here, the ConfigMap's auth config written to tmp) and talk to it with the Host
    headers and the login in-cluster clients send."""
    import base64
    import socket
    import urllib.error
    import urllib.request

    from mlflow_fixtures import mlflow_binary, wait_for_mlflow_server

    (deployment,) = objects(rendered, "cpu-dev", "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    secret = {"username": "admin", "password": "a-long-test-password", "flask-secret-key": "test-key"}
    (config_map,) = [o for o in rendered["cpu-dev"] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mlflow-auth"]
    env = dict(os.environ)
    for e in container["env"]:
        if "valueFrom" in e:
            env[e["name"]] = secret[e["valueFrom"]["secretKeyRef"]["key"]]
        elif e["name"] == "MLFLOW_AUTH_CONFIG_PATH":
            ini = tmp_path / Path(e["value"]).name
            ini.write_text(config_map["data"][ini.name].replace("/mlflow/", f"{tmp_path}/"))
            env[e["name"]] = str(ini)
        else:
            env[e["name"]] = e["value"].replace("/mlflow/", f"{tmp_path}/")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = list(container["args"])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    proc = subprocess.Popen([str(mlflow_binary()), "server", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def get(host: str, user: str | None = "admin", password: str = secret["password"]) -> int:
            login = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()} if user else {}
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1",
                                         headers={"Host": host, **login})
            try:
                # Generous: the first requests check a PBKDF2 password hash on a possibly loaded machine.
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return resp.status
            except urllib.error.HTTPError as err:
                return err.code

        wait_for_mlflow_server(proc, port, timeout_s=90)
        assert get("mlflow:5000") == 200
        assert get("mlflow.mto.svc.cluster.local:5000") == 200
        assert get("localhost:5000") == 200  # kubectl port-forward svc/mlflow 5000:5000
        assert get("mlflow:5000", user=None) == 401
        assert get("mlflow:5000", password="wrong") == 401
        assert get("attacker.example.com") == 403
        assert get("mlflow.attacker.example:5000") == 403  # the DNS-rebinding name the old `mlflow.*` let in
        assert (tmp_path / "mlflow.db").exists() and (tmp_path / "basic_auth.db").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@needs_kubectl
def test_readme_commands_name_real_overlays_and_labels(rendered):
    """The guide's `kubectl apply -k DIR -l ...` lines point at overlays and labels that exist."""
    readme = (K8S / "README.md").read_text()
    for path in set(re.findall(r"k8s/(?:overlays|components)/[\w-]+", readme)):
        assert (REPO / path / "kustomization.yaml").exists(), f"k8s/README.md mentions missing {path}"
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in rendered["base"]}
    for value in re.findall(r"app\.kubernetes\.io/component!?=([\w-]+)", readme):
        assert value in components, f"k8s/README.md selects component={value}; objects have {sorted(components)}"
    for step in ("helm install kuberay-operator", "port-forward svc/mlflow", "ray job submit", "logs -f"):
        assert step in readme, step


@needs_kubectl
def test_an_overlay_whose_config_does_not_load_is_reported(tmp_path):
    """End to end: an overlay on top of cpu-dev whose entrypoint breaks the config."""
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        # kustomize refuses absolute bases; a relative path from tmp works.
        f"resources:\n  - {os.path.relpath(K8S / 'overlays' / 'cpu-dev', tmp_path)}\n"
        "patches:\n  - target: {kind: RayJob, name: mto-train}\n    patch: |\n"
        "      - op: replace\n        path: /spec/entrypoint\n"
        "        value: mto train configs/quickstart.yaml --set rl.num_learners=-1\n"
    )
    (job,) = [o for o in render(tmp_path) if o["kind"] == "RayJob"]
    with pytest.raises(AssertionError) as info:
        load_entrypoint_config(job)
    assert "configs/quickstart.yaml" in str(info.value) and "rl.num_learners" in str(info.value), str(info.value)


def test_quantity_and_image_tag_parsing_known_answers():
    assert quantity("500m") == 0.5 and quantity("2") == 2 and quantity(4) == 4
    assert quantity("2Gi") == 2 * 1024**3 and quantity("512Mi") == 512 * 1024**2 and quantity("1G") == 1e9
    assert image_tag_parts("registry.example.com:5000/mto:ray2.60.0-py311-gpu") == ("2.60.0", "py311", "gpu")
    assert image_tag_parts("mto:ray2.60.0-py311-cpu-3f2a1c9") == ("2.60.0", "py311", "cpu")
    for bad in ("mto:latest", "mto:ray2.60.0-cpu", "mto:ray2.60.0-py311-tpu"):
        with pytest.raises(AssertionError, match="tag should read"):
            image_tag_parts(bad)
    assert pinned_version("ray") == "2.60.0" or re.fullmatch(r"\d+\.\d+\.\d+", pinned_version("ray"))


# ------------------------------------------------- security tests (issue 28), every overlay


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_mlflow_requires_a_login_from_a_secret(rendered, overlay):
    check_mlflow_login(rendered[overlay])
    (config_map,) = [o for o in rendered[overlay] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mlflow-auth"]
    ini = config_map["data"]["basic_auth.ini"]
    assert re.search(r"^default_permission = NO_PERMISSIONS$", ini, flags=re.M), ini
    assert "admin_password" not in ini, "the admin password belongs in the Secret"


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_network_policies_fence_mlflow_and_each_ray_cluster(rendered, overlay):
    check_network_policies(rendered[overlay])


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_every_pod_meets_the_restricted_pod_security_profile(rendered, overlay):
    check_restricted(rendered[overlay])


@needs_kubectl
@pytest.mark.parametrize("overlay", ALL)
def test_service_account_tokens_are_mounted_only_where_the_api_is_called(rendered, overlay):
    check_service_account_tokens(rendered[overlay])
    heads = [w for o in rendered[overlay] for w, _ in pod_templates(o) if needs_service_account(o, w)]
    assert len(heads) == 2, heads  # the RayCluster's and the RayJob's autoscaling heads


@needs_kubectl
@pytest.mark.parametrize("overlay", ["gpu", "gpu-postgres-s3"])
def test_gpu_overlays_pin_every_image_by_digest(rendered, overlay):
    check_images_pinned_by_digest(rendered[overlay])


@needs_kubectl
@pytest.mark.parametrize("overlay", ["gpu", "gpu-postgres-s3"])
def test_gpu_overlays_enable_gcs_fault_tolerance_with_redis(rendered, overlay):
    check_gcs_fault_tolerance(rendered[overlay])
    heads = [w for o in rendered[overlay] for w, spec in ray_cluster_specs(o) if spec.get("gcsFaultToleranceOptions")]
    assert len(heads) == 2, heads  # the long-lived RayCluster and the RayJob's cluster


@needs_kubectl
@pytest.mark.parametrize("overlay", ["cpu-dev", "base"])
def test_overlays_without_redis_leave_gcs_fault_tolerance_off(rendered, overlay):
    """A gcsFaultToleranceOptions pointing at a Redis that is not deployed would keep every head from starting."""
    assert not any(spec.get("gcsFaultToleranceOptions") for o in rendered[overlay] for _, spec in ray_cluster_specs(o))
    assert not [o for o in rendered[overlay] if o["metadata"]["name"] == REDIS_NAME]


def _redis_deployment(objs) -> dict[str, Any]:
    return _find(objs, "Deployment", REDIS_NAME)


GCS_FT_MISTAKES = {
    "address names no service": lambda objs: _find(objs, "RayCluster", "mto")["spec"]["gcsFaultToleranceOptions"].update(
        redisAddress="redis:6379"),
    "wrong port": lambda objs: _find(objs, "RayJob", "mto-train")["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"]
    .update(redisAddress=f"{REDIS_NAME}:6380"),
    "password from another secret": lambda objs: _find(objs, "RayCluster", "mto")["spec"]["gcsFaultToleranceOptions"]
    ["redisPassword"]["valueFrom"]["secretKeyRef"].update(name="other"),
    "job cluster without ft": lambda objs: _find(objs, "RayJob", "mto-train")["spec"]["rayClusterSpec"].pop(
        "gcsFaultToleranceOptions"),
    "redis without a password": lambda objs: _redis_deployment(objs)["spec"]["template"]["spec"]["containers"][0]
    .update(args=[_redis_deployment(objs)["spec"]["template"]["spec"]["containers"][0]["args"][0].replace(
        "requirepass $REDIS_PASSWORD\n", "")]),
    "redis on an emptyDir": lambda objs: _redis_deployment(objs)["spec"]["template"]["spec"].update(
        volumes=[{"name": "data", "emptyDir": {}}]),
}


@needs_kubectl
@pytest.mark.parametrize("mistake", sorted(GCS_FT_MISTAKES))
def test_gcs_fault_tolerance_check_catches_mistakes(rendered, mistake):
    objs = copy.deepcopy(rendered["gpu"])
    check_gcs_fault_tolerance(objs)
    GCS_FT_MISTAKES[mistake](objs)
    with pytest.raises(AssertionError):
        check_gcs_fault_tolerance(objs)


def _find(objs, kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _ray_container(objs, kind: str, name: str, group: int | None = None) -> dict[str, Any]:
    obj = _find(objs, kind, name)
    spec = obj["spec"]["rayClusterSpec"] if kind == "RayJob" else obj["spec"]
    template = spec["headGroupSpec"]["template"] if group is None else spec["workerGroupSpecs"][group]["template"]
    return template["spec"]["containers"][0]


# Each mistake must be caught by the check next to it: the checks assert something.
SECURITY_MISTAKES = {
    "mlflow without basic-auth": (check_mlflow_login, lambda objs: _find(objs, "Deployment", "mlflow")["spec"]["template"]
                                  ["spec"]["containers"][0]["args"].__setitem__(-1, "other-app")),
    "admin password written in": (check_mlflow_login, lambda objs: _find(objs, "Deployment", "mlflow")["spec"]["template"]
                                  ["spec"]["containers"][0]["env"].append({"name": "MLFLOW_AUTH_ADMIN_PASSWORD",
                                                                            "value": "hunter2"})),
    "ray worker without the mlflow login": (check_mlflow_login, lambda objs: _ray_container(objs, "RayJob", "mto-train", 0)
                                            .update(env=[])),
    "policy admits everyone to mlflow": (check_network_policies, lambda objs: _find(objs, "NetworkPolicy", "mlflow")
                                         ["spec"]["ingress"][0].pop("from")),
    "no policy for mlflow": (check_network_policies, lambda objs: objs.remove(_find(objs, "NetworkPolicy", "mlflow"))),
    "mlflow open to the submitter": (check_network_policies, lambda objs: _find(objs, "NetworkPolicy", "mlflow")["spec"]
                                     ["ingress"][0]["from"].append({"podSelector": {"matchLabels": {
                                         "app.kubernetes.io/name": "mto-submitter"}}})),
    "training open to the long-lived cluster": (check_network_policies, lambda objs: _find(
        objs, "NetworkPolicy", "mto-training")["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"].pop(
        "app.kubernetes.io/component")),
    "operator to every ray port": (check_network_policies, lambda objs: _find(objs, "NetworkPolicy", "mto-ray-cluster")
                                   ["spec"]["ingress"][1].pop("ports")),
    "ipBlock to ray": (check_network_policies, lambda objs: _find(objs, "NetworkPolicy", "mto-training")["spec"]
                       ["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})),
    "privilege escalation": (check_restricted, lambda objs: _ray_container(objs, "RayCluster", "mto", 0)
                             ["securityContext"].pop("allowPrivilegeEscalation")),
    "a capability kept": (check_restricted, lambda objs: _ray_container(objs, "RayJob", "mto-train")["securityContext"]
                          .update(capabilities={"drop": ["ALL"], "add": ["SYS_PTRACE"]})),
    "root": (check_restricted, lambda objs: _find(objs, "RayCluster", "mto")["spec"]["headGroupSpec"]["template"]["spec"]
             ["securityContext"].update(runAsUser=0)),
    "no seccomp": (check_restricted, lambda objs: _find(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]
                   ["securityContext"].pop("seccompProfile")),
    "hostPath volume": (check_restricted, lambda objs: _find(objs, "RayJob", "mto-train")["spec"]["rayClusterSpec"]
                        ["headGroupSpec"]["template"]["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}})),
    "autoscaler sidecar escalates": (check_restricted, lambda objs: _find(objs, "RayCluster", "mto")["spec"]
                                     ["autoscalerOptions"].pop("securityContext")),
    "worker mounts the token": (check_service_account_tokens, lambda objs: _find(objs, "RayCluster", "mto")["spec"]
                                ["workerGroupSpecs"][0]["template"]["spec"].pop("automountServiceAccountToken")),
    "autoscaling head without the token": (check_service_account_tokens, lambda objs: _find(objs, "RayJob", "mto-train")
                                           ["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"].update(
                                               automountServiceAccountToken=False)),
    "redis open to every pod": (check_network_policies, lambda objs: _find(objs, "NetworkPolicy", REDIS_NAME)["spec"]
                                ["ingress"][0]["from"][0]["podSelector"].update(matchLabels={})),
    "redis without a policy": (check_network_policies, lambda objs: objs.remove(_find(objs, "NetworkPolicy", REDIS_NAME))),
    "redis as root": (check_restricted, lambda objs: _redis_deployment(objs)["spec"]["template"]["spec"]
                      ["securityContext"].update(runAsUser=0)),
    "image by tag only": (check_images_pinned_by_digest, lambda objs: _ray_container(objs, "RayJob", "mto-train")
                          .update(image="registry.example.com/mto:ray2.60.0-py311-gpu")),
}


@needs_kubectl
@pytest.mark.parametrize("mistake", sorted(SECURITY_MISTAKES))
def test_security_checks_catch_mistakes(rendered, mistake):
    check, spoil = SECURITY_MISTAKES[mistake]
    objs = copy.deepcopy(rendered["gpu"])
    check(objs)
    spoil(objs)
    with pytest.raises(AssertionError):
        check(objs)
