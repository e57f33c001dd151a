"""A benchmark session: provisions devices, models and splits once and caches evaluations.

The CLI and the pytest plugin are two front doors onto this one object, so a device is
provisioned once, a model is loaded, set to its precision and graph-wrapped once per
(model, precision, graphs, device), a split is decoded once per dataset selection, and a
config is evaluated once however many tests read its result.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from asrbench.config import BenchConfig
from asrbench.data import LoadedSplit, load_split
from asrbench.devices import Device, get_device
from asrbench.engine import Evaluator, PreparedModel, RunResult
from asrbench.errors import AsrbenchError
from asrbench.models import load


def quiet_transformers() -> None:
    """Silence library chatter that would bury the progress bars and the summary."""
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*attention mask.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


class Session:
    """Caches of everything that is expensive to build, keyed by what determines it."""

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress
        self._devices: dict[tuple, Device] = {}
        self._models: dict[tuple, PreparedModel] = {}
        self._splits: dict[tuple, LoadedSplit] = {}
        self._results: dict[tuple, RunResult] = {}
        quiet_transformers()

    def device(self, config: BenchConfig) -> Device:
        """The provisioned device for a config (one per backend and backend options)."""
        key = (config.device, config.gaudi_config, config.sdp_on_bf16)
        if key not in self._devices:
            self._devices[key] = get_device(config.device, gaudi_config=config.gaudi_config,
                                            sdp_on_bf16=config.sdp_on_bf16)
        device = self._devices[key]
        if config.graphs and not device.supports_graphs:
            raise AsrbenchError(f"--graphs is supported on HPU only; the {device.kind} backend "
                                "runs without graph capture (drop --graphs)")
        return device

    def model(self, config: BenchConfig) -> PreparedModel:
        """The loaded, precision-set, graph-wrapped model for a config."""
        device = self.device(config)
        key = (config.model, config.precision, config.graphs, id(device))
        if key not in self._models:
            self._models[key] = PreparedModel(load(config.model), device, config.precision,
                                              config.graphs)
        return self._models[key]

    def split(self, config: BenchConfig) -> LoadedSplit:
        """The decoded test split for a config's dataset selection."""
        key = (config.dataset, config.dataset_config, config.split, config.text_column,
               config.max_duration, config.limit)
        if key not in self._splits:
            self._splits[key] = load_split(config.dataset, config.dataset_config, config.split,
                                           config.text_column, config.max_duration, config.limit,
                                           progress=self.progress)
        return self._splits[key]

    def evaluate(self, config: BenchConfig, passes: int) -> RunResult:
        """Evaluate a config (cached: a second call with the same config returns the same run)."""
        key = (config, passes)
        if key not in self._results:
            prepared = self.model(config)
            split = self.split(config)
            self._results[key] = self._evaluate(prepared, config, split, passes)
        return self._results[key]

    def _evaluate(self, prepared: PreparedModel, config: BenchConfig, split: LoadedSplit,
                  passes: int) -> RunResult:
        from tqdm.auto import tqdm

        batches = -(-len(split.utterances) // config.batch_size)
        with tqdm(total=batches * (passes + 1), desc=config.id, unit="batch",
                  disable=not self.progress, leave=False) as bar:
            def advance(label: str, n: int) -> None:
                bar.set_postfix_str(label, refresh=False)
                bar.update(n)

            return Evaluator(prepared, config, progress=advance).run(split, passes)


def run_configs(configs: list[BenchConfig], passes: int, progress: bool = True
                ) -> tuple[list[RunResult], dict[str, Any]]:
    """Evaluate configs in order; returns the results and the (last) device's description."""
    session = Session(progress=progress)
    results = [session.evaluate(config, passes) for config in configs]
    return results, dict(results[-1].device) if results else {}
