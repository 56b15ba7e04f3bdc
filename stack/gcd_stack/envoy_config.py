"""envoy/envoy.yaml, adapted to run on this machine: the same config with other ports.

Only what must differ on a workstation is replaced: the ports, the bind addresses (loopback, so
nothing is exposed to the network), the admin API's unix socket (the pod's abstract one would be
shared by every stack on this machine; here it sits in a private directory) and the paths of
the files the build generated (the descriptor set, the OpenAPI document, the /docs page),
installed with the gcd package here and baked into the image under /etc/envoy there, in the same
layout. Everything else is exactly what the pod runs.
"""

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gcd_stack.ports import Ports

LOOPBACK = "127.0.0.1"
LISTENER = "gcd_http"
METRICS_LISTENER = "metrics"
PROBES_LISTENER = "probes"
# The internal listener that answers the public port's files, and the cluster that reaches it.
FILES_LISTENER = "files"
FILES_CLUSTER = "files"
CLUSTER = "gcd_server"
ADMIN_CLUSTER = "envoy_admin"
CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
CONNECTION_LIMIT = "envoy.filters.network.connection_limit"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
CORS_FILTER = "envoy.filters.http.cors"
# The Envoy container's variable that lists the origins allowed to call from browsers; read by
# the CORS policy's Lua matcher in envoy/envoy.yaml (a test holds the two alike).
CORS_ORIGINS_VARIABLE = "GCD_CORS_ALLOWED_ORIGINS"
HEALTH_CHECK_FILTER = "envoy.filters.http.health_check"

Config = dict[str, Any]


def packaged_config() -> Config:
    """The envoy/envoy.yaml that was installed with this package."""
    config: Config = yaml.safe_load(resources.files("gcd_stack").joinpath("envoy.yaml").read_text())
    return config


# Where the image keeps what the build generated; the gcd.v1 package holds the same files.
IMAGE_FILES = "/etc/envoy/"


def installed_file(image_path: str) -> Path:
    """The installed copy of a file the image keeps under IMAGE_FILES."""
    return Path(str(resources.files("gcd.v1").joinpath(image_path.removeprefix(IMAGE_FILES))))


def descriptor_set_path() -> Path:
    """The descriptor set the build generated from proto/, installed beside gcd_pb2."""
    return installed_file(IMAGE_FILES + "gcd.pb")


def openapi_path() -> Path:
    """The OpenAPI document the build generated from proto/, installed beside gcd_pb2."""
    return installed_file(IMAGE_FILES + "openapi.json")


