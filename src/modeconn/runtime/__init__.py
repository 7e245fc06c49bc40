"""How and where work runs: torchrun process groups, speed settings, host memory."""
