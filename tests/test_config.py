"""BenchConfig ids, config files and the shipped Gaudi configuration."""

from pathlib import Path

import pytest

from asrbench.config.settings import EMBEDDED_CORPUS, BenchConfig, build_configs, load_config_file
from asrbench.errors import AsrbenchError

ROOT = Path(__file__).resolve().parent.parent


def test_id_is_readable_and_stable():
    config = BenchConfig(model="openai/whisper-small", dataset="regisss/common_voice_11_0_hi",
                         language="hindi", precision="bf16", batch_size=32, graphs=True)
    assert config.id == "whisper-small-common-voice-11-0-hi-test-hindi-transcribe-bf16-bs32-graphs"
    # stable across processes: a fresh interpreter computes the same id
    import subprocess
    import sys

    code = ("from asrbench.config.settings import BenchConfig; "
            "print(BenchConfig(model='openai/whisper-small', "
            "dataset='regisss/common_voice_11_0_hi', language='hindi', precision='bf16', "
            "batch_size=32, graphs=True).id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == config.id


def test_id_changes_with_every_result_affecting_field():
    base = BenchConfig(language="hi", dataset_config="hi")
    variants = [base.replace(precision="bf16"), base.replace(batch_size=4),
                base.replace(generation_max_length=100), base.replace(max_duration=10.0),
                base.replace(limit=5), base.replace(language="en"), base.replace(task="translate"),
                base.replace(model="openai/whisper-small"), base.replace(split="dev")]
    ids = {v.id for v in variants} | {base.id}
    assert len(ids) == len(variants) + 1
    assert base.replace(device="cpu").id == base.id  # the device picks the baseline file instead


def test_invalid_values_are_user_errors():
    with pytest.raises(AsrbenchError, match="batch size"):
        BenchConfig(batch_size=0)
    with pytest.raises(AsrbenchError, match="precision"):
        BenchConfig(precision="int3")
    with pytest.raises(AsrbenchError, match="task"):
        BenchConfig(task="summarize")


def test_default_expands_to_hindi_and_english_embedded_runs():
    configs = build_configs({}, [])
    assert [(c.dataset_config, c.language) for c in configs] == [("hi", "hindi"), ("en", "english")]
    assert all(Path(c.dataset) == EMBEDDED_CORPUS for c in configs)
    assert all(c.model == "bundled:whisper-base" for c in configs)


def test_dataset_config_alone_selects_one_embedded_locale():
    (config,) = build_configs({"dataset_config": "en"}, [])
    assert (config.dataset_config, config.language) == ("en", "english")
    with pytest.raises(AsrbenchError, match="no locale 'fr'"):
        build_configs({"dataset_config": "fr"}, [])


def test_locale_is_used_as_language_when_none_given():
    (config,) = build_configs({"dataset": "/x", "dataset_config": "hi"}, [])
    assert config.language == "hi"


def test_config_file_rejects_unknown_settings(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "x"\nbatchsize = 3\n')
    with pytest.raises(AsrbenchError, match="batchsize"):
        load_config_file(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("model = \n")
    with pytest.raises(AsrbenchError, match="not valid TOML"):
        load_config_file(broken)


def test_config_file_runs_table(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text('precision = "bf16"\npasses = 2\n'
                    '[[runs]]\nbatch_size = 4\n[[runs]]\nbatch_size = 8\n')
    shared, runs, passes = load_config_file(path)
    configs = build_configs(shared, runs)
    assert passes == 2
    assert [(c.batch_size, c.precision) for c in configs] == [(4, "bf16"), (8, "bf16")]


def test_shipped_gaudi_config_reproduces_the_seed_command():
    shared, runs, passes = load_config_file(ROOT / "configs" / "whisper-small-cv11-hi-gaudi.toml")
    (config,) = build_configs(shared, runs)
    assert config.model == "openai/whisper-small"
    assert config.language == "hindi" and config.task == "transcribe" and config.split == "test"
    assert config.batch_size == 32 and config.generation_max_length == 225
    assert config.max_duration == 30.0 and config.precision == "bf16"
    assert config.sdp_on_bf16 and config.graphs and config.device == "hpu"
    assert config.gaudi_config == "Habana/whisper" and config.text_column == "sentence"


def test_device_options_that_do_not_apply_are_user_errors():
    from asrbench.devices import get_device
    from asrbench.errors import AsrbenchError

    with pytest.raises(AsrbenchError, match="--gaudi-config does not apply to the cpu device"):
        get_device("cpu", gaudi_config="Habana/whisper")
    # left at their defaults, options of other backends are not "given"
    assert get_device("cpu", gaudi_config=None, sdp_on_bf16=False).kind == "cpu"
