"""modeconn: mode connectivity, loss-surface planes and Fast Geometric Ensembling for any PyTorch model."""
from .alignment.matching import align
from .alignment.spec import permutation_spec, permute
from .core.curve import Curve
from .data import Dataset, load_dataset
from .errors import ModeconnError
from .evaluation.evaluate import evaluate, recompute_bn
from .models import create_model
from .training.train import TrainConfig, train_curve, train_network

__all__ = ["align", "permutation_spec", "permute", "Curve", "Dataset", "ModeconnError", "TrainConfig", "create_model", "evaluate", "load_dataset",
           "recompute_bn", "train_curve", "train_network"]
__version__ = "0.1.0"
