"""`l2l-fast eval --config`: class folders agree with the built-in Fashion-MNIST path and with
`evaluate`, real-image features are computed once across rows and reruns, skipped metrics
are said, corrupt files are skipped and counted, errors name their key, the protocol files parse."""
import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from conftest import FOLDER_CLASSES, make_folders, tiny_model
from l2l_fast.adapters import adapter_for
from l2l_fast.cli.main import main as cli_main
from l2l_fast.cli.eval_command import evaluate_config
from l2l_fast.cli.eval_config import parse_eval_config
from l2l_fast.cli.run_files import ConfigError
from l2l_fast.cli.run_files import parse_config as parse_run_config
from l2l_fast.evaluation import networks
from l2l_fast.evaluation import evaluate_model
from l2l_fast.evaluation.generation import generate
from l2l_fast.evaluation.metrics import FashionClassifier, frechet_distance, inception_score, load_classifier, save_classifier
from l2l_fast.models import save_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _results(folder) -> dict:
    return json.loads((Path(folder) / "results.json").read_text())


def _metrics(folder) -> dict:
    (table,) = _results(folder)["tables"]
    return {row["method"]: row["metrics"] for row in table["rows"]}


def _write_fashion_folders(root: Path, images, labels, classes, per_class, corrupt=0):
    names = [f"class_{c}" for c in range(10)]
    for c in classes:
        folder = root / names[c]
        folder.mkdir(parents=True)
        for n, index in enumerate((labels == c).nonzero().flatten()[:per_class].tolist()):
            pixels = (images[index, 0] * 255).round().to(torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(folder / f"{n:04d}.png")
    for i in range(corrupt):
        (root / names[classes[0]] / f"{i:04d}_broken.png").write_bytes(b"not a png")
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root / "classes.txt"


def test_fashion_folders_match_the_built_in_path_and_evaluate(tmp_path, capsys):
    """The same images as PNG class folders (with a corrupt file among them) and as the built-in
    demo split give the same table, and both match `evaluate_model` on those images."""
    from l2l_fast.data.assets import load_demo_images

    images, labels = load_demo_images("test")
    forget, retain, per_class = [0, 1], [2, 3], 5
    class_list = _write_fashion_folders(tmp_path / "folders", images, labels, forget + retain, per_class, corrupt=1)
    common = dict(models={"Original": "demo"}, mask="inpaint:3", seed=0, batch_size=8,
                  metrics={"use": {"FID": "classifier", "KID": "classifier"}})
    built_in = parse_eval_config({**common, "out": str(tmp_path / "built_in"), "data": dict(
        dataset="demo", forget=forget, retain=retain, per_class=per_class)})
    folders = parse_eval_config({**common, "out": str(tmp_path / "folders_out"), "max_bad_fraction": 0.2, "data": dict(
        dataset="folders", root=str(tmp_path / "folders"), class_list=str(class_list),
        forget=forget, retain=retain, per_class=per_class)})
    evaluate_config(built_in, progress=False)
    evaluate_config(folders, progress=False)
    a, b = _metrics(tmp_path / "built_in")["Original"], _metrics(tmp_path / "folders_out")["Original"]
    assert set(a) == set(b) and all(isinstance(a[k], float) for k in ("FID_F", "IS_F", "CLIP_F", "acc_R"))
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), key
    notes = _results(tmp_path / "folders_out")["notes"]
    assert any("skipped 1 unreadable images of the forget set" in n for n in notes)
    assert "l2l-fast eval: skipping 1 unreadable images of the forget set" in capsys.readouterr().err  # said at once

    def pick(classes):
        index = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in classes])
        return images[index], labels[index]

    reference, _ = evaluate_model(adapter_for(_demo_model()), pick(retain), pick(forget), mask="inpaint:3",
                                  classifier=load_classifier(), seed=0)
    for key in ("FID_R", "IS_R", "CLIP_R", "FID_F", "IS_F", "CLIP_F", "acc_R", "acc_F"):
        assert a[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-7), key
    assert a["per_class_F"] == pytest.approx(reference["per_class_F"])


