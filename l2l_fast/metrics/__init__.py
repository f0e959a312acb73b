"""The public name of the evaluation metrics (l2l_fast.evaluation.metrics)."""
from ..evaluation.metrics import *  # noqa: F401,F403
from ..evaluation.metrics import __all__  # noqa: F401
