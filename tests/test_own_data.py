"""A user's own data: image folders, npz arrays (of images and of vectors), CIFAR's
binary records, each trained through the CLI alike streamed and on the device, and
resumed; every bad input is one line naming the file, before any compute, and loses
nothing.

The data is made here, tiny, in the real formats (PNG, JPEG and BMP through Pillow,
npz through NumPy, CIFAR records byte by byte).
"""

import gzip
import io
import json
import pathlib
import re
import shutil
import struct
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from aejax import analysis, data, engine, trainer
from aejax.data import folders, image_files, readers
from experiments.configs import base, vanilla

RNG = np.random.default_rng(0)


def images(n, shape=(8, 8, 3)):
  return RNG.integers(0, 256, (n, *shape), dtype=np.uint8)


def save_images(folder, arrays, suffix=".png"):
  folder.mkdir(parents=True, exist_ok=True)
  for i, array in enumerate(arrays):
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
        folder / f"{i:03d}{suffix}")


def cifar_records(images_, labels, coarse=None):
  """CIFAR's binary layout: label byte(s), then the red, green and blue planes."""
  planes = images_.transpose(0, 3, 1, 2).reshape(len(images_), -1)
  heads = labels[:, None] if coarse is None else np.stack([coarse, labels], 1)
  return np.concatenate([heads.astype(np.uint8), planes], 1).tobytes()


def make_cifar10(root, n_per_file=20, n_test=20):
  folder = root / "cifar-10-batches-bin"
  folder.mkdir(parents=True)
  for name, n in [(f"data_batch_{i}.bin", n_per_file) for i in range(1, 6)] + [
      ("test_batch.bin", n_test)]:
    (folder / name).write_bytes(cifar_records(images(n, (32, 32, 3)),
                                              RNG.integers(0, 10, n)))
  return folder


def one_line_error(match, fn, *args, **kwargs):
  with pytest.raises(data.DataError, match=match) as info:
    fn(*args, **kwargs)
  assert "\n" not in str(info.value)
  return str(info.value)


# ------------------------------------------------------------- pure functions


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=30), st.floats(0.01, 0.99))
def test_split_by_file_name_depends_on_the_name_alone(name, fraction):
  assert image_files.in_test_split(name, fraction) == image_files.in_test_split(name, fraction)
  assert image_files.in_test_split(name, fraction) <= image_files.in_test_split(name, 0.999999)


def test_split_by_file_name_holds_out_about_the_fraction():
  held = np.mean([image_files.in_test_split(f"class/{i}.png", 0.2) for i in range(5000)])
  assert abs(held - 0.2) < 0.02


@settings(max_examples=25, deadline=None)
@given(st.integers(4, 20), st.integers(4, 20))
def test_resize_and_crop_against_numpy_when_no_resize_is_needed(height, width):
  """An image whose shorter side already is the size is only cropped, centred with
  the offset rounded down: NumPy's slice."""
  size = min(height, width)
  array = images(1, (height, width, 3))[0]
  out = np.asarray(image_files.resize_and_crop(Image.fromarray(array), size))
  top, left = (height - size) // 2, (width - size) // 2
  np.testing.assert_array_equal(out, array[top:top + size, left:left + size])


def test_resize_and_crop_scales_the_shorter_side():
  array = np.full((20, 40, 3), 7, np.uint8)
  out = image_files.resize_and_crop(Image.fromarray(array), 10)
  assert out.size == (10, 10) and (np.asarray(out) == 7).all()


def test_cifar_records_parse_against_an_explicit_loop():
  pictures, labels, coarse = images(5, (32, 32, 3)), RNG.integers(0, 100, 5), RNG.integers(0, 20, 5)
  got, got_labels = readers.parse_cifar_records(cifar_records(pictures, labels, coarse), 2)
  np.testing.assert_array_equal(got, pictures)
  np.testing.assert_array_equal(got_labels, labels)
  raw = cifar_records(pictures, labels)
  for i in range(5):  # byte 1 + c * 1024 + y * 32 + x is pixel (y, x) of channel c
    record = raw[i * 3073:(i + 1) * 3073]
    assert record[0] == labels[i] and record[1 + 2 * 1024 + 3 * 32 + 5] == pictures[i, 3, 5, 2]