def _demo_model():
    from l2l_fast import load_model

    return load_model("demo")


class StandIn(nn.Module):
    """A tiny stand-in for a feature network: {"pool": features, "logits": logits}; counts images."""

    seen = {"images": 0}

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def pooled(self, x):
        return torch.tanh(self.conv(x)).mean(dim=(2, 3))

    def forward(self, x):
        StandIn.seen["images"] += x.shape[0]
        pool = self.pooled(x)
        return {"pool": pool, "logits": self.head(pool)}


def _load_stand_in(path):
    network = StandIn()
    network.load_state_dict(torch.load(path, weights_only=True))
    return network


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    """Class folders, two tiny 16x16 grey MAEs and a stand-in inception network from local files."""
    root = make_folders(tmp_path / "data", per_class=4)
    paths = {}
    for seed, name in ((0, "a"), (1, "b")):
        paths[name] = str(save_model(tiny_model(seed), tmp_path / f"{name}.safetensors"))
    torch.manual_seed(3)
    torch.save(StandIn().state_dict(), tmp_path / "inception.pt")
    monkeypatch.setitem(networks.LOADERS, "inception", _load_stand_in)
    StandIn.seen["images"] = 0
    raw = dict(models={"A": paths["a"], "B": paths["b"]}, mask="inpaint:2", seed=0, batch_size=3,
               data=dict(dataset="folders", root=str(root), class_list=str(root / "classes.txt"),
                         forget=[0], retain=[1, 2]),
               metrics=dict(inception=str(tmp_path / "inception.pt"), fid_inception=None), out=str(tmp_path / "out"))
    return raw, tmp_path


def test_real_features_once_across_rows_and_reruns_and_a_stand_in_inception(tiny_setup):
    raw, tmp_path = tiny_setup
    forget_count, retain_count = 4, 8
    evaluate_config(parse_eval_config(raw), progress=False)
    total = forget_count + retain_count
    assert StandIn.seen["images"] == total * 3  # real images once, each model's generated images once
    table = _metrics(raw["out"])
    # FID and IS from the stand-in's outputs, as frechet_distance / inception_score compute them on the images
    network = _load_stand_in(tmp_path / "inception.pt")
    from l2l_fast.data import ClassFolders
    from l2l_fast import load_model

    real = torch.stack([x for x, _ in ClassFolders(raw["data"]["root"], [FOLDER_CLASSES[0]], image_size=16, channels=1)])
    adapter = adapter_for(load_model(raw["models"]["B"]))
    fake = generate(adapter, real, "inpaint:2", seed=0, batch_size=3)
    pooled = _Pool(network)
    assert table["B"]["FID_F"] == pytest.approx(frechet_distance(real, fake, pooled), rel=1e-6)
    assert table["B"]["IS_F"] == pytest.approx(inception_score(fake, _Logits(network), splits=4)[0], rel=1e-6)
    assert table["A"]["FID_F"] != table["B"]["FID_F"]
    # no classifier for 16x16 RGB-sourced images and no CLIP: skipped, never a number
    for key in ("acc_F", "acc_R"):
        assert table["A"][key] is None
    assert table["A"]["CLIP_F"] is None  # CLIP falls back to the classifier only, which was not given
    report = (Path(raw["out"]) / "report.md").read_text()
    assert "skipped" in report and "no network for acc: give metrics.classifier" in report
    assert "Time per model and stage" in report and "seed: 0" in report

    # a rerun reuses both rows and the real features: nothing goes through the network
    StandIn.seen["images"] = 0
    evaluate_config(parse_eval_config(raw), progress=False)
    assert StandIn.seen["images"] == 0 and _metrics(raw["out"]) == table
    # an interrupted evaluation (B's row missing) continues with B only
    (row_b,) = [p for p in (Path(raw["out"]) / "rows" / "inpaint_2").glob("*_B.json")]
    row_b.unlink()
    evaluate_config(parse_eval_config(raw), progress=False)
    assert StandIn.seen["images"] == total and _metrics(raw["out"]) == table
    # a model added to the file: only its row is computed, the others are kept
    StandIn.seen["images"] = 0
    more = {**raw, "models": {**raw["models"], "C": str(save_model(tiny_model(2), tmp_path / "c.safetensors"))}}
    evaluate_config(parse_eval_config(more), progress=False)
    assert StandIn.seen["images"] == total and {k: v for k, v in _metrics(raw["out"]).items() if k != "C"} == table


