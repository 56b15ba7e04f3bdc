"""The dashboard and the alerting rules, proven against a real Prometheus (Debian's package):
promtool checks and unit-tests the rules; a Prometheus scraping a running gcd-stack evaluates
every dashboard query and every alert expression, and each must return data."""

import re
import subprocess
import textwrap
from collections.abc import Iterator

import pytest
import yaml

from gcd_testing.prometheus import (
    DEBIAN_PACKAGES,
    PROMETHEUS,
    PROMTOOL,
    metric_names,
    query,
    rule_groups,
    wait_for_samples,
)

from build_files import ERRORS
from deployment import find, render
from figures import record_figure
from monitoring import COMPONENT, DASHBOARD, RULES, Watched, alert_rules, dashboard_queries, drive, watched_stack
from processes import REPO

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason=f"needs Prometheus: apt-get install {' '.join(DEBIAN_PACKAGES)} (.ci/run does)",
)
RULE_TESTS = REPO / "tests" / "data" / "monitoring" / "rules.test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
# Seconds of traffic before the queries run: more than the rate interval, so every rate has data.
TRAFFIC_SECONDS = 12


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_prometheus
def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


@needs_prometheus
def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert firing == quiet == {rule["alert"] for rule in alert_rules()}


def test_the_grpc_alert_counts_the_server_faults_of_the_table_of_errors() -> None:
    (rule,) = [rule for rule in alert_rules() if rule["alert"] == "GcdGrpcServerErrors"]
    (codes,) = re.findall(r'grpc_code=~"([^"]+)"', rule["expr"])
    assert set(codes.split("|")) == {code.name for code in ERRORS.SERVER_FAULTS}, (
        f"{RULES.relative_to(REPO)}'s GcdGrpcServerErrors and proto/errors.py's SERVER_FAULTS differ"
    )


def test_the_operators_rule_wraps_the_plain_rules_file() -> None:
    """The groups, comments included, indented under spec: a copy to the letter."""
    wrapped = (COMPONENT / "prometheusrule.yaml").read_text()
    rules = RULES.read_text()
    assert wrapped.endswith("spec:\n" + textwrap.indent(rules[rules.index("groups:") :], "  ")), (
        "kustomize/components/monitoring/prometheusrule.yaml: copy gcd-service.rules.yaml's groups under spec"
    )
    assert yaml.safe_load(wrapped)["spec"] == yaml.safe_load(rules)


def test_every_alert_links_to_its_runbook_section() -> None:
    headings = re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in headings}
    for rule in alert_rules():
        page, anchor = rule["annotations"]["runbook_url"].split("#")
        assert (REPO / page) == OPERATIONS and anchor in anchors, rule["alert"]


def test_the_component_deploys_dashboard_rules_and_scraping() -> None:
    rendered = render("pi-monitored")
    dashboard = find(rendered, "ConfigMap", "gcd-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"][DASHBOARD.name] == DASHBOARD.read_text()
    assert find(rendered, "PrometheusRule")["spec"] == yaml.safe_load(RULES.read_text())
    # The PodMonitor names ports the pod declares, and the paths served on them.
    pod = find(rendered, "Deployment")["spec"]["template"]["spec"]
    declared = {port["name"] for each in pod["initContainers"] + pod["containers"] for port in each["ports"]}
    monitor = find(rendered, "PodMonitor")["spec"]
    assert {endpoint["port"] for endpoint in monitor["podMetricsEndpoints"]} <= declared
    labels = find(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()


def test_rules_name_the_deployment_and_namespace_the_manifests_create() -> None:
    deployment = find(render("pi"), "Deployment")["metadata"]
    for rule in alert_rules():
        for name, value in re.findall(r'\b(namespace|deployment)="([^"]*)"', rule["expr"]):
            assert value == deployment[name if name == "namespace" else "name"], rule["alert"]


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    with watched_stack(tmp_path_factory.mktemp("watched")) as watching:
        drive(watching, TRAFFIC_SECONDS)
        for _, _, expr in dashboard_queries(watching.namespace):
            wait_for_samples(watching.prometheus, expr, timeout=30)
        yield watching


def signal_of(expr: str) -> str:
    """An alert expression without its final comparison: what the alert watches."""
    return re.split(r"\s(?:>|<|==)\s(?=[^<>]*$)", expr.strip())[0]


@needs_prometheus
def test_every_dashboard_query_returns_data(watched: Watched) -> None:
    queries = dashboard_queries(watched.namespace)
    empty = [(title, legend) for title, legend, expr in queries if not query(watched.prometheus, expr)]
    with_data = f"{len(queries) - len(empty)} of {len(queries)}"
    record_figure("dashboard queries evaluated on a real Prometheus, with data", with_data)
    assert not empty


@needs_prometheus
def test_every_metric_named_is_one_the_service_or_the_cluster_exports(watched: Watched) -> None:
    expressions = [expr for _, _, expr in dashboard_queries(watched.namespace)] + [r["expr"] for r in alert_rules()]
    names = set().union(*(metric_names(expr) for expr in expressions))
    missing = [name for name in sorted(names) if not query(watched.prometheus, f'count({{__name__="{name}"}})')]
    assert not missing


@needs_prometheus
def test_every_alert_watches_a_signal_with_data_and_evaluates_cleanly(watched: Watched) -> None:
    for rule in alert_rules():
        assert query(watched.prometheus, signal_of(rule["expr"])), rule["alert"]
        query(watched.prometheus, rule["expr"])  # raises on an error
    # The rules Prometheus loaded from the same file: all evaluated, none failed, none firing on a
    # healthy stack (a slow moment on a loaded machine may leave the latency alert pending).
    loaded = [
        rule
        for group in rule_groups(watched.prometheus)
        for rule in group["rules"]
        if rule.get("lastEvaluation", "").startswith("2")
    ]
    healthy = [rule for rule in loaded if rule["health"] == "ok" and rule["state"] != "firing"]
    record_figure(
        "alert rules evaluated on a real Prometheus, healthy and not firing", f"{len(healthy)} of {len(alert_rules())}"
    )
    assert {rule["name"] for rule in loaded} == {rule["alert"] for rule in alert_rules()}
    assert [
        (rule["name"], rule["health"], rule.get("lastError"), rule["state"]) for rule in loaded if rule not in healthy
    ] == []