# --------------------------------------------------------------------- readers


def test_folder_with_class_subfolders_and_a_split_by_name(tmp_path):
  a, b = images(40), images(40)
  save_images(tmp_path / "cats", a)
  save_images(tmp_path / "dogs", b, ".jpg")
  ds = folders.read_folder(tmp_path)
  assert ds.source == "folder" and ds.record()["classes"] == ["cats", "dogs"]
  assert ds.n_train + len(ds.test_images) == 80 and ds.image_shape == (8, 8, 3)
  assert "by file name" in ds.record()["split"]
  cats = np.concatenate([ds.train_images[ds.train_labels == 0],
                         ds.test_images[ds.test_labels == 0]])
  assert sorted(map(bytes, cats)) == sorted(map(bytes, a))  # PNG is lossless
  assert ds.fingerprint == folders.read_folder(tmp_path).fingerprint


def test_folder_with_train_and_test_resized_and_converted(tmp_path):
  save_images(tmp_path / "train" / "x", images(6, (12, 16, 3)))
  save_images(tmp_path / "train" / "y", images(6, (20, 20, 1)))
  save_images(tmp_path / "test" / "y", images(3, (10, 30, 3)), ".webp")
  one_line_error(r"is 12x16x3 but .* is 20x20x1: .* --config\.image_size", folders.read_folder,
                 tmp_path)
  ds = folders.read_folder(tmp_path, image_size=8, channels=1)
  assert ds.image_shape == (8, 8, 1) and (ds.n_train, len(ds.test_images)) == (12, 3)
  assert ds.record()["split"] == "the folder's train/ and test/ subfolders"
  assert ds.test_labels.tolist() == [1, 1, 1]
  grey = Image.fromarray(images(1, (10, 30, 3))[0]).convert("L")
  assert np.asarray(image_files.resize_and_crop(grey, 8)).shape == (8, 8)


def test_npz_images_with_and_without_labels(tmp_path):
  train_x, test_x = images(30), images(10)
  np.savez(tmp_path / "a.npz", train=train_x, test=test_x, train_labels=np.arange(30) % 3,
           test_labels=np.arange(10) % 3)
  ds = readers.read_npz(tmp_path / "a.npz")
  np.testing.assert_array_equal(ds.test_images, test_x)
  assert ds.train_labels.dtype == np.int32 and ds.train_labels[:4].tolist() == [0, 1, 2, 0]
  np.savez(tmp_path / "b.npz", train=train_x, test=test_x)
  assert readers.read_npz(tmp_path / "b.npz").record()["labels"] == "none (all 0)"


def test_cifar10_and_cifar100_binary_records(tmp_path):
  folder = make_cifar10(tmp_path)
  config = base.get_config()
  config.dataset, config.data_dir = "cifar10", str(tmp_path)
  ds = data.load(config)
  assert (ds.n_train, len(ds.test_images), ds.image_shape) == (100, 20, (32, 32, 3))
  first = readers.parse_cifar_records((folder / "data_batch_1.bin").read_bytes(), 1)[0]
  np.testing.assert_array_equal(ds.train_images[:20], first)
  c100 = tmp_path / "c100" / "cifar-100-binary"
  c100.mkdir(parents=True)
  for name, n in (("train.bin", 30), ("test.bin", 10)):
    (c100 / name).write_bytes(cifar_records(images(n, (32, 32, 3)), RNG.integers(0, 100, n),
                                            RNG.integers(0, 20, n)))
  assert readers.read_cifar(c100, "cifar100").n_train == 30


# ------------------------------------------------------------------ bad input


