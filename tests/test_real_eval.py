"""FID / KID on the FID InceptionV3 (the `eval` extra), `l2l-fast fid` between folders with its
feature cache, and the metrics with no network (hole MSE / PSNR, SSIM)."""
import json
import os

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio

from conftest import images as random_images, make_folders, tiny_model
from l2l_fast.cli.eval_command import evaluate_config
from l2l_fast.cli.eval_config import parse_eval_config
from l2l_fast.cli.main import main as cli_main
from l2l_fast.evaluation import evaluate, folder_fid
from l2l_fast.evaluation.folder_fid import folder_features
from l2l_fast.evaluation.metrics import inception
from l2l_fast.evaluation.metrics.fid import fid_from_features, kid_from_features
from l2l_fast.evaluation.metrics.pixels import pixel_errors
from l2l_fast.models import save_model

EXTRA = inception.packaged_file()
needs_extra = pytest.mark.skipif(EXTRA is None, reason='needs the eval extra: pip install ".[eval]"')


# -- FID and KID against numpy / scipy on the same features ------------------------------------

def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(root))


def numpy_kid(a: np.ndarray, b: np.ndarray) -> float:
    """The unbiased MMD^2 of the whole sets (equal sizes), cubic polynomial kernel."""
    d, m = a.shape[1], a.shape[0]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


@pytest.mark.parametrize("n_a,n_b,dim", [(60, 60, 8), (45, 80, 12), (33, 33, 5)])
def test_fid_and_kid_equal_numpy_and_scipy(n_a, n_b, dim):
    generator = np.random.default_rng(n_a + dim)
    a = generator.normal(size=(n_a, dim))
    b = generator.normal(0.3, 1.4, size=(n_b, dim)) @ generator.normal(size=(dim, dim)) / dim ** 0.5
    for gram in (False, True):
        fid = fid_from_features(torch.from_numpy(a), torch.from_numpy(b), gram=gram)
        assert fid == pytest.approx(numpy_fid(a, b), rel=1e-6)
    if n_a == n_b:  # subsets of the whole set: every subset is a permutation of it
        kid, std = kid_from_features(torch.from_numpy(a), torch.from_numpy(b), subsets=3)
        assert kid == pytest.approx(numpy_kid(a, b), rel=1e-6) and std < 1e-9 * max(1.0, abs(kid))
    # subsets drawn with the seed: the mean of numpy's value on the same subsets
    kid, _ = kid_from_features(torch.from_numpy(a), torch.from_numpy(b), subsets=4, subset_size=20, seed=5)
    rng = torch.Generator().manual_seed(5)
    expected = []
    for _ in range(4):
        x = a[torch.randperm(n_a, generator=rng)[:20].numpy()]
        y = b[torch.randperm(n_b, generator=rng)[:20].numpy()]
        expected.append(numpy_kid(x, y))
    assert kid == pytest.approx(np.mean(expected), rel=1e-6)


def test_fid_with_fewer_images_than_features_both_ways_and_against_itself():
    a = torch.randn(10, 64, dtype=torch.float64)
    b = torch.randn(14, 64, dtype=torch.float64) * 1.3 + 0.2
    assert fid_from_features(a, b, gram=True) == pytest.approx(fid_from_features(a, b, gram=False), rel=1e-6)
    assert abs(fid_from_features(a, a, gram=True)) < 1e-9
    assert abs(fid_from_features(a, a, gram=False)) < 1e-4  # the issue asks < 1e-3


# -- clean-fid's preprocessing -------------------------------------------------------------------

def hand_clean_resize(pixels: np.ndarray) -> np.ndarray:
    """clean-fid "clean": RGB, each channel a float32 PIL image, bicubic to 299, clipped to [0, 255]."""
    rgb = np.asarray(Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).convert("RGB"))
    channels = []
    for c in range(3):
        image = Image.fromarray(rgb[:, :, c].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC)
        channels.append(np.asarray(image).clip(0, 255).reshape(299, 299, 1))
    return np.concatenate(channels, axis=2).astype(np.float32)


def test_preprocessing_is_clean_fids_resize_and_the_networks_scaling():
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, size=(28, 28, 1), dtype=np.uint8),
                rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8),
                rng.integers(0, 256, size=(320, 300, 3), dtype=np.uint8)]
    for pixels in pictures:
        ours = inception.network_input([pixels])[0].permute(1, 2, 0).numpy() * 128 + 128
        np.testing.assert_allclose(ours, hand_clean_resize(pixels), atol=1e-5, rtol=0)
    # images in [0, 1] are first quantised as a PNG file would hold them
    images = torch.rand(2, 1, 28, 28)
    pixels = inception.to_pixels(images)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 28, 28, 1)
    assert np.array_equal(pixels[..., 0], (images[:, 0] * 255).round().numpy().astype(np.uint8))


# -- `l2l-fast fid` between folders, with a stand-in network and with the real one ---------------

