"""asrbench's emulated Gaudi: a stand-in for Intel's habana_frameworks, on CPU.

Importable only inside a process that selected `--device hpu-emulated`
(asrbench.devices.emulation puts this directory on sys.path). It provides what optimum-habana
1.21.2 and asrbench's HPU backend call, with CPU behaviour; HPU graphs follow the real cache-key
and replay semantics (asrbench/devices/emulation/graphs.py). No compiler, no graph bridge, no
Gaudi numerics.
"""

EMULATED = True