def test_every_bad_input_is_one_line_naming_the_file(tmp_path):
  save_images(tmp_path / "ok" / "train", images(3))
  save_images(tmp_path / "ok" / "test", images(1))
  bad = tmp_path / "ok" / "train" / "002.png"
  bad.write_bytes(bad.read_bytes()[:40])  # a cut-off copy
  one_line_error(r"002\.png cannot be read as an image", folders.read_folder, tmp_path / "ok")
  (tmp_path / "empty" / "sub").mkdir(parents=True)
  (tmp_path / "empty" / "notes.txt").write_text("no images")
  one_line_error(r"empty holds no image files", folders.read_folder, tmp_path / "empty")
  save_images(tmp_path / "few", images(2))
  one_line_error(r"left the test split empty", folders.read_folder, tmp_path / "few",
                 test_fraction=0.01)
  save_images(tmp_path / "halves" / "train", images(2))
  (tmp_path / "halves" / "test").mkdir()
  one_line_error(r"test holds no image files", folders.read_folder, tmp_path / "halves")
  save_images(tmp_path / "layouts" / "train" / "cats", images(2))
  save_images(tmp_path / "layouts" / "test", images(1))
  one_line_error(r"one of train/ and test/ has class subfolders", folders.read_folder,
                 tmp_path / "layouts")

  x = images(6)
  cases = {"missing.npz": (dict(train=x), r"lacks the key 'test'"),
           "dtype.npz": (dict(train=x.astype(np.int32), test=x), r"'train' has dtype int32"),
           "floats.npz": (dict(train=x / 255, test=x / 255),
                          r"'train' is float64 \[6, 8, 8, 3\]; float vectors must be \[N, D\]"),
           "count.npz": (dict(train=x, test=x, train_labels=np.zeros(5), test_labels=np.zeros(6)),
                         r"'train_labels' holds 5 labels .* for 6 train images"),
           "shape.npz": (dict(train=x, test=images(6, (8, 4, 3))),
                         r"the test images are 8x4x3 but the train images 8x8x3")}
  for name, (arrays, match) in cases.items():
    np.savez(tmp_path / name, **arrays)
    assert name in one_line_error(match, readers.read_npz, tmp_path / name)
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  one_line_error(r"junk\.npz cannot be read as an npz file", readers.read_npz,
                 tmp_path / "junk.npz")

  folder = make_cifar10(tmp_path / "cifar")
  path = folder / "data_batch_3.bin"
  path.write_bytes(path.read_bytes()[:-7])
  one_line_error(r"data_batch_3\.bin holds .* not a whole number of 3073-byte records",
                 readers.read_cifar, tmp_path / "cifar")
  one_line_error(r"holds no cifar10 binary files", readers.read_cifar, tmp_path)


def write_idx(path, array):
  raw = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw))


def test_idx_damaged_gzip_and_test_shape_unlike_train(tmp_path):
  for key, shape in (("train_images", (20, 28, 28)), ("train_labels", (20,)),
                     ("test_images", (10, 14, 14)), ("test_labels", (10,))):
    write_idx(tmp_path / (data.IDX_FILES[key] + ".gz"), RNG.integers(0, 10, shape))
  one_line_error(r"t10k-images-idx3-ubyte\.gz holds 14x14 images but "
                 r"train-images-idx3-ubyte\.gz 28x28", data.read_idx_folder, tmp_path)
  path = tmp_path / "train-images-idx3-ubyte.gz"
  raw = bytearray(gzip.compress(RNG.integers(0, 256, 50_000).astype(np.uint8).tobytes()))
  raw[len(raw) // 2:len(raw) // 2 + 8] = b"\xff" * 8  # damaged in its middle
  path.write_bytes(bytes(raw))
  one_line_error(r"train-images-idx3-ubyte\.gz cannot be read .* corrupt or truncated",
                 data.read_idx, path)


def test_bad_names_and_keys_are_refused_before_any_compute():
  for key, value, match in (("dataset", "folder:", "names no folder of images"),
                            ("channels", 2, "config.channels=2 is unknown"),
                            ("image_size", -1, "config.image_size must be 0"),
                            ("test_fraction", 1.0, "config.test_fraction must lie")):
    bad = base.get_config()
    bad[key] = value
    with pytest.raises(ValueError, match=match):
      trainer.config_lib.validate(bad)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(1, 6), st.integers(0, 2**31))
def test_standardize_against_numpy(n, d, seed):
  rng = np.random.default_rng(seed)
  train_x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 100, d) + 7).astype(np.float32)
  train_x[:, 0] = 3.0  # a constant feature keeps its scale
  test_x = rng.standard_normal((5, d)).astype(np.float32)
  a, b, mean, std = readers.standardize(train_x, test_x)
  np.testing.assert_allclose(mean, train_x.astype(np.float64).mean(0), rtol=1e-6)
  assert std[0] == 1.0 and (a[:, 0] == 0).all()
  np.testing.assert_allclose(b, (test_x - mean) / std, rtol=1e-5, atol=1e-5)
  if n > 2:
    np.testing.assert_allclose(a[:, 1:].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(a[:, 1:].std(0), 1, rtol=1e-3)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.data())
