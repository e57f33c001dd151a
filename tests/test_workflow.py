"""The Gaudi workflow cannot run here; check it is valid YAML that runs the gate as documented."""

from pathlib import Path

import pytest

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "gaudi-benchmarks.yml"


def test_gaudi_workflow_runs_pytest_gate_compare_and_uploads():
    yaml = pytest.importorskip("yaml", reason="pyyaml is in the dev extra")
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["hpu"]
    assert "self-hosted" in job["runs-on"] and "gaudi2" in job["runs-on"]
    assert "habanalabs/pytorch-installer" in job["container"]["image"]
    assert "--runtime=habana" in job["container"]["options"]
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    assert "pip install -e \".[hpu,dev]\"" in scripts
    assert "pytest benchmarks --device hpu" in scripts
    assert "asrbench compare --report reports/hpu.json --markdown" in scripts
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
