"""modeconn: mode connectivity, loss-surface planes and Fast Geometric Ensembling for any PyTorch model."""
from .alignment.matching import align
from .alignment.repair import repair
from .alignment.spec import permutation_spec, permute
from .config import TrainConfig
from .core.curve import Curve
from .core.simplex import Simplex
from .data import Dataset, load_dataset
from .errors import ModeconnError
from .evaluation.evaluate import evaluate, recompute_bn
from .models import create_model
from .training.train import train_curve, train_network, train_simplex
from .version import __version__

__all__ = ["Curve", "Dataset", "ModeconnError", "TrainConfig", "align", "create_model", "evaluate", "load_dataset",
           "permutation_spec", "permute", "recompute_bn", "repair", "Simplex", "train_curve", "train_network",
           "train_simplex", "__version__"]
