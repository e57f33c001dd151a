"""The Gaudi workflows cannot run here: check they are valid YAML that runs the gate as
documented, and that they follow GitHub's hardening guidance for self-hosted runners."""

import json
import re
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="module")
def unlabel():
    return _load("gaudi-benchmarks-unlabel.yml")


def _steps(job: dict) -> list[dict]:
    return job["steps"]


def test_gaudi_workflow_runs_pytest_gate_compare_and_uploads(bench):
    job = bench["jobs"]["hpu"]
    assert '"self-hosted", "linux", "gaudi2"' in job["runs-on"]
    assert "--runtime=habana" in job["container"]["options"]
    scripts = "\n".join(step.get("run", "") for step in _steps(job))
    assert 'pip install -e ".[hpu,dev]" -c constraints.txt' in scripts
    assert "pytest benchmarks --device hpu" in scripts
    assert "asrbench compare --report reports/hpu.json --markdown" in scripts
    uses = [step.get("uses", "") for step in _steps(job)]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)


FORK_LABELLED = ("(github.event.action == 'labeled' && "
                 "github.event.label.name == 'gaudi-benchmarks')")


def test_pull_request_code_reaches_the_runner_only_when_trusted(bench, ab):
    for workflow, job in ((bench, bench["jobs"]["hpu"]), (ab, ab["jobs"]["ab"])):
        assert "pull_request_target" not in workflow["on"]  # never PR code with base secrets
        condition = " ".join(job["if"].split())
        assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
        # a fork: on the maintainer's `labeled` event only; the label still listed on a later
        # `synchronize` event lets nothing in
        assert FORK_LABELLED in condition
        assert "labels.*.name" not in condition
        assert job["environment"] == "gaudi"  # a protected environment: a maintainer approves


def _pools(runs_on: str) -> tuple[list[str], list[str]]:
    """(pull-request labels, push/dispatch labels) of the benchmark job's runs-on expression."""
    match = re.fullmatch(r"\$\{\{ github\.event_name == 'pull_request' && fromJSON\('(.*?)'\) "
                         r"\|\| fromJSON\('(.*?)'\) \}\}", " ".join(runs_on.split()))
    assert match, runs_on
    return json.loads(match.group(1)), json.loads(match.group(2))


def test_pull_requests_and_the_history_secret_never_share_a_runner_pool(bench, ab):
    untrusted, trusted = _pools(bench["jobs"]["hpu"]["runs-on"])
    assert untrusted == ["self-hosted", "linux", "gaudi2", "pr-untrusted"]
    assert trusted == ["self-hosted", "linux", "gaudi2", "trusted"]
    assert ab["jobs"]["ab"]["runs-on"] == untrusted  # A/B runs pull-request code only
    # the history secret only in steps that run on push (the trusted pool)
    for step in _steps(bench["jobs"]["hpu"]):
        if "ASRBENCH_HISTORY_URL" in str(step.get("env", {})):
            assert "github.event_name == 'push'" in (step.get("if", "") + str(step["env"]))
    assert "ASRBENCH_HISTORY_URL" not in (WORKFLOWS / "gaudi-ab.yml").read_text()
    text = (WORKFLOWS / "gaudi-benchmarks.yml").read_text()
    assert "pr-untrusted" in text.split("name:", 1)[0]  # the header comment documents the pools


def test_a_new_push_to_a_fork_removes_the_label(unlabel):
    assert unlabel["on"] == {"pull_request_target": {"types": ["synchronize"]}}
    assert unlabel["permissions"] == {}
    (job,) = unlabel["jobs"].values()
    assert job["permissions"] == {"pull-requests": "write"}
    assert "github.event.pull_request.head.repo.full_name != github.repository" in job["if"]
    steps = _steps(job)
    assert not any("uses" in s for s in steps)  # no checkout, no action: nothing from the PR
    (step,) = steps
    assert step["run"] == 'gh pr edit "$NUMBER" --remove-label gaudi-benchmarks'
    assert step["env"]["NUMBER"] == "${{ github.event.pull_request.number }}"
    assert step["env"]["GH_REPO"] == "${{ github.repository }}"
    text = (WORKFLOWS / "gaudi-benchmarks-unlabel.yml").read_text()
    assert "synchronize" in text.split("name:", 1)[0]  # said in the comments


def test_permissions_are_per_job_and_minimal(bench, ab, comment, unlabel):
    for workflow in (bench, ab, comment, unlabel):
        assert workflow["permissions"] == {}
        for job in workflow["jobs"].values():
            assert "permissions" in job
    assert bench["jobs"]["hpu"]["permissions"] == {"contents": "read"}
    assert ab["jobs"]["ab"]["permissions"] == {"contents": "read"}