def test_first_non_finite_row_is_the_first_bad_one(n, draw):
  x = np.zeros((n, 3), np.float32)
  bad = draw.draw(st.sets(st.integers(0, n - 1)))
  for row in bad:
    x[row, row % 3] = draw.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
  assert readers.first_non_finite_row(x) == (min(bad) if bad else None)


def test_bad_vectors_are_one_line_and_images_only_families_refuse_them(tmp_path):
  x = vectors(20)
  x[7, 3] = np.nan
  np.savez(tmp_path / "nan.npz", train=vectors(20), test=x)
  one_line_error(r"nan\.npz: 'test' holds a non-finite value \(NaN or inf\) in row 7",
                 readers.read_npz, tmp_path / "nan.npz")
  np.savez(tmp_path / "mixed.npz", train=vectors(20), test=images(4))
  one_line_error(r"'test' is uint8 \[4, 8, 8, 3\]; float vectors must be \[N, D\]",
                 readers.read_npz, tmp_path / "mixed.npz")
  np.savez(tmp_path / "img.npz", train=images(4), test=images(4))
  one_line_error(r"standardize applies to float vectors only", readers.read_npz,
                 tmp_path / "img.npz", standardize=True)
  np.savez(tmp_path / "ok.npz", train=vectors(40), test=vectors(8))
  ds = readers.read_npz(tmp_path / "ok.npz")
  assert ds.image_shape == (12,) and not ds.bounded and ds.train_images.dtype == np.float32
  for model, losses, match in (("conv", "mse=1", r"'conv' trains on images .* 12 features"),
                               ("vqvae", "mse=1", r"'vqvae' trains on images"),
                               ("mlp", "bce=1", r"config.losses must not hold 'bce'")):
    config = base.get_config(model)
    config.losses, config.batch_size = losses, 8
    with pytest.raises(ValueError, match=match) as info:
      engine.setup(config, ds)
    assert "\n" not in str(info.value)
  unit = readers.read_npz(tmp_path / "img.npz")
  assert unit.bounded


# ------------------------------------------------------------ training on them
#
# Each source is trained through the CLI 1 epoch with input=device and with
# input=stream, then the device run is resumed to a second epoch with input=stream
# (``device_stream_resume``); ``check_alike_and_resumed`` holds what every source
# must show; each source's test adds what is its own.


def device_stream_resume(cli, root, args):
  """1 epoch with input=device and with input=stream (into root/device, root/stream),
  then the device run resumed to 2 epochs with input=stream: ``(root, logs, the
  device run's 1-epoch results)``."""
  env = {"TFDS_DATA_DIR": str(root / "tfds")}  # a module fixture's own, for the copy
  args = (*args, "--config.num_epochs=1")
  logs = {mode: cli.run(root / mode, *args, f"--config.input={mode}", env=env).stderr
          for mode in ("device", "stream")}
  one_epoch = results(root / "device")
  logs["resumed"] = cli.run(root / "device", *args, "--config.num_epochs=2",
                            "--config.input=stream", env=env).stderr
  return root, logs, one_epoch


def check_alike_and_resumed(root, logs, device) -> tuple[dict, dict]:
  """The same test metrics, bit for bit, streamed and on the device; the resumed run
  went on from the checkpoint to a second epoch on the same data, reading the stream
  copy written before. ``(the stream run's results, the resumed run's)``."""
  stream = results(root / "stream")
  assert (device["input"], stream["input"]) == ("device", "stream")
  assert stream["test"] == device["test"] and stream["steps"] == device["steps"]
  assert stream["dataset"]["fingerprint"] == device["dataset"]["fingerprint"]
  if device["dataset"]["source"] in ("folder", "npz", "cifar_binary"):  # a prepared copy
    assert "Preparing" in logs["device"] and "Preparing" not in logs["stream"]
    assert re.search(r"Streaming the train set from \S*aejax_prepared", logs["stream"])
    assert "Preparing" not in logs["resumed"] and "Writing" not in logs["stream"]
  else:  # streamed from an array_record copy written once
    assert f"Writing {device['dataset']['name']} once as array_record" in logs["stream"]
    assert "Writing" not in logs["resumed"]  # the stream copy is reused
  assert "Resumed from the checkpoint" in logs["resumed"]
  resumed = results(root / "device")
  assert resumed["epochs"] == 2 and resumed["steps"] == 2 * device["steps"]
  assert resumed["input"] == "stream"
  assert resumed["dataset"]["fingerprint"] == device["dataset"]["fingerprint"]
  return stream, resumed


