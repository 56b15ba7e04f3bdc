"""The GitHub Actions workflow a fork runs: valid against GitHub's workflow schema (offline, as
check-jsonschema ships it), running what CI runs here, and building what the Dockerfile builds."""

import subprocess

import yaml

from deployment import dockerfile_stages
from processes import REPO, SCRIPTS

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def test_the_workflow_validates_against_githubs_schema() -> None:
    command = [str(SCRIPTS / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)]
    checked = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_workflow_runs_ci_and_builds_both_images_for_both_platforms() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert any(".ci/run" in step.get("run", "") for step in jobs["test"]["steps"])
    build = next(step for step in jobs["images"]["steps"] if step.get("uses", "").startswith("docker/build-push"))
    assert build["with"]["file"] == "docker/Dockerfile"
    assert set(jobs["images"]["strategy"]["matrix"]["target"]) == set(dockerfile_stages()) - {"wheel"}
    assert set(build["with"]["platforms"].split(",")) == {"linux/arm64", "linux/amd64"}
    # Pushes happen for a version tag only.
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