class _Pool(nn.Module):
    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network.pooled(x)


class _Logits(_Pool):
    def forward(self, x):
        return self.network.head(self.network.pooled(x))


def test_a_local_classifier_gives_accuracy_and_the_fallback_features(tiny_setup):
    raw, tmp_path = tiny_setup
    torch.manual_seed(0)
    classifier = FashionClassifier(num_classes=4, width=4, feature_dim=8)
    save_classifier(classifier, tmp_path / "clf.safetensors")
    raw = copy.deepcopy(raw)
    raw["models"] = {"A": raw["models"]["A"]}
    raw["metrics"] = dict(classifier=str(tmp_path / "clf.safetensors"), compute=["CLIP", "acc"])
    evaluate_config(parse_eval_config(raw), progress=False)
    row = _metrics(raw["out"])["A"]
    assert set(k for k in row if not k.startswith("per_class")) == {"CLIP_F", "CLIP_R", "acc_F", "acc_R"}
    from l2l_fast.data import ClassFolders
    from l2l_fast import load_model
    from l2l_fast.evaluation.metrics import accuracy, clip_similarity, Features

    names = [FOLDER_CLASSES[1], FOLDER_CLASSES[2]]
    items = list(ClassFolders(raw["data"]["root"], names, image_size=16, channels=1))
    real = torch.stack([x for x, _ in items])
    labels = torch.tensor([y + 1 for _, y in items])  # the class-list index of each class
    fake = generate(adapter_for(load_model(raw["models"]["A"])), real, "inpaint:2", seed=0, batch_size=3)
    loaded = load_classifier(tmp_path / "clf.safetensors")
    assert row["CLIP_R"] == pytest.approx(clip_similarity(fake, real, Features(loaded)), rel=1e-6)
    assert row["acc_R"] == pytest.approx(accuracy(loaded, fake, labels))
    assert set(row["per_class_R"]) == {"1", "2"}


class StandInClip(StandIn):
    def forward(self, x):
        return {"embedding": self.pooled(x)}


def test_a_stand_in_clip_network_gives_clip_and_the_tsne(tiny_setup, monkeypatch):
    raw, tmp_path = tiny_setup

    def load(spec):
        name, _, path = spec.partition(":")
        network = StandInClip()
        network.load_state_dict(torch.load(path, weights_only=True))
        return network

    monkeypatch.setitem(networks.LOADERS, "clip", load)
    raw = {**raw, "models": {"B": raw["models"]["B"]},
           "metrics": {"clip": f"Tiny:{tmp_path / 'inception.pt'}", "compute": ["CLIP"]}}
    evaluate_config(parse_eval_config(raw), progress=False)
    (table,) = _results(raw["out"])["tables"]
    from l2l_fast.data import ClassFolders
    from l2l_fast.evaluation.metrics import clip_similarity
    from l2l_fast import load_model

    real = torch.stack([x for x, _ in ClassFolders(raw["data"]["root"], FOLDER_CLASSES[1:3], image_size=16, channels=1)])
    fake = generate(adapter_for(load_model(raw["models"]["B"])), real, "inpaint:2", seed=0, batch_size=3)
    expected = clip_similarity(fake, real, _Pool(_load_stand_in(tmp_path / "inception.pt")))
    assert table["rows"][0]["metrics"]["CLIP_R"] == pytest.approx(expected, rel=1e-6)
    assert table["tsne_title"] == "T-SNE of CLIP embeddings" and (Path(raw["out"]) / table["tsne"]).is_file()


