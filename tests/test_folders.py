import pytest
import torch

from l2l_fast.data import ClassFolders, ImageFiles, class_split_folders, read_class_list
from l2l_fast.models import MAE

from conftest import FOLDER_CLASSES, make_folders


def test_read_class_list(tmp_path):
    make_folders(tmp_path)
    assert read_class_list(tmp_path / "classes.txt") == FOLDER_CLASSES


def test_images_are_decoded_cropped_and_resized(tmp_path):
    make_folders(tmp_path)
    data = ClassFolders(tmp_path, FOLDER_CLASSES[1:3], image_size=8)
    assert len(data) == 6
    image, label = data[4]
    assert image.shape == (3, 8, 8) and label == 1
    value = 40 * 2 + 1
    torch.testing.assert_close(image[0], torch.full((8, 8), value / 255))
    torch.testing.assert_close(image[1], torch.full((8, 8), (255 - value) / 255))
    grey, _ = ClassFolders(tmp_path, FOLDER_CLASSES[:1], image_size=4, channels=1)[0]
    assert grey.shape == (1, 4, 4)


def test_class_split_by_index_and_name(tmp_path):
    make_folders(tmp_path)
    split = class_split_folders(tmp_path, tmp_path / "classes.txt", forget=[0], retain=["n01443537", 2],
                                proxy=[3], image_size=8, per_class=2)
    assert len(split.forget) == 2 and len(split.retain) == 4 and len(split.proxy) == 2
    assert split.retain.classes == ["n01443537", "n01484850"]
    with pytest.raises(ValueError, match="retain: classes"):
        class_split_folders(tmp_path, tmp_path / "classes.txt", forget=[0], retain=[0], image_size=8)
    with pytest.raises(ValueError, match="outside the class list"):
        class_split_folders(tmp_path, tmp_path / "classes.txt", forget=[9], retain=[1], image_size=8)


def test_corrupt_images_are_found_when_read_and_replaced_by_the_next(tmp_path):
    make_folders(tmp_path, per_class=3, bad=1)
    data = ClassFolders(tmp_path, FOLDER_CLASSES[:2], image_size=8)
    assert len(data) == 7 and data.bad_files == []  # building decodes nothing
    assert [p.name for p in data.paths[:2]] == ["broken_0.jpg", "img_0.png"]
    image, label = data[0]
    torch.testing.assert_close(image, data[1][0]) and label == 0
    assert [p.name for p in data.bad_files] == ["broken_0.jpg"]
    found = data.read(0)
    assert found.index == 1 and found.bad == ()  # known bad in this process: skipped without a retry


def test_missing_folders_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        ClassFolders(tmp_path / "nowhere", FOLDER_CLASSES, image_size=8)
    make_folders(tmp_path)
    with pytest.raises(FileNotFoundError, match="class folder"):
        ClassFolders(tmp_path, ["n00000000"], image_size=8)


def test_forget_individual_files_through_a_run_file(tmp_path):
    from l2l_fast.cli.run import run_data
    from l2l_fast.cli.run_files import parse_config

    make_folders(tmp_path)
    (tmp_path / "forget.txt").write_text(f"# deletion request 17\n{FOLDER_CLASSES[1]}/img_0.png\n{FOLDER_CLASSES[2]}/img_2.png\n")
    config = parse_config({
        "model": "demo", "unlearn": {"steps": 1, "batch_size": 1},
        "data": {"dataset": "folders", "root": str(tmp_path), "class_list": str(tmp_path / "classes.txt"),
                 "forget_files": str(tmp_path / "forget.txt"), "retain": [1, 2], "image_size": 8},
    })

    model = MAE(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8,
                decoder_depth=1, decoder_num_heads=2)
    forget, retain = run_data(config, model)
    assert [p.name for p in forget.paths] == ["img_0.png", "img_2.png"] and forget[0][0].shape == (1, 8, 8)
    assert len(retain) == 4 and all(p.name != "img_0.png" or p.parent.name != FOLDER_CLASSES[1] for p, _ in retain.samples)
    with pytest.raises(ValueError, match="missing or unreadable"):
        ImageFiles([tmp_path / "nope.png"], image_size=8)
