"""The GitHub Actions workflow a fork runs: valid against GitHub's workflow schema (offline, as
check-jsonschema ships it), running what CI runs here, building what the Dockerfile builds, and
using actions pinned to commits."""

import re
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


# A tag can be moved to other code by whoever controls the action's repository; a commit cannot.
# The comment names the release, for readers and for Dependabot, which updates both together.
PINNED = re.compile(r"(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+")


def test_every_action_is_pinned_to_a_full_commit_sha_naming_its_release() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    # A job calling a reusable workflow has uses of its own and no steps.
    used = [each["uses"] for job in jobs.values() for each in [job, *job.get("steps", [])] if "uses" in each]
    # Comments are lost to the YAML parser: the lines themselves are checked, every one of them.
    lines = [line.strip() for line in WORKFLOW.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert used and len(lines) == len(used)
    for line in lines:
        assert PINNED.fullmatch(line), line
