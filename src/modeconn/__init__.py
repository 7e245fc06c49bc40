"""modeconn: mode connectivity, loss-surface planes and Fast Geometric Ensembling for any PyTorch model.

Every name here is a function or type that takes modules, spans and data and returns a result, writing
nothing unless given a place to (README, "Python API: the analyses").
"""
from .alignment.connectivity import compare_paths
from .alignment.matching import align
from .alignment.repair import repair
from .alignment.spec import permutation_spec, permute
from .config import TrainConfig
from .core.curve import Curve
from .core.flat import parameters_vector
from .core.simplex import Simplex
from .data import Dataset, StreamedData, load_dataset
from .errors import ModeconnError
from .evaluation.along import eval_path
from .evaluation.batchnorm import recompute_bn
from .evaluation.curvature import curvature_at, measure_curvature
from .evaluation.ensemble import curve_ensemble, simplex_ensemble
from .evaluation.evaluate import evaluate, metrics_with_bn
from .evaluation.landscape import measure_slice, slice_directions
from .evaluation.plane_grid import measure_plane, plane_grid
from .evaluation.pointwise import EvalSettings
from .evaluation.simplex_eval import measure_simplex
from .models import create_model
from .records import find_records, read_record
from .tasks import Classification, LanguageModeling, Regression, Task, classification, language_modeling, regression
from .training.budget import compare_budgets
from .training.fge import FGEConfig, fast_geometric_ensemble
from .training.instability import instability_analysis
from .training.spro import first_stage, grow_simplex
from .training.subspace import subspace_metrics, train_subspace
from .training.train import train_curve, train_network, train_simplex
from .version import __version__

__all__ = ["Classification", "Curve", "Dataset", "EvalSettings", "FGEConfig", "LanguageModeling", "ModeconnError",
           "Regression",
           "Simplex", "StreamedData", "Task", "TrainConfig", "__version__", "align", "classification",
           "compare_budgets", "compare_paths", "create_model", "curvature_at", "curve_ensemble", "eval_path",
           "evaluate", "fast_geometric_ensemble", "find_records", "first_stage", "grow_simplex",
           "instability_analysis", "language_modeling", "load_dataset", "measure_curvature", "measure_plane",
           "measure_simplex",
           "measure_slice", "metrics_with_bn", "parameters_vector", "permutation_spec", "permute", "plane_grid",
           "read_record", "recompute_bn", "regression", "repair", "simplex_ensemble", "slice_directions",
           "subspace_metrics", "train_curve", "train_network", "train_simplex", "train_subspace"]