def results(workdir: pathlib.Path) -> dict:
  return json.loads((workdir / "results.json").read_text())


# One class a format: PNG and BMP (lossless), JPEG (lossy).
FOLDER_FORMATS = {"class0": ".png", "class1": ".jpg", "class2": ".bmp"}


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory, cli):
  """A folder of PNG, JPEG and BMP files, a class each (``FOLDER_FORMATS``)."""
  root = tmp_path_factory.mktemp("folder")
  for name, suffix in FOLDER_FORMATS.items():
    arrays = images(60)
    np.save(root / f"{name}.npy", arrays)  # the pixels saved, file by file
    save_images(root / "pictures" / name, arrays, suffix)
  return device_stream_resume(cli, root, (
      "--config=experiments/configs/vanilla.py",
      f"--config.dataset=folder:{root / 'pictures'}", "--config.batch_size=32"))


@pytest.mark.slow
def test_a_png_jpeg_and_bmp_folder_trains_alike_streamed_and_on_the_device_and_resumes(
    folder_runs):
  """The CLI's run read every file as Pillow decodes it: PNG and BMP the very pixels
  saved, JPEG its own lossy decoding of them."""
  root, logs, device = folder_runs
  check_alike_and_resumed(root, logs, device)
  assert device["dataset"]["classes"] == list(FOLDER_FORMATS)
  assert "by file name" in device["dataset"]["split"]
  ds = folders.read_folder(root / "pictures")
  assert ds.fingerprint == device["dataset"]["fingerprint"]
  labels = np.concatenate([ds.train_labels, ds.test_labels])
  decoded = np.concatenate([ds.train_images, ds.test_images])
  for label, name in enumerate(FOLDER_FORMATS):
    files = sorted((root / "pictures" / name).iterdir())
    # The reader's order: the train split's files, then the test split's, each sorted.
    order = sorted(range(len(files)),
                   key=lambda i: image_files.in_test_split(f"{name}/{files[i].name}", 0.1))
    pillow = np.stack([np.asarray(Image.open(files[i]).convert("RGB")) for i in order])
    np.testing.assert_array_equal(decoded[labels == label], pillow)
    saved = np.load(root / f"{name}.npy")[order]
    assert np.array_equal(pillow, saved) == (FOLDER_FORMATS[name] != ".jpg")


@pytest.mark.slow
def test_a_bad_file_in_a_folder_is_one_line_from_the_cli_and_loses_nothing(tmp_path, cli,
                                                                           folder_runs):
  """A run that stops on its data leaves no workdir of its own behind, and one that
  held a trained run exactly as it was, lock file and all."""
  root, _, _ = folder_runs
  pictures = shutil.copytree(root / "pictures", tmp_path / "pictures")
  (pictures / "class1" / "007.jpg").write_bytes(b"\xff\xd8 broken")
  args = ("--config=experiments/configs/vanilla.py", f"--config.dataset=folder:{pictures}",
          "--config.batch_size=32")
  proc = cli.run(tmp_path / "new" / "run", *args, check=False)
  last = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert last.startswith("error: ") and "007.jpg cannot be read as an image" in last
  assert not (tmp_path / "new").exists()
  # The same command on a trained run's workdir, in-process (the code below the CLI).
  workdir = shutil.copytree(root / "stream", tmp_path / "trained")
  before = tree(workdir)
  config = vanilla.get_config()
  config.dataset, config.batch_size, config.num_epochs = f"folder:{pictures}", 32, 2
  with pytest.raises(data.DataError, match="007.jpg cannot be read"):
    trainer.train_and_evaluate(config, str(workdir))
  assert tree(workdir) == before and ".lock" in before and "config.json" in before


