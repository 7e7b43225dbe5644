"""Image files as they really are: 16-bit grey and colour PNG and TIFF kept at 16 bits,
EXIF orientation applied, alpha dropped, palette images converted, and a folder of
1,000 classes (ImageNet's layout) trained through the CLI and probed.

Every file is written here, tiny, by the library that owns its format (Pillow;
imagecodecs for 16-bit colour PNG, which Pillow writes only as 8 bits; tifffile), and
what the reader gives is compared with NumPy on the raw values.
"""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from aejax import analysis, data, images as images_lib, trainer
from aejax.data import image_files, readers
from experiments.configs import base

RNG = np.random.default_rng(0)


def noise16(shape):
  """Uniform 16-bit values: the top 8 bits alone would lose most of them."""
  return RNG.integers(0, 65536, shape, dtype=np.uint16)


def save16(path, array):
  """``array`` uint16 ``[H, W, C]`` as a 16-bit PNG or TIFF (by ``path``'s suffix)."""
  import imagecodecs
  import tifffile
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix == ".tif":
    tifffile.imwrite(path, array[..., 0] if array.shape[-1] == 1 else array)
  elif array.shape[-1] == 1:  # Pillow writes 16-bit grey PNG (mode I;16)
    Image.fromarray(array[..., 0]).save(path)
  else:
    path.write_bytes(imagecodecs.png_encode(array))


def load_folder(folder, **keys):
  """The folder as ``config.dataset='folder:<folder>'`` loads it, with config ``keys``."""
  config = base.get_config()
  config.dataset = f"folder:{folder}"
  for key, value in keys.items():
    config[key] = value
  return data.load(config)


def one_line_error(match, fn, *args, **kwargs):
  with pytest.raises(data.DataError, match=match) as info:
    fn(*args, **kwargs)
  assert "\n" not in str(info.value)


def folder_arrays(ds, files, test_fraction=0.1):
  """The raw arrays of ``files`` (path under the folder -> array) in the reader's
  order (the train split, then the test split), and the images read."""
  order = sorted(files, key=lambda name: image_files.in_test_split(name, test_fraction))
  return (np.stack([files[name] for name in order]),
          np.concatenate([ds.train_images, ds.test_images]))


# ------------------------------------------------------------------- 16 bits


@pytest.mark.parametrize("channels,suffix", [(1, ".png"), (3, ".png"), (1, ".tif"),
                                             (3, ".tif")])
def test_16_bit_files_keep_every_bit(tmp_path, channels, suffix):
  """uint16 as stored, and to_float gives raw / 65535 exactly: nothing clipped, no
  bit lost (an 8-bit reading would put ~all uniform noise at 255's level or clip it)."""
  files = {f"c/{i:02d}{suffix}": noise16((6, 5, channels)) for i in range(12)}
  for name, array in files.items():
    save16(tmp_path / name, array)
  ds = load_folder(tmp_path, test_fraction=0.5)
  raw, got = folder_arrays(ds, files, 0.5)
  assert got.dtype == np.uint16 and ds.record()["bit_depth"] == 16
  np.testing.assert_array_equal(got, raw)
  np.testing.assert_array_equal(images_lib.to_float(got),
                                raw.astype(np.float32) / np.float32(65535))
  assert np.mean(got == 65535) < 0.01 and np.mean(got > 255) > 0.9
  np.testing.assert_allclose(ds.pixel_mean, np.asarray(ds.train_images).mean(0) / 65535)


def test_16_bit_arrays_train_as_uint16(tmp_path):
  """npz files and arrays in memory may hold uint16 images too."""
  train, test = noise16((6, 4, 4, 1)), noise16((2, 4, 4, 1))
  np.savez(tmp_path / "deep.npz", train=train, test=test, train_labels=np.arange(6) * 100,
           test_labels=[0, 500])
  for ds in (readers.read_npz(tmp_path / "deep.npz"),
             data.from_arrays(train, test, train_labels=np.arange(6) * 100,
                              test_labels=[0, 500])):
    np.testing.assert_array_equal(ds.train_images, train)
    assert ds.test_labels.tolist() == [0, 500] and ds.test_labels.dtype == np.int32


def test_16_bit_colour_without_its_decoders_is_one_line(tmp_path, monkeypatch):
  save16(tmp_path / "c" / "0.png", noise16((4, 4, 3)))
  save16(tmp_path / "c" / "1.png", noise16((4, 4, 3)))
  monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import fails, as uninstalled
  one_line_error(r"0\.png is a 16-bit colour image, which Pillow reads as 8 bits; .* "
                 r"needs imagecodecs and tifffile: pip install 'aejax\[images16\]'\.$",
                 load_folder, tmp_path, test_fraction=0.5)


