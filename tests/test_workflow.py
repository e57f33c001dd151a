"""The Gaudi workflows cannot run here: check they are valid YAML that runs the gate as
documented, and that they follow GitHub's hardening guidance for self-hosted runners."""

import re
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
yaml = pytest.importorskip("yaml", reason="pyyaml is in the dev extra")


def _load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on` as true
    return document


@pytest.fixture(scope="module")
def bench():
    return _load("gaudi-benchmarks.yml")


@pytest.fixture(scope="module")
def comment():
    return _load("gaudi-benchmarks-comment.yml")


@pytest.fixture(scope="module")
def ab():
    return _load("gaudi-ab.yml")


def _steps(job: dict) -> list[dict]:
    return job["steps"]


def test_gaudi_workflow_runs_pytest_gate_compare_and_uploads(bench):
    job = bench["jobs"]["hpu"]
    assert "self-hosted" in job["runs-on"] and "gaudi2" in job["runs-on"]
    assert "--runtime=habana" in job["container"]["options"]
    scripts = "\n".join(step.get("run", "") for step in _steps(job))
    assert 'pip install -e ".[hpu,dev]" -c constraints.txt' in scripts
    assert "pytest benchmarks --device hpu" in scripts
    assert "asrbench compare --report reports/hpu.json --markdown" in scripts
    uses = [step.get("uses", "") for step in _steps(job)]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)


def test_pull_request_code_reaches_the_runner_only_when_trusted(bench):
    assert "pull_request_target" not in bench["on"]  # never PR code with the base's secrets
    job = bench["jobs"]["hpu"]
    condition = job["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "contains(github.event.pull_request.labels.*.name, 'gaudi-benchmarks')" in condition
    assert job["environment"] == "gaudi"  # a protected environment: a maintainer approves


def test_minimal_token_and_no_credentials_left_in_the_checkout(bench):
    assert bench["permissions"] == {"contents": "read"}
    assert "permissions" not in bench["jobs"]["hpu"]
    checkout = next(s for s in _steps(bench["jobs"]["hpu"])
                    if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False


def test_the_hub_token_is_only_in_a_download_step_before_any_pull_request_code(bench):
    job = bench["jobs"]["hpu"]
    assert "HF_TOKEN" not in job.get("env", {})
    steps = _steps(job)
    with_token = [i for i, s in enumerate(steps) if "HF_TOKEN" in str(s.get("env", {}))]
    assert len(with_token) == 1
    download = steps[with_token[0]]
    assert download["working-directory"] == "/tmp" and "python -I" in download["run"]
    install = next(i for i, s in enumerate(steps) if "pip install -e" in s.get("run", ""))
    assert with_token[0] < install  # before the pull request's package is installed
    # offline everywhere (job level); only the download step turns it off
    assert job["env"]["HF_HUB_OFFLINE"] == "1" and job["env"]["HF_DATASETS_OFFLINE"] == "1"
    online = [s["name"] for s in steps if s.get("env", {}).get("HF_HUB_OFFLINE") == "0"]
    assert online == [download["name"]]
    # no ${{ }} expression from the event is pasted into a shell script
    for step in steps:
        assert "${{" not in step.get("run", ""), step["name"]


def test_image_pinned_by_digest_and_actions_by_commit(bench, comment, ab):
    for job in (bench["jobs"]["hpu"], ab["jobs"]["ab"]):
        assert job["container"]["image"] == "${{ vars.GAUDI_IMAGE }}"
        guard = _steps(job)[0]
        assert "@sha256:" in guard["run"] and "exit 1" in guard["run"]
    for workflow in (bench, comment, ab):
        for each in workflow["jobs"].values():
            for step in each["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


def test_the_comment_is_posted_by_a_workflow_that_runs_no_pull_request_code(bench, comment):
    assert "pull-requests" not in str(bench.get("permissions"))
    assert set(comment["on"]) == {"workflow_run"}
    assert comment["on"]["workflow_run"]["workflows"] == [bench["name"], "gaudi-ab"]
    assert comment["permissions"] == {"actions": "read", "pull-requests": "write"}
    steps = comment["jobs"]["comment"]["steps"]
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in steps)
    assert not any("run" in s for s in steps)  # no shell, no pip, no python from the PR
    script = steps[-1]["with"]["script"]
    assert "pr.head.sha !== context.payload.workflow_run.head_sha" in script
    assert "/^[0-9]{1,9}$/" in script


def test_ab_workflow_checks_out_and_sets_up_both_sides_and_runs_asrbench_ab(ab):
    assert ab["name"] == "gaudi-ab" and set(ab["on"]) == {"pull_request"}
    assert ab["permissions"] == {"contents": "read"}
    job = ab["jobs"]["ab"]
    assert job["environment"] == "gaudi"
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]
    steps = _steps(job)
    checkouts = [s for s in steps if s.get("uses", "").startswith("actions/checkout@")]
    assert [c["with"]["path"] for c in checkouts] == ["base", "head"]
    assert checkouts[0]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert all(c["with"]["persist-credentials"] is False for c in checkouts)
    # the Hub token: one step, before either checkout exists or is installed
    with_token = [i for i, s in enumerate(steps) if "HF_TOKEN" in str(s.get("env", {}))]
    first_checkout = steps.index(checkouts[0])
    assert len(with_token) == 1 and with_token[0] < first_checkout
    assert "HF_TOKEN" not in job.get("env", {})
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "${{" not in scripts
    setup = next(s["run"] for s in steps if "venv" in s.get("run", ""))
    assert 'for side in base head' in setup and '-c "$side/constraints.txt"' in setup
    run = next(s["run"] for s in steps if "asrbench ab" in s.get("run", ""))
    for flag in ("--base-python base/.venv/bin/python", "--head-python head/.venv/bin/python",
                 "--base-cwd base", "--head-cwd head", "--graphs",
                 "--markdown reports/hpu-summary.md"):
        assert flag in run, flag
    # every option the workflow passes is one `asrbench ab` accepts
    from asrbench.cli.main import build_parser

    argv = run.replace("\\\n", " ").split("asrbench ab", 1)[1].split()
    build_parser().parse_args(["ab", *argv])
