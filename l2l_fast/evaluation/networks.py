"""Feature networks of the evaluation, each a module mapping images [B, C, H, W] in [0, 1]
to named outputs {name: [B, D]}, and the loaders that build them from local files only.

    fid_inception  the FID InceptionV3 of the `eval` extra (TorchScript, clean-fid's "clean"
                preprocessing; metrics/inception.py): "pool" (FID, KID)
    inception   torchmetrics / torch-fidelity InceptionV3: "logits" (IS), "pool" (FID without the extra)
    clip        an OpenCLIP image encoder: "embedding" (CLIP similarity, t-SNE)
    classifier  the shipped Fashion-MNIST classifier, a `save_classifier` file or a timm
                model with local weights: "features" (FID / CLIP-style), "logits" (IS, accuracy)

Which output each metric reads is METRIC_SOURCES, in order of preference; the classifier gives
FID and KID only where `metrics.use` names it (it is no stand-in for InceptionV3). MSE_hole,
PSNR_hole and SSIM read no network ("pixels", metrics/pixels.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

NETWORKS = ("fid_inception", "inception", "clip", "classifier")
METRICS = ("FID", "KID", "IS", "CLIP", "acc", "MSE_hole", "PSNR_hole", "SSIM")
# metric -> (network, output) candidates; the first whose network was given is used
METRIC_SOURCES = {
    "FID": (("fid_inception", "pool"), ("inception", "pool"), ("classifier", "features")),
    "KID": (("fid_inception", "pool"), ("inception", "pool"), ("classifier", "features")),
    "IS": (("inception", "logits"), ("classifier", "logits")),
    "CLIP": (("clip", "embedding"), ("classifier", "features")),
    "acc": (("classifier", "logits"),),
    "MSE_hole": (("pixels", "MSE_hole"),),
    "PSNR_hole": (("pixels", "PSNR_hole"),),
    "SSIM": (("pixels", "SSIM"),),
}
# (metric, network) read only where metrics.use names the network for the metric
NAMED_ONLY = {("FID", "classifier"), ("KID", "classifier")}
SHIPPED = "shipped"
AUTO = "auto"


class InceptionNetwork(nn.Module):
    """InceptionV3 as FID and IS use it (torch-fidelity's 2015-12-05 graph): uint8 RGB in,
    2048-d pool features and the unbiased logits out."""

    outputs = ("pool", "logits")

    def __init__(self, weights_path: str):
        super().__init__()
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

        if not _TORCH_FIDELITY_AVAILABLE:
            raise ImportError("metrics.inception needs torch-fidelity: `pip install torch-fidelity`")
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(weights_path))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pixels = images.float().clamp(0, 1).expand(-1, 3, -1, -1).mul(255).round().to(torch.uint8)
        pool, logits = self.inception(pixels)
        return {"pool": pool, "logits": logits}


class ClipNetwork(nn.Module):
    outputs = ("embedding",)

    def __init__(self, embedder: nn.Module):
        super().__init__()
        self.embedder = embedder

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.embedder(images)}


class ClassifierNetwork(nn.Module):
    """A classifier with a `features` method (FashionClassifier) or a timm model; for timm,
    images are resized to its input size and normalised with its mean and std."""

    outputs = ("features", "logits")

    def __init__(self, classifier: nn.Module, size: Optional[int] = None, mean=None, std=None):
        super().__init__()
        self.classifier = classifier
        self.size = size
        self.normalise = mean is not None
        if self.normalise:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if hasattr(self.classifier, "features") and hasattr(self.classifier, "head"):
            features = self.classifier.features(images)
            return {"features": features, "logits": self.classifier.head(features)}
        x = images.float()
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
        if self.normalise:
            x = (x.expand(-1, self.mean.shape[1], -1, -1) - self.mean) / self.std
        features = self.classifier.forward_head(self.classifier.forward_features(x), pre_logits=True)
        return {"features": features, "logits": self.classifier.get_classifier()(features)}


def _existing(path, key: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics.{key}: {str(path)!r} is not a file (local weights; nothing is downloaded)")
    return path


def load_inception(spec: str) -> nn.Module:
    return InceptionNetwork(str(_existing(spec, "inception")))


def split_clip_spec(spec: str) -> tuple[str, str]:
    """"MODEL:PATH" -> (OpenCLIP model name, local checkpoint)."""
    name, sep, path = spec.partition(":")
    if not sep or not name or not path:
        raise ValueError(f"metrics.clip must be 'MODEL:PATH' (e.g. 'ViT-H-14:open_clip_vit_h14.bin'), got {spec!r}")
    return name, path


def load_clip(spec: str) -> nn.Module:
    from .metrics import open_clip_embedder

    name, path = split_clip_spec(spec)
    return ClipNetwork(open_clip_embedder(_existing(path, "clip"), model_name=name))


def load_classifier_network(spec: str) -> nn.Module:
    """'shipped', a `save_classifier` file, or 'timm:NAME:PATH' (timm model, local weights)."""
    from .metrics import load_classifier

    if spec == SHIPPED:
        return ClassifierNetwork(load_classifier())
    if spec.startswith("timm:"):
        name, sep, path = spec[len("timm:"):].partition(":")
        if not sep or not name or not path:
            raise ValueError(f"metrics.classifier 'timm:NAME:PATH' needs a model name and a weights file, got {spec!r}")
        try:
            import timm
        except ImportError as error:
            raise ImportError("metrics.classifier 'timm:...' needs timm: `pip install timm`") from error
        state = torch.load(_existing(path, "classifier"), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
        model = timm.create_model(name, pretrained=False)
        head = model.pretrained_cfg.get("classifier", "fc")
        if f"{head}.weight" in state:  # e.g. 365 outputs for ResNet50-Places365
            model.reset_classifier(state[f"{head}.weight"].shape[0])
        model.load_state_dict(state)
        cfg = model.pretrained_cfg
        return ClassifierNetwork(model.eval(), size=cfg["input_size"][-1], mean=cfg["mean"], std=cfg["std"])
    return ClassifierNetwork(load_classifier(_existing(spec, "classifier")))


def load_fid_inception(spec: str) -> nn.Module:
    from .metrics.inception import FIDInception, packaged_file

    if spec == AUTO:
        return FIDInception(packaged_file())
    return FIDInception(_existing(spec, "fid_inception"))


def network_file(kind: str, spec: str) -> Optional[Path]:
    """The local file a network spec reads (None for specs without one)."""
    if kind == "fid_inception" and spec == AUTO:
        from .metrics.inception import packaged_file

        return packaged_file()
    if kind == "classifier" and spec == SHIPPED:
        from .metrics import FASHION_CLASSIFIER

        return Path(FASHION_CLASSIFIER)
    if kind == "clip":
        spec = split_clip_spec(spec)[1]
    elif kind == "classifier" and spec.startswith("timm:"):
        spec = spec[len("timm:"):].partition(":")[2]
    return Path(spec) if Path(spec).is_file() else None


def describe_network(kind: str, spec: str) -> dict:
    """{"network": its name, "spec", "file", "sha256"} for the report."""
    from .metrics.inception import NAME, file_sha256

    names = {"fid_inception": NAME, "inception": "InceptionV3 (torch-fidelity pt_inception-2015-12-05 weights)",
             "clip": f"OpenCLIP {spec.partition(':')[0]}" if kind == "clip" else "",
             "classifier": "the shipped Fashion-MNIST classifier (l2l_fast)" if spec == SHIPPED else
             f"classifier {spec}"}
    file = network_file(kind, spec)
    return {"network": names.get(kind, kind), "spec": spec, "file": str(file) if file else None,
            "sha256": file_sha256(file) if file else None}


LOADERS = {"fid_inception": load_fid_inception, "inception": load_inception, "clip": load_clip, "classifier": load_classifier_network}


def load_network(kind: str, spec: str) -> nn.Module:
    if kind not in LOADERS:
        raise ValueError(f"unknown feature network {kind!r}; known: {list(LOADERS)}")
    return LOADERS[kind](spec)


def resolve_sources(given, compute=METRICS, use: Optional[dict] = None) -> tuple[dict, dict]:
    """(metric -> (network, output) or None, metric -> why it is skipped) for the metrics in
    `compute`, given the network kinds `given`; `use` picks a metric's network by kind."""
    use = use or {}
    given = {*given, "pixels"}
    sources, skipped = {}, {}
    for metric in compute:
        candidates = [c for c in METRIC_SOURCES[metric] if c[0] in given and use.get(metric, c[0]) == c[0]
                      and ((metric, c[0]) not in NAMED_ONLY or use.get(metric) == c[0])]
        if candidates:
            sources[metric] = candidates[0]
        else:
            kinds = [use[metric]] if metric in use else [kind for kind, _ in METRIC_SOURCES[metric]
                                                         if (metric, kind) not in NAMED_ONLY]
            sources[metric] = None
            reason = f"no network for {metric}: give " + " or ".join(f"metrics.{k}" for k in kinds)
            if "fid_inception" in kinds:
                reason += f" (`pip install \"l2l_fast[eval]\"` brings it), or metrics.use: {{{metric}: classifier}}"
            skipped[metric] = reason
    return sources, skipped


def network_specs(metrics, shape) -> dict[str, str]:
    """kind -> spec of the networks a MetricsConfig names for models taking `shape` (C, H, W) images;
    the shipped classifier by default for Fashion-MNIST's 1x28x28."""
    specs = {kind: getattr(metrics, kind) for kind in NETWORKS if getattr(metrics, kind) is not None}
    if specs.get("fid_inception") == AUTO:
        from .metrics.inception import packaged_file

        wanted = {"FID", "KID"} & set(metrics.compute)
        if packaged_file() is None or not wanted or all(metrics.use.get(m, "fid_inception") != "fid_inception"
                                                         for m in wanted):
            del specs["fid_inception"]
    if "classifier" not in specs and tuple(shape) == (1, 28, 28):
        specs["classifier"] = SHIPPED
    if specs.get("classifier") == SHIPPED and shape[0] != 1:
        raise ValueError(f"metrics.classifier: the shipped classifier takes grey 1xHxW images, "
                         f"the models take {'x'.join(map(str, shape))}")
    return specs


class NetworkError(ValueError):
    """A feature network named by a spec cannot be loaded (the message names the metrics key)."""


def load_networks(specs: dict[str, str], device) -> dict[str, nn.Module]:
    """kind -> the loaded network, in eval mode on `device`; NetworkError naming the metrics key."""
    networks = {}
    for kind, spec in specs.items():
        try:
            networks[kind] = load_network(kind, spec).to(device).eval()
        except (FileNotFoundError, ImportError, ValueError, RuntimeError) as error:
            raise NetworkError(f"metrics.{kind}: {spec!r} cannot be loaded: {error}") from error
    return networks