def test_minimal_token_and_no_credentials_left_in_the_checkout(bench):
    assert bench["jobs"]["hpu"]["permissions"] == {"contents": "read"}
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
    assert "pull-requests" not in str(bench["jobs"]["hpu"].get("permissions"))
    assert set(comment["on"]) == {"workflow_run"}
    assert comment["on"]["workflow_run"]["workflows"] == [bench["name"], "gaudi-ab"]
    assert comment["jobs"]["comment"]["permissions"] == {"actions": "read",
                                                         "pull-requests": "write"}
    steps = comment["jobs"]["comment"]["steps"]
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in steps)
    assert not any("run" in s for s in steps)  # no shell, no pip, no python from the PR
    script = steps[-1]["with"]["script"]
    assert "pr.head.sha !== context.payload.workflow_run.head_sha" in script
    assert "/^[0-9]{1,9}$/" in script


def test_ab_workflow_checks_out_and_sets_up_both_sides_and_runs_asrbench_ab(ab):
    assert ab["name"] == "gaudi-ab" and set(ab["on"]) == {"pull_request"}
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


@pytest.fixture(scope="module")
def counters():
    return _load("counters.yml")


def test_counters_job_pre_screens_the_emulated_gaudi_on_every_pull_request(counters):
    """A GitHub-hosted CPU runner, no secrets, a read-only token: the [hpu-emulated] section
    run and gated against the committed baseline (docs/counters.md)."""
    from asrbench.cli.main import build_parser

    assert set(counters["on"]) == {"pull_request"}
    assert counters["permissions"] == {}
    job = counters["jobs"]["emulated-gaudi"]
    assert job["permissions"] == {"contents": "read"}
    assert str(job["runs-on"]).startswith("ubuntu-") and "environment" not in job
    text = (WORKFLOWS / "counters.yml").read_text()
    assert "secrets." not in text and "pull_request_target" not in text
    steps = _steps(job)
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    for step in steps:
        assert "${{" not in step.get("run", ""), step["name"]
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    scripts = [s.get("run", "") for s in steps]
    assert "bash scripts/setup.sh" in scripts
    run = next(r for r in scripts if "asrbench run" in r)
    assert "--device hpu-emulated" in run and "--matrix benchmarks/matrix.toml" in run
    assert "--no-counters" not in run and "--counters-only" in run  # issue 29: no timed pass
    compare = next(r for r in scripts if "asrbench compare" in r)
    assert "--report reports/emulated.json" in compare and "--markdown counters.md" in compare
    assert job["timeout-minutes"] <= 20
    # the CPU default section too, in its own job (in parallel), gated the same way
    cpu = [s.get("run", "") for s in _steps(counters["jobs"]["cpu-default"])]
    cpu_run = next(r for r in cpu if "asrbench run" in r)
    assert "--device cpu" in cpu_run and "--counters-only" in cpu_run
    cpu_compare = next(r for r in cpu if "asrbench compare" in r)
    # every option the jobs pass is one the commands accept
    for command in (run, compare, cpu_run, cpu_compare):
        argv = command.replace("\\\n", " ").split(".venv/bin/asrbench ", 1)[1].split()
        build_parser().parse_args(argv)


def _zizmor() -> str:
    found = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    if not Path(found).exists():
        pytest.skip("zizmor is in the dev extra")
    return found


def _audit(*options: str) -> list[dict]:
    result = subprocess.run([_zizmor(), "--offline", "--format", "json", *options, str(WORKFLOWS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 10, 11, 12, 13, 14), result.stderr  # 1x: findings
    return json.loads(result.stdout or "[]")


def test_zizmor_finds_nothing_unexplained():
    """zizmor's audit finds nothing; each finding it would report is ignored on its own line
    with zizmor's comment and a reason (no bare ignore, no ignore that silences nothing)."""
    assert [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in _audit()] == []
    ignored = _audit("--no-ignores", "--persona", "auditor")
    explained = set()
    for finding in ignored:
        (primary,) = [p for p in finding["locations"] if p["symbolic"]["kind"] == "Primary"]
        row = primary["concrete"]["location"]["start_point"]["row"]
        path = Path(primary["symbolic"]["key"]["Local"]["verbatim_path"])
        line = (WORKFLOWS / path.name).read_text().splitlines()[row]
        match = re.search(r"# zizmor: ignore\[([a-z-]+)\] (.+)", line)
        assert match and match.group(1) == finding["ident"], (finding["ident"], line)
        assert len(match.group(2).split()) >= 3, line  # a reason, in words
        explained.add((path.name, row))
    comments = {(p.name, n) for p in WORKFLOWS.glob("*.yml")
                for n, text in enumerate(p.read_text().splitlines()) if "# zizmor: ignore[" in text}
    assert comments == explained  # every ignore comment silences a finding