class StandIn(nn.Module):
    """Preprocessed inputs [B, 3, 299, 299] -> [B, 6]; counts the images it sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 5, stride=4)
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return F.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 1).flatten(1)


def _folder(root, count, seed, grey=False):
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = (20, 24) if grey else (20, 24, 3)
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def test_folder_fid_against_itself_cache_reuse_invalidation_and_unreadable_files(tmp_path):
    a = _folder(tmp_path / "a", 12, 0)
    b = _folder(tmp_path / "b", 10, 1, grey=True)
    (a / "broken.png").write_bytes(b"not a png")
    network, cache = StandIn(), tmp_path / "cache"
    same = folder_fid(a, a, network=network, cache_dir=cache, progress=False)
    assert abs(same["FID"]) < 1e-3 and abs(same["KID"]) < 1e-3
    assert [f["images"] for f in same["folders"]] == [12, 12] and same["folders"][0]["unreadable"] == 1
    assert network.seen == 12 and same["folders"][1]["cached"]  # the second side read the cache
    first = folder_fid(a, b, network=network, cache_dir=cache, progress=False)
    assert network.seen == 22 and first["folders"][0]["cached"] and not first["folders"][1]["cached"]
    direct = fid_from_features(folder_features(a, network, cache_dir=False, progress=False).features,
                               folder_features(b, network, cache_dir=False, progress=False).features)
    assert first["FID"] == pytest.approx(direct, rel=1e-9) and first["FID"] > 1e-3
    network.seen = 0
    again = folder_fid(a, b, network=network, cache_dir=cache, progress=False)
    assert network.seen == 0 and again["FID"] == first["FID"]
    # a changed file recomputes that folder's features only
    Image.fromarray(np.zeros((20, 24), dtype=np.uint8)).save(b / "003.png")
    os.utime(b / "003.png", ns=(1, 1))
    changed = folder_fid(a, b, network=network, cache_dir=cache, progress=False)
    assert network.seen == 10 and changed["FID"] != first["FID"]
    # so does a different network
    other = StandIn()
    with torch.no_grad():
        other.conv.weight.mul_(2)
    folder_fid(a, b, network=other, cache_dir=cache, progress=False)
    assert other.seen == 22


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_the_fid_command_with_a_torchscript_network_file(tmp_path, capsys):
    a, b = _folder(tmp_path / "a", 6, 0), _folder(tmp_path / "b", 7, 1)
    (b / "bad.jpg").write_bytes(b"nothing")
    torch.jit.script(StandIn()).save(str(tmp_path / "net.pt"))
    args = ["fid", str(a), str(b), "--network", str(tmp_path / "net.pt"), "--cache-dir", str(tmp_path / "c"),
            "--no-progress"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "FID " in out and "KID " in out and "1 unreadable skipped" in out and "sha256" in out
    assert cli_main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert all(f["cached"] for f in result["folders"]) and result["folders"][1]["images"] == 7
    assert cli_main(["fid", str(a), str(tmp_path / "missing"), "--network", str(tmp_path / "net.pt")]) == 2


def test_the_fid_network_variable_overrides_auto(tmp_path, monkeypatch):
    monkeypatch.setenv(inception.FID_NETWORK_ENV, str(tmp_path / "mine.pt"))
    assert inception.packaged_file() == tmp_path / "mine.pt"
    monkeypatch.setenv(inception.FID_NETWORK_ENV, "none")
    assert inception.packaged_file() is None
    monkeypatch.delenv(inception.FID_NETWORK_ENV)
    assert inception.packaged_file() == EXTRA


def test_the_fid_command_without_the_extra_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inception, "packaged_file", lambda: None)
    a = _folder(tmp_path / "a", 3, 0)
    assert cli_main(["fid", str(a), str(a), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "l2l_fast[eval]"' in err


@pytest.mark.slow
@needs_extra
@pytest.mark.real_inception
def test_folder_fid_on_inception_v3_of_a_folder_against_itself(tmp_path):
    a = _folder(tmp_path / "a", 3, 0)
    result = folder_fid(a, a, cache_dir=tmp_path / "cache", progress=False)
    assert abs(result["FID"]) < 1e-3
    assert result["sha256"] == inception.file_sha256(EXTRA) and "InceptionV3" in result["network"]


# -- metrics with no network ---------------------------------------------------------------------

def test_pixel_errors_inside_the_hole_and_ssim_of_the_completion():
    truth = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    visible = torch.ones(3, 1, 16, 16)
    visible[:, :, 4:10, 2:12] = 0
    visible[2] = 1  # no hole: no MSE / PSNR; SSIM 1
    generated = (truth + 0.1 * (1 - visible)).clamp(0, 1)
    generated = generated + 0.5 * visible  # visible pixels are pasted back: their error is not counted
    out = pixel_errors(generated, truth, visible)
    hole = visible[0, 0] == 0
    for i in range(2):
        fake, real = generated[i, 0][hole].clamp(0, 1), truth[i, 0][hole]
        assert out["MSE_hole"][i] == pytest.approx(float((fake - real).square().mean()), rel=1e-12)
        assert out["PSNR_hole"][i] == pytest.approx(float(peak_signal_noise_ratio(fake, real, data_range=1.0)),
                                                    rel=1e-6)  # torchmetrics computes in float32
    assert out["MSE_hole"][2].isnan() and out["SSIM"][2] == pytest.approx(1.0)
    assert (out["SSIM"][:2] < 1).all()


def test_evaluate_without_a_feature_network_reports_hole_mse_psnr_and_ssim(monkeypatch):
    monkeypatch.setattr(inception, "packaged_file", lambda: None)
    forget, retain = random_images(6, 1, 0.3), random_images(6, 2)
    labels = torch.zeros(6, dtype=torch.long)
    evaluation = evaluate(tiny_model(0), (forget, labels), (retain, labels + 1), mask="inpaint:2", device="cpu")
    ((row, _),) = evaluation.tables["inpaint:2"]
    for key in ("MSE_hole", "PSNR_hole", "SSIM"):
        for side in ("F", "R"):
            assert np.isfinite(row["metrics"][f"{key}_{side}"]), key
    assert row["metrics"]["FID_F"] is None and 'l2l_fast[eval]' in row["skipped"]["FID_F"]
    assert evaluation.metric_networks()["SSIM"] == "pixels (no network)"


@pytest.mark.slow
@needs_extra
@pytest.mark.real_inception
def test_an_eval_file_without_a_metrics_section_gives_fid_on_inception_v3(tmp_path):
    root = make_folders(tmp_path / "data", per_class=2)
    model = str(save_model(tiny_model(0), tmp_path / "a.safetensors"))
    config = parse_eval_config(dict(
        models={"A": model}, mask="inpaint:2", batch_size=4, out=str(tmp_path / "out"),
        data=dict(dataset="folders", root=str(root), class_list=str(root / "classes.txt"), forget=[0], retain=[1])),
        "test")
    evaluate_config(config, progress=False)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    metrics = results["tables"][0]["rows"][0]["metrics"]
    assert np.isfinite(metrics["FID_F"]) and np.isfinite(metrics["KID_R"]) and np.isfinite(metrics["SSIM_F"])
    sha = inception.file_sha256(EXTRA)
    assert results["networks"]["fid_inception"]["sha256"] == sha
    assert any(n.startswith("FID: InceptionV3") and sha in n for n in results["notes"])


# -- CLIP from a local OpenCLIP file, through a stand-in with open_clip's interface ----------------

class _Visual(nn.Module):
    image_size = 24
    image_mean = None
    image_std = None


class _StandInClip(nn.Module):
    """open_clip's model interface: `.visual` (image_size, mean, std) and `encode_image`."""

    def __init__(self):
        super().__init__()
        self.visual = _Visual()
        self.proj = nn.Conv2d(3, 5, 4, stride=4)

    def encode_image(self, x):
        return self.proj(x).mean(dim=(2, 3))