def _with_installed_files(node: Any) -> Any:
    """node with every path under IMAGE_FILES replaced by the installed file's."""
    if isinstance(node, dict):
        return {key: _with_installed_files(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_installed_files(item) for item in node]
    if isinstance(node, str) and node.startswith(IMAGE_FILES):
        return str(installed_file(node))
    return node


def _socket_address(holder: Config) -> Config:
    address: Config = holder["address"]["socket_address"]
    return address


def _listener(config: Config, name: str = LISTENER) -> Config:
    return next(item for item in config["static_resources"]["listeners"] if item["name"] == name)


def cluster(config: Config, name: str = CLUSTER) -> Config:
    found: Config = next(item for item in config["static_resources"]["clusters"] if item["name"] == name)
    return found


def endpoint(config: Config, cluster_name: str) -> Config:
    """The one endpoint of a cluster."""
    found: Config = cluster(config, cluster_name)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    return found


def _upstream(config: Config, cluster_name: str = CLUSTER) -> Config:
    return _socket_address(endpoint(config, cluster_name))


def _network_filter(config: Config, listener: str, name: str) -> Config:
    """The typed_config of the named network filter of a listener."""
    filters = _listener(config, listener)["filter_chains"][0]["filters"]
    typed_config: Config = next(item for item in filters if item["name"] == name)["typed_config"]
    return typed_config


def connection_manager(config: Config, listener: str = LISTENER) -> Config:
    """The HTTP connection manager of a listener: its routes, filters and timeouts."""
    return _network_filter(config, listener, CONNECTION_MANAGER)


def resource_monitor(config: Config, name: str) -> Config:
    """The typed_config of one of the overload manager's resource monitors, by name."""
    monitors = config["overload_manager"]["resource_monitors"]
    typed_config: Config = next(monitor for monitor in monitors if monitor["name"] == name)["typed_config"]
    return typed_config


def heap_budget(config: Config) -> int:
    """Envoy's heap budget: the fixed_heap monitor's maximum, which its memory limit is sized by."""
    budget: int = resource_monitor(config, "envoy.resource_monitors.fixed_heap")["max_heap_size_bytes"]
    return budget


def heap_threshold(config: Config, action: str) -> float:
    """The share of the fixed_heap monitor's maximum at which the overload manager takes action."""
    actions = config["overload_manager"]["actions"]
    (trigger,) = next(entry for entry in actions if entry["name"] == action)["triggers"]
    threshold: float = trigger["threshold"]["value"]
    return threshold


def connection_limit(config: Config, listener: str = LISTENER) -> int:
    """The most client connections a listener keeps open at once (its connection_limit filter)."""
    limit: int = _network_filter(config, listener, CONNECTION_LIMIT)["max_connections"]
    return limit


def http_filter(config: Config, name: str, listener: str = LISTENER) -> Config:
    """The typed_config of the named HTTP filter on a listener (the REST/gRPC one by default)."""
    manager = connection_manager(config, listener)
    typed_config: Config = next(item for item in manager["http_filters"] if item["name"] == name)["typed_config"]
    return typed_config


def stat_prefix(config: Config) -> str:
    """The prefix of the REST/gRPC listener's statistics (http.<prefix>.*)."""
    prefix: str = connection_manager(config)["stat_prefix"]
    return prefix


def _virtual_host(config: Config, listener: str = LISTENER) -> Config:
    """A listener's one virtual host (the REST/gRPC listener's by default)."""
    host: Config = connection_manager(config, listener)["route_config"]["virtual_hosts"][0]
    return host


def cors_routes(config: Config) -> dict[str, Config]:
    """The routes with a CORS policy, by name, and their policies."""
    return {
        route["name"]: route["typed_per_filter_config"][CORS_FILTER]
        for route in routes(config)
        if CORS_FILTER in route.get("typed_per_filter_config", {})
    }


def cors_policy(config: Config) -> Config:
    """The one CORS policy, which every route of the API carries (the REST route's)."""
    return cors_routes(config)["rest"]


def routes(config: Config, listener: str = LISTENER) -> list[Config]:
    found: list[Config] = _virtual_host(config, listener)["routes"]
    return found


def route_named(config: Config, name: str) -> Config:
    """One route of the REST/gRPC listener, by its name in envoy/envoy.yaml."""
    route: Config = next(route for route in routes(config) if route.get("name") == name)
    return route


def file_routes(config: Config) -> dict[str, Config]:
    """The routes that answer with a file, by path: the OpenAPI document and the /docs page."""
    return {
        route["match"]["path"]: route
        for route in routes(config, FILES_LISTENER)
        if "filename" in route.get("direct_response", {}).get("body", {})
    }


def health_path(config: Config) -> str:
    """The readiness path, which the probes listener serves."""
    health_check = http_filter(config, HEALTH_CHECK_FILTER, PROBES_LISTENER)
    path: str = health_check["headers"][0]["string_match"]["exact"]
    return path


def _admin_pipes(config: Config) -> list[Config]:
    """The admin API's unix socket, as the admin server and the cluster that scrapes it name it."""
    return [config["admin"]["address"]["pipe"], endpoint(config, ADMIN_CLUSTER)["address"]["pipe"]]


def admin_socket(config: Config) -> str:
    """The unix socket the admin API listens on; a leading @ names an abstract one."""
    path: str = _admin_pipes(config)[0]["path"]
    return path


def local_config(config: Config, ports: Ports, admin_socket_path: str | None = None) -> Config:
    """config with the given ports, every address on loopback, the admin API on the unix socket
    admin_socket_path (by default abstract_admin_socket(ports)), and the generated files that
    were installed with the package."""
    local: Config = _with_installed_files(config)
    for address, port in (
        (_socket_address(_listener(local)), ports.envoy),
        (_upstream(local), ports.sidecar),
        (_socket_address(_listener(local, METRICS_LISTENER)), ports.envoy_metrics),
        (_socket_address(_listener(local, PROBES_LISTENER)), ports.envoy_probes),
    ):
        address["address"] = LOOPBACK
        address["port_value"] = port
    for pipe in _admin_pipes(local):
        pipe["path"] = admin_socket_path or abstract_admin_socket(ports)
    return local


def write_local_config(path: Path, ports: Ports, admin_socket_path: str | None = None) -> None:
    """local_config of the installed envoy/envoy.yaml, written where Envoy can read it."""
    path.write_text(yaml.safe_dump(local_config(packaged_config(), ports, admin_socket_path)))


def abstract_admin_socket(ports: Ports) -> str:
    """An abstract admin socket for an Envoy on ports: the pod's, made unique on this machine by
    Envoy's port; what the tests and the benchmark use (gcd-stack's is in a private directory)."""
    return f"{admin_socket(packaged_config())}-{ports.envoy}"


def ports_of(config: Config, grpc: int, metrics: int) -> Ports:
    """The ports config gives Envoy and the server's sidecar port it dials, with gcd-server's
    gRPC and metrics ports, which it does not name."""
    return Ports(
        envoy=_socket_address(_listener(config))["port_value"],
        grpc=grpc,
        sidecar=_upstream(config)["port_value"],
        envoy_metrics=_socket_address(_listener(config, METRICS_LISTENER))["port_value"],
        envoy_probes=_socket_address(_listener(config, PROBES_LISTENER))["port_value"],
        metrics=metrics,
    )