def test_16_bit_resize_and_channels_stay_in_16_bits(tmp_path):
  """Resized in floats, not clipped to 8 bits; grey is Pillow's luma, in 16 bits."""
  colour = noise16((12, 16, 3))
  save16(tmp_path / "a" / "0.png", colour)
  save16(tmp_path / "a" / "1.png", np.full((20, 20, 3), 40_000, np.uint16))
  save16(tmp_path / "a" / "2.tif", colour)
  resized, _, bits = image_files.read_image(tmp_path / "a" / "0.png", 6, 0)
  assert bits == 16 and resized.dtype == np.uint16 and resized.shape == (6, 6, 3)
  assert resized.max() > 255 and np.mean(resized == 65535) < 0.05
  flat, _, _ = image_files.read_image(tmp_path / "a" / "1.png", 6, 0)
  assert (flat == 40_000).all()
  for name in ("0.png", "2.tif"):
    grey, stored, _ = image_files.read_image(tmp_path / "a" / name, 0, 1)
    luma = np.rint(colour.astype(np.float64) @ [0.299, 0.587, 0.114])
    assert stored == 3 and grey.shape == (12, 16, 1)
    np.testing.assert_array_equal(grey[..., 0], luma)
  import tifffile
  tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(colour, -1, 0), photometric="rgb",
                   planarconfig="separate")  # samples first: Pillow's raw mode says 'R'
  planar, _, bits = image_files.read_image(tmp_path / "planar.tif", 0, 0)
  assert bits == 16
  np.testing.assert_array_equal(planar, colour)
  save16(tmp_path / "g.png", colour[..., :1])
  rgb, stored, _ = image_files.read_image(tmp_path / "g.png", 0, 3)
  assert stored == 1 and (rgb == colour[..., :1]).all() and rgb.shape == (12, 16, 3)


def test_bit_depth_decides_a_folder_of_8_and_16_bit_files(tmp_path):
  """0: the first file's depth (an 8-bit file in a 16-bit folder times 257, exactly; a
  16-bit file in an 8-bit folder one line); 8: round(v / 257); 16: v * 257."""
  deep, shallow = noise16((4, 4, 1)), RNG.integers(0, 256, (4, 4, 1), dtype=np.uint8)
  first16 = tmp_path / "first16"
  save16(first16 / "train" / "a.png", deep)
  Image.fromarray(shallow[..., 0]).save(first16 / "train" / "b.png")
  save16(first16 / "test" / "c.png", deep)
  ds = load_folder(first16)
  assert ds.train_images.dtype == np.uint16
  np.testing.assert_array_equal(ds.train_images[1], shallow.astype(np.uint16) * 257)
  np.testing.assert_array_equal(images_lib.to_float(ds.train_images[1]),
                                images_lib.to_float(shallow))  # v * 257 / 65535 = v / 255
  first8 = tmp_path / "first8"
  (first8 / "train").mkdir(parents=True)
  Image.fromarray(shallow[..., 0]).save(first8 / "train" / "a.png")
  save16(first8 / "train" / "b.png", deep)
  save16(first8 / "test" / "c.png", deep)
  one_line_error(r"b\.png is a 16-bit image but .*a\.png, the folder's first, is 8-bit: "
                 r"pass --config\.bit_depth=16 .* or --config\.bit_depth=8",
                 load_folder, first8)
  eight = load_folder(first16, bit_depth=8)
  assert eight.train_images.dtype == np.uint8 and eight.record()["bit_depth"] == 8
  np.testing.assert_array_equal(eight.train_images[0], np.rint(deep / 257))
  np.testing.assert_array_equal(eight.train_images[1], shallow)
  sixteen = load_folder(tmp_path / "first16", bit_depth=16)
  assert sixteen.fingerprint == ds.fingerprint
  bad = base.get_config()
  bad.bit_depth = 12
  with pytest.raises(ValueError, match=r"config\.bit_depth=12 is unknown; choose one of "
                                       r"\[0, 8, 16\]"):
    trainer.config_lib.validate(bad)


# ---------------------------------------------------- orientation, alpha, palette


def test_exif_orientation_is_applied(tmp_path):
  """A JPEG whose EXIF says 'rotate 90° clockwise to display' (orientation 6) is read
  upright: Pillow's decoding of the stored pixels, turned by NumPy."""
  stored = RNG.integers(0, 256, (8, 16, 3), dtype=np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
  Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)
  decoded = np.asarray(Image.open(tmp_path / "plain.jpg"))
  got, _, _ = image_files.read_image(tmp_path / "turned.jpg", 0, 0)
  assert got.shape == (16, 8, 3)
  np.testing.assert_array_equal(got, np.rot90(decoded, k=-1))
  exif[0x0112] = 3  # and a 16-bit file's, turned 180°
  deep = noise16((6, 5, 3))
  import tifffile
  tifffile.imwrite(tmp_path / "turned.tif", deep, extratags=[(0x0112, "H", 1, 3, True)])
  got, _, _ = image_files.read_image(tmp_path / "turned.tif", 0, 0)
  np.testing.assert_array_equal(got, deep[::-1, ::-1])


