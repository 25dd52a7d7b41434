"""The ``facslab`` command: demo (generate + cache), generate, preprocess, eyes."""

import numpy as np
from PIL import Image

from facslab.cli import main


def test_demo_generates_both_datasets_and_reuses_the_cache(tmp_path, capsys):
    args = ["demo", "--prepare_only", "--out", str(tmp_path), "--ckplus_subjects", "4", "--sequences", "1",
            "--celeba_images", "40", "--image_size", "32"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "generated CK+" in first and "generated CelebA" in first
    assert "CKPlusDataModule" in first and "cache built" in first
    assert (tmp_path / "CK+" / "cohn-kanade-images").is_dir()
    assert (tmp_path / "CelebA" / "openface" / "img_align_celeba.csv").is_file()
    assert (tmp_path / "CKPlusDataModule_split.csv").is_file()
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "generated" not in second and "cache reused" in second and "cache built" not in second


def test_generate_one_dataset(tmp_path, capsys):
    assert main(["generate", "ckplus", str(tmp_path / "ck"), "--subjects", "2", "--sequences", "1"]) == 0
    assert len(list((tmp_path / "ck" / "FACS").rglob("*_facs.txt"))) == 2


def test_preprocess_from_a_yaml_config(ckplus, tmp_path, capsys):
    root, _ = ckplus
    config = tmp_path / "ck.yaml"
    config.write_text(f"""class_path: datamodules.CKPlusDataModule
init_args:
  root: {root}
  image_size: 32
  cache_dir: {tmp_path / 'cache'}
  preprocess_workers: 0
  progress: false
""")
    assert main(["preprocess", "--data", str(config), "--split", str(tmp_path / "split.csv")]) == 0
    assert "CKPlusDataModule" in capsys.readouterr().out
    assert (tmp_path / "split.csv").read_text().startswith("image,subject,role")


def test_eyes_on_a_real_photo_and_on_an_image_without_a_face(astronaut, tmp_path, capsys):
    face = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(face)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((100, 100, 3), 200, np.uint8)).save(blank)
    status = main(["eyes", str(face), str(blank)])
    captured = capsys.readouterr()
    assert status == 1  # one image had no face, the other was still processed
    assert "left eye EAR 0.3" in captured.out and captured.out.count("(open)") >= 2
    assert "blank.png: no face found" in captured.err
