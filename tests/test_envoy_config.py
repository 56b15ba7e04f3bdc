"""envoy/envoy.yaml: valid, and in agreement with the server it fronts and with what the stack runs."""

import subprocess
from pathlib import Path
from typing import Any

import yaml

from gcd_server.app import SERVICE_NAME
from gcd_server.settings import DEFAULT_PORT
from gcd_stack.envoy_config import (
    CLUSTER,
    HEALTH_CHECK_FILTER,
    TRANSCODER,
    Ports,
    descriptor_set_path,
    http_filter,
    local_config,
    packaged_config,
    ports_of,
)
from gcd_stack.stack import envoy_command, write_local_envoy_config

from helpers import REPO, routes


def test_installed_config_is_the_repository_file() -> None:
    installed = packaged_config()
    assert installed == yaml.safe_load((REPO / "envoy" / "envoy.yaml").read_text())


def test_envoy_validates_the_config_as_the_stack_runs_it(tmp_path: Path) -> None:
    config_path = tmp_path / "envoy.yaml"
    write_local_envoy_config(config_path, Ports(rest=18080, admin=19901, grpc=13000))
    command = [*envoy_command(config_path), "--mode", "validate"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr


def test_ports_agree_with_the_server_default() -> None:
    assert ports_of(packaged_config()) == Ports(rest=8080, admin=9901, grpc=DEFAULT_PORT)


def test_admin_listens_on_loopback_only() -> None:
    assert packaged_config()["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_transcoder_and_health_check_name_the_server_service() -> None:
    config = packaged_config()
    assert http_filter(config, TRANSCODER)["services"] == [SERVICE_NAME]
    (cluster,) = config["static_resources"]["clusters"]
    assert cluster["name"] == CLUSTER
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == SERVICE_NAME
    assert http_filter(config, HEALTH_CHECK_FILTER)["cluster_min_healthy_percentages"] == {CLUSTER: {"value": 100}}


def test_every_route_goes_to_the_server_cluster() -> None:
    assert {route["route"]["cluster"] for route in routes(packaged_config())} == {CLUSTER}


def test_the_stack_changes_only_ports_addresses_and_descriptor_path() -> None:
    original = packaged_config()
    local = local_config(original, Ports(rest=1, admin=2, grpc=3), descriptor_set_path())

    def masked(config: Any) -> Any:
        if isinstance(config, dict):
            return {
                key: "*"
                if key in ("port_value", "address", "proto_descriptor") and not isinstance(value, dict)
                else masked(value)
                for key, value in config.items()
            }
        if isinstance(config, list):
            return [masked(item) for item in config]
        return config

    assert local != original
    assert masked(local) == masked(original)
