"""Emulated habana_frameworks.torch.utils.experimental: the device type optimum-habana's
get_device_name() compares against synDeviceType."""

import enum

from asrbench.devices.emulation import state


class synDeviceType(enum.IntEnum):  # noqa: N801 - the real name
    synDeviceGaudi = 1
    synDeviceGaudi2 = 2
    synDeviceGaudi3 = 3


def _get_device_type() -> synDeviceType:
    return synDeviceType[state.DEVICE_TYPE]