def test_alpha_is_dropped_and_palettes_are_their_colours(tmp_path):
  """RGBA and grey + alpha keep their colour channels as stored (torchvision's
  convert('RGB')); a palette image, with or without a transparent index, becomes the
  palette's colours."""
  rgba = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
  Image.fromarray(rgba).save(tmp_path / "rgba.png")
  Image.fromarray(rgba[..., :2], mode="LA").save(tmp_path / "la.png")
  got, stored, _ = image_files.read_image(tmp_path / "rgba.png", 0, 0)
  assert stored == 3
  np.testing.assert_array_equal(got, rgba[..., :3])
  got, stored, _ = image_files.read_image(tmp_path / "la.png", 0, 0)
  assert stored == 1
  np.testing.assert_array_equal(got, rgba[..., :1])
  deep = noise16((5, 7, 4))
  save16(tmp_path / "rgba16.png", deep)
  got, _, _ = image_files.read_image(tmp_path / "rgba16.png", 0, 0)
  np.testing.assert_array_equal(got, deep[..., :3])

  palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
  indices = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
  image = Image.fromarray(indices, mode="P")
  image.putpalette(palette.tobytes())
  image.save(tmp_path / "p.png")
  image.save(tmp_path / "p_transparent.png", transparency=int(indices[0, 0]))
  assert Image.open(tmp_path / "p_transparent.png").info.get("transparency") is not None
  for name in ("p.png", "p_transparent.png"):
    got, stored, _ = image_files.read_image(tmp_path / name, 0, 0)
    assert stored == 3
    np.testing.assert_array_equal(got, palette[indices])


# -------------------------------------------------------- through the CLI


def results(workdir):
  return json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_a_folder_of_1000_classes_trains_and_is_probed(tmp_path, cli):
  """ImageNet's layout, 2 images a class: int32 labels past 255, the fingerprint the
  CLI recorded is the reader's, and a probe fits the 1,000 classes."""
  folder = tmp_path / "pictures"
  pixels = RNG.integers(0, 256, (1000, 2, 8, 8, 3), dtype=np.uint8)
  for label in range(1000):
    (folder / f"n{label:08d}").mkdir(parents=True)
    for i in range(2):
      Image.fromarray(pixels[label, i]).save(folder / f"n{label:08d}" / f"{i}.png")
  cli.run(tmp_path / "run", "--config=experiments/configs/vanilla.py",
          f"--config.dataset=folder:{folder}", "--config.batch_size=128",
          "--config.num_epochs=1", "--config.input=device")
  record = results(tmp_path / "run")["dataset"]
  assert len(record["classes"]) == 1000 and record["classes"][999] == "n00000999"
  ds = load_folder(folder)
  assert record["fingerprint"] == ds.fingerprint and ds.train_labels.dtype == np.int32
  assert ds.train_labels.max() > 255 and sorted(set(ds.train_labels) | set(ds.test_labels)) \
      == list(range(1000))
  run = analysis.load_run(tmp_path / "run")
  accuracy = analysis.probe_accuracy(run.encode(ds.train_images), ds.train_labels,
                                     run.encode(ds.test_images), ds.test_labels, max_iter=20)
  assert set(accuracy) == {"logistic", "knn"}
  assert 0 <= accuracy["logistic"] <= 1 and 0 <= accuracy["knn"] <= 1


@pytest.mark.slow
def test_16_bit_png_and_tiff_train_alike_streamed_and_on_the_device(tmp_path, cli):
  """A folder of 16-bit colour PNG and TIFF: the run trains on raw / 65535 (the data
  ``aejax.data.load`` gives for its config), streamed and on the device alike."""
  folder = tmp_path / "pictures"
  files = {f"{kind}/{i:02d}.{kind}": noise16((8, 8, 3)) for kind in ("png", "tif")
           for i in range(24)}
  for name, array in files.items():
    save16(folder / name, array)
  for mode in ("device", "stream"):
    cli.run(tmp_path / mode, "--config=experiments/configs/vanilla.py",
            f"--config.dataset=folder:{folder}", "--config.batch_size=16",
            "--config.num_epochs=1", f"--config.input={mode}",
            env={"TFDS_DATA_DIR": str(tmp_path / "tfds")})
  device, stream = results(tmp_path / "device"), results(tmp_path / "stream")
  assert stream["test"] == device["test"] and stream["input"] == "stream"
  assert device["dataset"]["bit_depth"] == 16
  ds = load_folder(folder)
  assert ds.fingerprint == device["dataset"]["fingerprint"]
  raw, got = folder_arrays(ds, files)
  np.testing.assert_array_equal(images_lib.to_float(got), raw.astype(np.float32) / 65535)
  assert np.mean(got == 65535) < 0.01
  assert 0 < device["test"]["mse"] < 0.2 and (tmp_path / "stream" / "reconstructions.png").is_file()