def tree(folder: pathlib.Path) -> dict[str, bytes]:
  """Every file under ``folder`` (its path there) and its bytes."""
  return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def npz_image_runs(tmp_path_factory, cli):
  """Grey uint8 images ``[N, 8, 8, 1]`` with labels in an npz file."""
  root = tmp_path_factory.mktemp("npz_images")
  np.savez(root / "mine.npz", train=images(64, (8, 8, 1)), test=images(16, (8, 8, 1)),
           train_labels=np.arange(64) % 4, test_labels=np.arange(16) % 4)
  return device_stream_resume(cli, root, (
      "--config=experiments/configs/vanilla.py", f"--config.dataset=npz:{root / 'mine.npz'}",
      "--config.batch_size=16"))


@pytest.mark.slow
def test_npz_images_train_alike_streamed_and_on_the_device_and_resume(npz_image_runs):
  root, logs, device = npz_image_runs
  check_alike_and_resumed(root, logs, device)
  record = device["dataset"]
  assert record["source"] == "npz" and record["image_shape"] == [8, 8, 1]
  assert record["labels"] == "from the file" and device["steps"] == 4
  assert record["fingerprint"] == readers.read_npz(root / "mine.npz").fingerprint
  assert 0 < device["test"]["psnr_db"] and (root / "device" / "reconstructions.png").is_file()


def vectors(n, d=12):
  """Float features with a scale and an offset far from [0, 1]."""
  return (RNG.standard_normal((n, d)) * 5 + 10).astype(np.float32)


@pytest.fixture(scope="module")
def vector_runs(tmp_path_factory, cli):
  """Unlabelled float vectors ``[N, 12]``, standardised, under the TopK config."""
  root = tmp_path_factory.mktemp("vectors")
  np.savez(root / "x.npz", train=vectors(96), test=vectors(16))
  return device_stream_resume(cli, root, (
      "--config=experiments/configs/topk.py", f"--config.dataset=npz:{root / 'x.npz'}",
      "--config.standardize=True", "--config.model.width=32", "--config.model.k=4",
      "--config.batch_size=16"))


@pytest.mark.slow
def test_vectors_train_alike_streamed_and_on_the_device_in_their_own_units(vector_runs):
  """Standardised float vectors (a TopK autoencoder, its linear head); their error in
  their own units is NumPy's on the restored model's reconstructions."""
  root, logs, device = vector_runs
  stream, _ = check_alike_and_resumed(root, logs, device)
  test = stream["test"]
  assert "psnr_db" not in test and "bce" not in test  # not [0, 1] data
  record = stream["dataset"]
  assert record["labels"] == "none (all 0)" and record["bounded"] is False
  mean, std = np.array(record["mean"]), np.array(record["std"])
  raw = np.load(root / "x.npz")
  np.testing.assert_allclose(mean, raw["train"].mean(0, dtype=np.float64), rtol=1e-6)
  run = analysis.load_run(root / "stream")  # 1 epoch, as stream["test"]
  x = readers.standardize(raw["train"], raw["test"])[1]
  reconstruction = run.reconstruct(x)
  assert (reconstruction < 0).any()  # the linear head, unclipped
  expected = np.mean(((reconstruction - x) * std) ** 2)
  assert test["mse_data_units"] == pytest.approx(expected, rel=1e-4)
  assert test["mse"] == pytest.approx(np.mean((reconstruction - x) ** 2), rel=1e-4)
  assert not (root / "stream" / "reconstructions.png").exists()  # no pictures of vectors


@pytest.fixture(scope="module")
def cifar_runs(tmp_path_factory, cli):
  """CIFAR-10 binary records (written here, byte by byte) under the colour conv
  config."""
  root = tmp_path_factory.mktemp("cifar")
  make_cifar10(root / "cifar", n_per_file=16, n_test=16)
  return device_stream_resume(cli, root, (
      "--config=experiments/configs/cifar_conv.py", "--config.dataset=cifar10",
      f"--config.data_dir={root / 'cifar'}", "--config.batch_size=16"))


