"""What produced a run: modeconn's, torch's and Python's versions and the device, kept in its run.json."""
from __future__ import annotations

import platform

import torch

from ..version import __version__


def made_with(device) -> dict:
    """The versions and the device (a GPU by name) that produced a run."""
    device = torch.device(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"modeconn": __version__, "torch": torch.__version__, "python": platform.python_version(), "device": where}
