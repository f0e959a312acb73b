import os

# The Triton kernels run in interpreter mode on CPU tensors here; this must be
# set before any triton kernel is defined.
os.environ.setdefault("TRITON_INTERPRET", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

import l2l_fast  # noqa: E402
from l2l_fast.models import MAE  # noqa: E402
from l2l_fast.ops import _backend  # noqa: E402


def available_backends(device: str = "cpu") -> list[str]:
    names = ["reference", "cpu", "triton"] if device == "cpu" else ["cuda", "triton"]
    return [b for b in names if _backend.available(b, torch.device(device))]


def backend_params():
    """Every backend usable here: CPU-tensor backends, plus CUDA ones on a GPU."""
    params = [pytest.param(b, "cpu", id=f"{b}-cpu") for b in available_backends("cpu")]
    if torch.cuda.is_available():
        params += [pytest.param(b, "cuda", id=f"{b}-cuda") for b in available_backends("cuda")]
    return params


@pytest.fixture(autouse=True)
def _no_forced_backend(monkeypatch):
    monkeypatch.delenv(_backend.BACKEND_ENV, raising=False)


# Shared builders of the suite (and of distributed_worker.py): a tiny MAE with its
# images, a user's conv autoencoder through `adapt`, ImageNet-style class folders,
# and the multi-process cases.

TINY = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=4,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
RUN = dict(steps=4, batch_size=4, lr=1e-3, mask="inpaint:2", progress=False)


def tiny_model(seed: int = 0) -> MAE:
    torch.manual_seed(seed)
    return MAE(**TINY).eval()


def images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return (torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) + shift).clamp(0, 1)


FORGET, RETAIN = images(10, 1, 0.3), images(12, 2)


class ConvAutoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, stride=2, padding=1))
        self.decoder = nn.Sequential(nn.ConvTranspose2d(4, 4, 2, stride=2), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def autoencoder(seed=0):
    torch.manual_seed(seed)
    model = ConvAutoencoder()
    return model, l2l_fast.adapt(model, "encoder", image_shape=(1, 8, 8), patch_size=2)


class DropoutAutoencoder(ConvAutoencoder):
    """A user's inpainter whose encoder draws dropout masks from torch's global RNG."""

    def __init__(self):
        super().__init__()
        self.encoder.insert(2, nn.Dropout(0.3))


def dropout_autoencoder(seed=0):
    torch.manual_seed(seed)
    model = DropoutAutoencoder()
    return model, l2l_fast.adapt(model, "encoder", image_shape=(1, 8, 8), patch_size=2)


AE_FORGET = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 0.5 + 0.5
AE_RETAIN = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(6)) * 0.5


FOLDER_CLASSES = ["n01440764", "n01443537", "n01484850", "n01491361"]


def make_folders(root, per_class=3, bad=0):
    for index, name in enumerate(FOLDER_CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            value = 40 * index + i
            array = np.full((12, 16, 3), value, dtype=np.uint8)
            array[:, :, 1] = 255 - value
            Image.fromarray(array).save(folder / f"img_{i}.png")
    for i in range(bad):
        (root / FOLDER_CLASSES[0] / f"broken_{i}.jpg").write_bytes(b"not a jpeg at all")
    (root / "classes.txt").write_text("# synsets\n" + "\n".join(f"{c} fish {i}" for i, c in enumerate(FOLDER_CLASSES)) + "\n")
    return root


# name -> (model kind, unlearn arguments); the same global batch in every case
CASES = {
    "ddp": ("mae", dict(RUN, steps=5, mask="random:0.5")),
    "ddp_channel_clamp": ("mae", dict(RUN, steps=3, noise_stats="channel", noise_clamp=(0.0, 1.0))),
    "ddp_mixed_mage_masks": ("mae", dict(RUN, steps=3, noise_stats="mixed", noise_clamp=(0.0, 1.0), mask="mage")),
    "fsdp": ("mae", dict(RUN, steps=5, mask="random:0.5", fsdp=True)),
    "noisy_label": ("autoencoder", dict(method="noisy_label", steps=4, batch_size=4, lr=1e-2, mask="inpaint:2",
                                        progress=False)),
}


def unlearn_kind(kind: str, **kwargs):
    """`unlearn` on a fresh model of `kind`: "mae" (the tiny MAE) or "dropout" (the dropout autoencoder)."""
    if kind == "mae":
        return l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **kwargs)
    model, adapter = dropout_autoencoder()
    return l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, **kwargs)


def run_case(name: str, callback=None):
    kind, kwargs = CASES[name]
    if kind == "mae":
        return l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, callback=callback, **kwargs)
    model, adapter = autoencoder()
    return l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, callback=callback, **kwargs)


def assert_low_precision_close_to_fp32(build, forget, retain, run: dict, precision: str) -> None:
    """The teacher cast to bf16/fp16 runs through a family's layers: the forget terms stay
    near the fp32 run's, the retain terms (0 in fp32 at the start, student = teacher)
    within the low-precision floor."""
    def terms(precision):
        log = []
        l2l_fast.unlearn(build(), forget, retain, precision=precision, callback=log.append, **run)
        return [r["forget"] for r in log], [r["retain"] for r in log]

    (low_forget, low_retain), (forget32, retain32) = terms(precision), terms("fp32")
    assert low_forget == pytest.approx(forget32, rel=0.1, abs=2e-4)
    assert low_retain == pytest.approx(retain32, abs=1e-3)


# Tiny diffusers inpainters built from configs, offline (diffusers and transformers are
# imported when a test asks for one): fixtures that return the builder.

def _write_char_tokenizer(folder) -> Path:
    """A CLIP BPE vocabulary of single letters and no merges (vocab.json, merges.txt)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def _tiny_inpaint_pipeline(tokenizer_dir, *, latent_size: int = 8, seed: int = 0, unet_channels=(8, 16),
                           vae_channels=(8, 16), text_width: int = 8):
    """A StableDiffusionInpaintPipeline with the SD-1.5 inpainting layout at toy width:
    image size latent_size · 2^(len(vae_channels) − 1)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=latent_size, in_channels=9, out_channels=4, layers_per_block=1,
        block_out_channels=tuple(unet_channels), norm_num_groups=min(unet_channels[0], 4),
        cross_attention_dim=text_width, attention_head_dim=2,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(unet_channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(unet_channels) - 1) + ("UpBlock2D",))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=tuple(vae_channels),
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels), norm_num_groups=min(vae_channels[0], 4),
        layers_per_block=1, sample_size=latent_size * 2 ** (len(vae_channels) - 1))
    folder = _write_char_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=2 * text_width, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, num_train_timesteps=1000)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _palette_unet(image_size: int = 16, channels: int = 1, widths=(16, 32), seed: int = 0):
    """A Palette-style UNet2DModel: in_channels = 2 × channels (condition, noisy image)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    blocks = ("DownBlock2D",) * len(widths), ("UpBlock2D",) * len(widths)
    return UNet2DModel(sample_size=image_size, in_channels=2 * channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=tuple(widths), down_block_types=blocks[0], up_block_types=blocks[1],
                       norm_num_groups=min(widths[0], 8), attention_head_dim=8)


@pytest.fixture
def tiny_inpaint_pipeline():
    """tiny_inpaint_pipeline(tokenizer_dir, **sizes) -> a StableDiffusionInpaintPipeline."""
    return _tiny_inpaint_pipeline


@pytest.fixture
def palette_unet():
    """palette_unet(image_size=16, channels=1, widths=(16, 32), seed=0) -> a UNet2DModel."""
    return _palette_unet