def _error(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_eval_config(raw, "eval.yaml")


def test_bad_eval_files_name_the_key(tiny_setup):
    raw, tmp_path = tiny_setup
    _error({**raw, "metrics": {"compute": ["FID", "FOO"]}}, r"metrics.compute has unknown metrics \['FOO'\]")
    _error({**raw, "metrics": {"inception": str(tmp_path / "missing.pt")}}, r"metrics.inception .*is not a file")
    _error({**raw, "metrics": {"clip": "ViT-H-14"}}, r"metrics.clip must be 'MODEL:PATH'")
    _error({**raw, "metrics": {"use": {"IS": "clip"}}}, r"metrics.use.IS must be one of")
    _error({**raw, "mask": "box"}, r"mask must be")
    _error({**raw, "sampler": {"vq": {"iterations": 0}}}, r"sampler.vq.iterations must be a positive integer")
    _error({**raw, "sampler": {"vq": {"temp": 6}}}, r"sampler.vq has unknown keys \['temp'\]")
    _error({**raw, "models": {"A": str(tmp_path / "none.safetensors")}}, r"models.A .*is not a file")
    _error({**raw, "outdir": "x"}, r"the file has unknown keys \['outdir'\]")
    _error({**raw, "data": {**raw["data"], "forget": [7]}}, r"data.forget class index 7 is outside")
    _error({k: v for k, v in raw.items() if k != "out"}, r"out is required")
    # a 16x16 model on Fashion-MNIST's 28x28 images: found from the checkpoint's metadata
    mismatch = parse_eval_config({**raw, "data": {"dataset": "demo", "forget": [0], "retain": [1]}}, "eval.yaml")
    with pytest.raises(ConfigError, match=r"models.A takes 1x16x16 images but data.dataset 'demo' gives 1x28x28"):
        evaluate_config(mismatch, progress=False)


def test_the_cli_turns_a_bad_eval_file_into_one_line(tiny_setup, capsys):
    raw, tmp_path = tiny_setup
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({**raw, "metrics": {"compute": ["FOO"]}}))
    assert cli_main(["eval", "--config", str(path)]) == 2
    assert "metrics.compute has unknown metrics ['FOO']" in capsys.readouterr().err


def _with_existing_paths(section: dict, tmp_path: Path) -> dict:
    """A protocol file's section with its machine-specific paths pointed at stand-in files."""
    section = copy.deepcopy(section)
    stand_in = tmp_path / "file.bin"
    stand_in.write_bytes(b"x")
    if "models" in section:
        section["models"] = {name: str(stand_in) for name in section["models"]}
    if "model" in section:
        section["model"] = str(stand_in)
    section["data"]["root"] = str(tmp_path)
    for key in ("inception", "classifier_classes"):
        if section.get("metrics", {}).get(key):
            section["metrics"][key] = str(stand_in)
    metrics = section.get("metrics", {})
    if metrics.get("clip"):
        metrics["clip"] = metrics["clip"].split(":")[0] + ":" + str(stand_in)
    if metrics.get("classifier", "").startswith("timm:"):
        metrics["classifier"] = ":".join(metrics["classifier"].split(":")[:2]) + ":" + str(stand_in)
    return section


@pytest.mark.parametrize("name, classes, per_class", [("imagenet", 100, 50), ("places365", 50, 100)])
def test_the_protocol_files_parse(name, classes, per_class, tmp_path, monkeypatch):
    monkeypatch.chdir(EXAMPLES)  # the files name their class lists relative to themselves
    raw = yaml.safe_load((EXAMPLES / f"{name}_protocol.yaml").read_text())
    assert set(raw) == {"run", "eval"}
    run = parse_run_config(_with_existing_paths(raw["run"], tmp_path), name)
    evaluation = parse_eval_config(_with_existing_paths(raw["eval"], tmp_path), name)
    for data in (run.data, evaluation.data):
        assert len(data.forget) == len(data.retain) == classes
        assert not set(data.forget) & set(data.retain)
    assert evaluation.data.per_class == per_class
    assert run.data.forget == evaluation.data.forget
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from seed_class_split import seeded_split
    from l2l_fast.data import read_class_list

    count = len(read_class_list(evaluation.data.class_list))
    assert (evaluation.data.forget, evaluation.data.retain) == seeded_split(count, classes, classes, 0)