@pytest.mark.slow
def test_cifar_records_train_alike_streamed_and_on_the_device_resume_and_draw_in_colour(
    cifar_runs):
  root, logs, device = cifar_runs
  check_alike_and_resumed(root, logs, device)
  record = device["dataset"]
  assert record["source"] == "cifar_binary" and device["steps"] == 5
  assert record["image_shape"] == [32, 32, 3] and record["n_train"] == 80
  assert 0 < device["test"]["mse"] < 0.2
  grid = np.asarray(Image.open(root / "stream" / "reconstructions.png").convert("RGB"), int)
  assert np.abs(grid[..., 0] - grid[..., 1]).max() > 50  # in colour


def cifar_tarball(path, root_folder, records):
  """A tarball laid out like the binary distribution: one folder of record files."""
  with tarfile.open(path, "w:gz") as archive:
    for name, raw in records.items():
      info = tarfile.TarInfo(f"{root_folder}/{name}")
      info.size = len(raw)
      archive.addfile(info, io.BytesIO(raw))


def test_cifar_without_data_dir_offline_is_one_line_at_once(monkeypatch):
  """Without a data_dir, nothing downloaded before and the host unreachable: one line
  that says where to put the files; the network is asked once, through the bounded
  reachability check, and nothing is fetched."""
  from aejax.data import downloads
  asked = []
  monkeypatch.setattr(downloads, "network_reachable", lambda url: asked.append(url))
  monkeypatch.setattr(downloads.tfds.download.DownloadManager, "download",
                      lambda *a: pytest.fail("downloaded while offline"))
  for name, folder in (("cifar10", "cifar-10-batches-bin"), ("cifar100", "cifar-100-binary")):
    config = base.get_config()
    config.dataset = name
    message = one_line_error(
        rf"{name} was not found: no --config.data_dir was given, .*aejax_cifar holds no "
        rf"download of it, and www\.cs\.toronto\.edu cannot be reached .* Download and "
        rf"unpack https://\S+{name.replace('cifar', 'cifar-')}-binary\.tar\.gz and pass "
        rf"--config\.data_dir=<the folder holding {folder}>\.$", data.load, config)
    assert asked[-1] == readers.CIFAR_URLS[name] and "Traceback" not in message
  assert downloads.REACHABILITY_TIMEOUT_S <= 2


def test_cifar_without_data_dir_downloads_through_tfds_then_reads_offline(tmp_path,
                                                                        monkeypatch):
  """Online, the tarball comes through TFDS's download manager (checked against the
  sha256 TFDS registers for its own cifar10 builder), is unpacked into TFDS's data dir
  and read as from a data_dir; the next load reads that copy with no network."""
  from aejax.data import downloads
  tarball = tmp_path / "cifar-10-binary.tar.gz"
  pictures, labels = images(12, (32, 32, 3)), RNG.integers(0, 10, 12)
  cifar_tarball(tarball, "cifar-10-batches-bin", {
      **{f"data_batch_{i}.bin": cifar_records(pictures[2 * i - 2:2 * i], labels[2 * i - 2:2 * i])
         for i in range(1, 6)},
      "test_batch.bin": cifar_records(pictures[10:], labels[10:])})
  fetched = []

  def download(manager, url):
    info = manager._url_infos[url]  # TFDS's registered size and sha256 for the URL
    fetched.append((url, info.size, info.checksum))
    return tarball

  monkeypatch.setattr(downloads, "network_reachable", lambda url: True)
  monkeypatch.setattr(downloads.tfds.download.DownloadManager, "download", download)
  config = base.get_config()
  config.dataset = "cifar10"
  ds = data.load(config)
  assert fetched == [(readers.CIFAR_URLS["cifar10"], 170052171,
                      "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd")]
  np.testing.assert_array_equal(ds.train_images, pictures[:10])
  np.testing.assert_array_equal(ds.test_labels, labels[10:])
  assert ds.source == "cifar_binary"
  assert pathlib.Path(ds.location) == downloads.cifar_download_dir() / "cifar-10-batches-bin"
  monkeypatch.setattr(downloads, "network_reachable",
                      lambda url: pytest.fail("asked the network for a downloaded copy"))
  again = data.load(config)
  assert again.fingerprint == ds.fingerprint
  assert not list(downloads.cifar_download_dir().glob(".*partial"))
