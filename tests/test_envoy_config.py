"""envoy/envoy.yaml: valid, and in agreement with the server it fronts and with what the stack runs."""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from gcd_server.app import SERVICE_NAME
from gcd_server.settings import DEFAULT_METRICS_PORT, DEFAULT_PORT
from gcd_stack.envoy_config import (
    ADMIN_CLUSTER,
    CLUSTER,
    FILES_CLUSTER,
    FILES_LISTENER,
    HEALTH_CHECK_FILTER,
    PROBES_LISTENER,
    TRANSCODER,
    admin_socket,
    cluster,
    connection_manager,
    endpoint,
    file_routes,
    http_filter,
    local_config,
    openapi_path,
    packaged_config,
    route_named,
    write_local_config,
)
from gcd_stack.ports import Ports
from gcd_stack.processes import default_ports, envoy_command
from gcd_testing.ports import free_ports

from build_files import ERRORS
from processes import REPO, envoy_alone, forwarding_routes, local_envoy_config


def test_installed_config_is_the_repository_file() -> None:
    installed = packaged_config()
    assert installed == yaml.safe_load((REPO / "envoy" / "envoy.yaml").read_text())


def test_envoy_validates_the_config_as_the_stack_runs_it(tmp_path: Path) -> None:
    config_path = tmp_path / "envoy.yaml"
    write_local_config(
        config_path,
        Ports(envoy=18080, grpc=13000, sidecar=13001, envoy_metrics=19102, envoy_probes=18081, metrics=19103),
    )
    command = [*envoy_command(config_path), "--mode", "validate"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr


def test_ports_agree_with_the_server_default() -> None:
    assert default_ports() == Ports(
        envoy=8080, grpc=DEFAULT_PORT, sidecar=3001, envoy_metrics=9102, envoy_probes=8081, metrics=DEFAULT_METRICS_PORT
    ), "envoy/envoy.yaml's ports and gcd_server/settings.py's defaults differ from the documented ones"


def test_admin_listens_on_an_abstract_unix_socket_only() -> None:
    """No TCP port, not even on loopback, which a page in any browser can POST to; an abstract
    socket is bound to the pod's network namespace."""
    config = packaged_config()
    assert config["admin"]["address"] == {"pipe": {"path": "@gcd-envoy-admin"}}
    assert admin_socket(config) == "@gcd-envoy-admin"


def test_transcoder_and_health_check_name_the_server_service() -> None:
    config = packaged_config()
    assert http_filter(config, TRANSCODER)["services"] == [SERVICE_NAME]
    assert cluster(config)["health_checks"][0]["grpc_health_check"]["service_name"] == SERVICE_NAME
    health_check = http_filter(config, HEALTH_CHECK_FILTER, PROBES_LISTENER)
    assert health_check["cluster_min_healthy_percentages"] == {CLUSTER: {"value": 100}}


def test_the_public_port_forwards_grpc_and_grpc_web_for_the_service_alone() -> None:
    config = packaged_config()
    for name in ("grpc", "grpc_web", "grpc_web_not_post"):
        assert route_named(config, name)["match"]["prefix"] == f"/{SERVICE_NAME}/", (
            f"envoy/envoy.yaml's route {name} and proto/gcd/v1/gcd.proto's service differ"
        )


def test_routes_reach_the_server_and_only_prometheus_statistics_reach_the_admin_api() -> None:
    config = packaged_config()
    targets = {(route["match"].get("path"), route["route"]["cluster"]) for route in forwarding_routes(config)}
    assert targets == {(None, CLUSTER), (None, FILES_CLUSTER), ("/stats/prometheus", ADMIN_CLUSTER)}
    assert endpoint(config, ADMIN_CLUSTER)["address"] == config["admin"]["address"]


def test_the_public_port_passes_the_file_paths_and_no_other_to_the_files_listener() -> None:
    """The files route's regex is a copy of the files listener's paths."""
    config = packaged_config()
    pattern = re.compile(route_named(config, "files")["match"]["safe_regex"]["regex"])
    for path in file_routes(config):
        assert pattern.fullmatch(path), path
    for path in ("/docs/nowhere", "/docs/index.html", "/docs/../etc/passwd", "/openapi.jsonx", "/gcd/12/18"):
        assert not pattern.fullmatch(path), path
    internal = {"envoy_internal_address": {"server_listener_name": FILES_LISTENER}}
    assert endpoint(config, FILES_CLUSTER)["address"] == internal


def test_the_stack_changes_only_ports_addresses_admin_socket_and_descriptor_path() -> None:
    original = packaged_config()
    local = local_config(
        original,
        Ports(envoy=1, grpc=3, sidecar=7, envoy_metrics=4, envoy_probes=6, metrics=5),
        "/private/envoy-admin.sock",
    )
    assert admin_socket(local) == "/private/envoy-admin.sock"

    def masked(config: Any) -> Any:
        if isinstance(config, dict):
            return {
                key: "*"
                if key in ("port_value", "address", "proto_descriptor", "filename", "pipe")
                and (key == "pipe" or not isinstance(value, dict))
                else masked(value)
                for key, value in config.items()
            }
        if isinstance(config, list):
            return [masked(item) for item in config]
        return config

    assert local != original
    assert masked(local) == masked(original)


def envoy_error_codes() -> tuple[dict[int, int], dict[int, int]]:
    """What Envoy's local_reply mappers write into a REST client's body: the google.rpc code by
    the HTTP status the client gets, and by the status class of any other reply."""
    by_status: dict[int, int] = {}
    by_class: dict[int, int] = {}
    for mapper in connection_manager(packaged_config())["local_reply_config"]["mappers"]:
        comparison = mapper["filter"]["and_filter"]["filters"][1]["status_code_filter"]["comparison"]
        status = mapper.get("status_code", comparison["value"]["default_value"])
        code = mapper["body_format_override"]["json_format"]["code"]
        mapped = by_status if comparison["op"] == "EQ" else by_class
        key = status if comparison["op"] == "EQ" else status // 100
        assert mapped.setdefault(key, code) == code, f"envoy/envoy.yaml: HTTP {status} stands for two codes"
    return by_status, by_class


def test_envoys_replies_are_the_table_of_errors() -> None:
    by_status, by_class = envoy_error_codes()
    table = {reply.status: ERRORS.code_number(reply.code) for reply in ERRORS.REPLIES}
    assert by_status == table, "envoy/envoy.yaml's local_reply_config mappers and proto/errors.py's REPLIES differ"
    others = {status_class: ERRORS.code_number(code) for status_class, code in ERRORS.OTHER_REPLIES.items()}
    assert by_class == others, "envoy/envoy.yaml's last two mappers and proto/errors.py's OTHER_REPLIES differ"


def test_the_openapi_documents_errors_are_the_table_of_errors() -> None:
    document = json.loads(openapi_path().read_text())
    for path, operations in document["paths"].items():
        for verb, operation in operations.items():
            errors = {status: response["description"] for status, response in operation["responses"].items()}
            errors.pop("200")
            expected = ERRORS.openapi_descriptions(operation["description"])
            assert errors == expected, f"{verb} {path}: rebuild (pip install .)"


def test_the_api_guide_shows_the_table_of_errors() -> None:
    assert ERRORS.markdown_table() in (REPO / "docs" / "api.md").read_text(), (
        "docs/api.md: paste the output of python3 proto/errors.py over its table of errors"
    )


def test_a_second_envoy_on_a_busy_port_fails_instead_of_sharing_it(tmp_path: Path) -> None:
    """Envoy's default SO_REUSEPORT would let it bind beside another and take half the clients."""
    ports = free_ports()
    with envoy_alone(local_envoy_config(ports), ports, tmp_path):
        second = tmp_path / "second.yaml"
        second.write_text(yaml.safe_dump(local_config(packaged_config(), ports, "@gcd-test-second-envoy")))
        result = subprocess.run(envoy_command(second), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"cannot bind '127.0.0.1:{ports.envoy}': Address already in use" in result.stderr
