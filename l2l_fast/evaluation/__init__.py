"""Evaluation as the paper does it: generation, metrics (FID, IS, CLIP-style, accuracy),
the report and its plots. `evaluate` computes the paper's table; EvalConfig holds its options.
`audit` asks whether a model forgot like a model retrained without the forget set."""
from .audit import AuditConfig, audit
from .folder_fid import folder_features, folder_fid
from .generation import generate
from .config import EvalConfig, MetricsConfig, SamplerConfig
from .networks import load_networks, network_specs
from .protocol import Evaluation, evaluate, evaluate_model
from .sets import EvalSet, build_sets, image_shape, model_image_shape, tensor_set

__all__ = ["evaluate", "generate", "audit", "AuditConfig", "folder_fid", "folder_features", "evaluate_model",
           "Evaluation", "EvalConfig", "MetricsConfig", "SamplerConfig", "EvalSet", "build_sets", "tensor_set",
           "image_shape", "model_image_shape", "load_networks", "network_specs"]