def _clip_eval(tmp_path):
    root = make_folders(tmp_path / "data", per_class=2)
    model = str(save_model(tiny_model(0), tmp_path / "a.safetensors"))
    torch.manual_seed(1)
    torch.save(_StandInClip().state_dict(), tmp_path / "open_clip_model.bin")
    raw = dict(models={"A": model}, mask="inpaint:2", batch_size=4, out=str(tmp_path / "out"),
               data=dict(dataset="folders", root=str(root), class_list=str(root / "classes.txt"), forget=[0], retain=[1]),
               metrics=dict(clip=f"Tiny:{tmp_path / 'open_clip_model.bin'}", compute=["CLIP", "SSIM"]))
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(raw))
    return path


def test_clip_reads_a_local_open_clip_checkpoint_and_the_report_names_it(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    def create_model(name, pretrained=None, device="cpu"):
        calls.append((name, pretrained))
        model = _StandInClip()
        model.load_state_dict(torch.load(pretrained, weights_only=True))
        return model.to(device)

    monkeypatch.setitem(sys.modules, "open_clip", types.SimpleNamespace(create_model=create_model))
    path = _clip_eval(tmp_path)
    assert cli_main(["eval", "--config", str(path), "--no-progress"]) == 0
    assert calls == [("Tiny", str(tmp_path / "open_clip_model.bin"))]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    metrics = results["tables"][0]["rows"][0]["metrics"]
    assert -1 <= metrics["CLIP_F"] <= 1 and np.isfinite(metrics["SSIM_R"])
    sha = inception.file_sha256(tmp_path / "open_clip_model.bin")
    assert any(n.startswith("CLIP: OpenCLIP Tiny embedding") and sha in n for n in results["notes"])


def test_clip_without_open_clip_is_one_line_naming_the_key(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip raises ImportError
    path = _clip_eval(tmp_path)
    assert cli_main(["eval", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "metrics.clip" in err and "pip install open_clip_torch" in err
    (tmp_path / "open_clip_model.bin").unlink()
    assert cli_main(["eval", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "metrics.clip" in err and "is not a file" in err
