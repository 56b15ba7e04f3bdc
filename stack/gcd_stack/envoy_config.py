"""envoy/envoy.yaml, adapted to run on this machine: the same config with other ports.

Only what must differ on a workstation is replaced: the ports, the bind addresses (loopback, so
nothing is exposed to the network) and the paths of the descriptor set and the OpenAPI document
(installed with the gcd package rather than baked into the image at /etc/envoy). Everything else
is exactly what the pod runs.
"""

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gcd_stack.ports import Ports

LOOPBACK = "127.0.0.1"
LISTENER = "gcd_http"
METRICS_LISTENER = "metrics"
CLUSTER = "gcd_server"
ADMIN_CLUSTER = "envoy_admin"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
HEALTH_CHECK_FILTER = "envoy.filters.http.health_check"

Config = dict[str, Any]


def packaged_config() -> Config:
    """The envoy/envoy.yaml that was installed with this package."""
    config: Config = yaml.safe_load(resources.files("gcd_stack").joinpath("envoy.yaml").read_text())
    return config


def descriptor_set_path() -> Path:
    """The descriptor set the build generated from proto/, installed beside gcd_pb2."""
    return Path(str(resources.files("gcd.v1").joinpath("gcd.pb")))


def openapi_path() -> Path:
    """The OpenAPI document the build generated from proto/, installed beside gcd_pb2."""
    return Path(str(resources.files("gcd.v1").joinpath("openapi.json")))


def _socket_address(holder: Config) -> Config:
    address: Config = holder["address"]["socket_address"]
    return address


def _listener(config: Config, name: str = LISTENER) -> Config:
    return next(item for item in config["static_resources"]["listeners"] if item["name"] == name)


def cluster(config: Config, name: str = CLUSTER) -> Config:
    found: Config = next(item for item in config["static_resources"]["clusters"] if item["name"] == name)
    return found


def _upstream(config: Config, cluster_name: str = CLUSTER) -> Config:
    endpoint = cluster(config, cluster_name)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    return _socket_address(endpoint)


def connection_manager(config: Config, listener: str = LISTENER) -> Config:
    """The HTTP connection manager of a listener: its routes, filters and timeouts."""
    manager: Config = _listener(config, listener)["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def http_filter(config: Config, name: str) -> Config:
    """The typed_config of the named HTTP filter on the REST/gRPC listener."""
    manager = connection_manager(config)
    typed_config: Config = next(item for item in manager["http_filters"] if item["name"] == name)["typed_config"]
    return typed_config


def stat_prefix(config: Config) -> str:
    """The prefix of the REST/gRPC listener's statistics (http.<prefix>.*)."""
    prefix: str = connection_manager(config)["stat_prefix"]
    return prefix


def openapi_route(config: Config) -> Config:
    """The route that serves the OpenAPI document."""
    routes = connection_manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    route: Config = next(route for route in routes if "direct_response" in route)
    return route


def health_path(config: Config) -> str:
    path: str = http_filter(config, HEALTH_CHECK_FILTER)["headers"][0]["string_match"]["exact"]
    return path


def local_config(config: Config, ports: Ports) -> Config:
    """config with the given ports, every address on loopback, and the generated files that
    were installed with the package."""
    local = copy.deepcopy(config)
    for address, port in (
        (_socket_address(_listener(local)), ports.envoy),
        (_socket_address(local["admin"]), ports.envoy_admin),
        (_upstream(local), ports.grpc),
        (_socket_address(_listener(local, METRICS_LISTENER)), ports.envoy_metrics),
        (_upstream(local, ADMIN_CLUSTER), ports.envoy_admin),
    ):
        address["address"] = LOOPBACK
        address["port_value"] = port
    http_filter(local, TRANSCODER)["proto_descriptor"] = str(descriptor_set_path())
    openapi_route(local)["direct_response"]["body"]["filename"] = str(openapi_path())
    return local


def write_local_config(path: Path, ports: Ports) -> None:
    """local_config of the installed envoy/envoy.yaml, written where Envoy can read it."""
    path.write_text(yaml.safe_dump(local_config(packaged_config(), ports)))


def ports_of(config: Config, metrics: int) -> Ports:
    """The ports config gives Envoy and the server's gRPC port it dials, with gcd-server's metrics
    port, which it does not name."""
    return Ports(
        envoy=_socket_address(_listener(config))["port_value"],
        envoy_admin=_socket_address(config["admin"])["port_value"],
        grpc=_upstream(config)["port_value"],
        envoy_metrics=_socket_address(_listener(config, METRICS_LISTENER))["port_value"],
        metrics=metrics,
    )
