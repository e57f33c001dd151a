"""config.resolve: one precedence for every door (flags > config file or matrix > defaults)."""

from __future__ import annotations

import pytest

from asrbench.config.resolve import resolve
from asrbench.config.settings import DEFAULT_PASSES, EMBEDDED_CORPUS
from asrbench.errors import AsrbenchError
from asrbench.formats.model import Tolerance

CPU = lambda: ("cpu", "cpu")  # noqa: E731 - the device class and kind a matrix is chosen by


def test_defaults_are_the_embedded_corpus_in_both_locales():
    selection = resolve({})
    assert [(c.dataset, c.dataset_config, c.language) for c in selection.configs] == [
        (str(EMBEDDED_CORPUS), "hi", "hindi"), (str(EMBEDDED_CORPUS), "en", "english")]
    assert selection.passes == DEFAULT_PASSES and selection.tolerance is None


def test_flags_override_the_config_file_and_every_run(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('batch_size = 4\npasses = 2\ndataset = "/data/cv"\n'
                    '[[runs]]\ndataset_config = "hi"\nbatch_size = 16\n'
                    '[[runs]]\ndataset_config = "en"\n')
    selection = resolve({"batch_size": 2}, config_file=path)
    assert [(c.dataset_config, c.batch_size) for c in selection.configs] == [("hi", 2), ("en", 2)]
    assert selection.passes == 2
    assert resolve({}, 5, config_file=path).passes == 5
    assert [c.batch_size for c in resolve({}, config_file=path).configs] == [16, 4]


def test_a_dataset_flag_drops_the_locale_it_did_not_come_with(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('dataset = "/data/a"\ndataset_config = "hi"\n')
    (config,) = resolve({"dataset": "/data/b"}, config_file=path).configs
    assert (config.dataset, config.dataset_config) == ("/data/b", None)
    (config,) = resolve({"dataset": "/data/b", "dataset_config": "en"}, config_file=path).configs
    assert (config.dataset_config, config.language) == ("en", "en")


MATRIX = """
[cpu]
datasets = [{ dataset = "embedded", dataset_config = "hi", language = "hindi" },
            { dataset = "embedded", dataset_config = "en", language = "english" }]
batch_sizes = [2, 4]
passes = 1
tolerance = { samples_per_second_rel = 0.5 }
[cuda]
batch_sizes = [64]
"""


def test_the_matrix_section_of_the_device_class_with_flags_over_it(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(MATRIX)
    selection = resolve({"batch_size": 8, "device": "cpu"}, matrix=path, device=CPU)
    # 2 datasets x 2 batch sizes, the batch size overridden: the two rows per locale coincide
    assert [(c.dataset_config, c.batch_size) for c in selection.configs] == [("hi", 8), ("en", 8)]
    assert selection.passes == 1 and selection.tolerance == Tolerance(samples_per_second_rel=0.5)
    assert selection.source == f"{path} [cpu]"
    assert resolve({}, 3, matrix=path, device=CPU).passes == 3


def test_config_file_and_matrix_together_are_refused(tmp_path):
    with pytest.raises(AsrbenchError, match="--matrix and --config both say what to run"):
        resolve({}, config_file=tmp_path / "c.toml", matrix=tmp_path / "m.toml", device=CPU)
    with pytest.raises(AsrbenchError, match="--passes must be >= 1"):
        resolve({}, 0)


def test_a_command_s_own_defaults_sit_below_the_flags():
    (config,) = resolve({}, defaults={"device": "cpu", "dataset_config": "en"}).configs
    assert (config.device, config.dataset_config, config.language) == ("cpu", "en", "english")
    (config,) = resolve({"dataset": "/data/x"}, defaults={"dataset_config": "en"}).configs
    assert config.dataset_config is None


def test_a_locale_flag_over_a_matrix_runs_that_locale_s_rows_not_others_languages(tmp_path):
    """`--dataset-config en` over a section with a Hindi row (language hindi) and an English
    row: the pytest door also ran English audio forced to Hindi (an "en-test-hindi" config),
    which `asrbench run --dataset-config en` never did. With --language given, it applies."""
    path = tmp_path / "m.toml"
    path.write_text(MATRIX)
    selection = resolve({"dataset_config": "en", "device": "cpu"}, matrix=path, device=CPU)
    assert {(c.dataset_config, c.language) for c in selection.configs} == {("en", "english")}
    forced = resolve({"dataset_config": "en", "language": "hindi", "device": "cpu"},
                     matrix=path, device=CPU)
    assert {(c.dataset_config, c.language) for c in forced.configs} == {("en", "hindi")}
    # a locale no row has: every row takes it, as before
    other = resolve({"dataset_config": "fr", "device": "cpu"}, matrix=path, device=CPU)
    assert {c.dataset_config for c in other.configs} == {"fr"}
