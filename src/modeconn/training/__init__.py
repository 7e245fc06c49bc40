"""Training loops: SGD with the paper schedule for networks and curves, FGE, the budget comparison."""
