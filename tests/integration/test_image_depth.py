"""Image folders keep the precision of 16-bit grayscale PNG/TIFF and float TIFF (they were clipped to 8 bits)."""
import numpy as np
from PIL import Image

from quant.datasets import Preprocess, open_source


def test_16_bit_png_is_read_at_full_precision(tmp_path):
    folder = tmp_path / "images" / "a"
    folder.mkdir(parents=True)
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1021 + 3)  # 3 .. 64,326: most differ below 8 bits
    Image.fromarray(values).save(folder / "0.png")
    source = open_source(tmp_path / "images", Preprocess(color="L"))
    pixels = source.sample(0)["input"]
    assert pixels.shape == (1, 8, 8)
    np.testing.assert_allclose(pixels[0], values / 65535.0, rtol=1e-6)  # default scale: the full 16-bit range
    assert len(np.unique(pixels)) == 64  # 8 bits would have merged neighbours
    raw = open_source(tmp_path / "images", Preprocess(color="L", scale=1.0)).sample(0)["input"]
    np.testing.assert_array_equal(raw[0], values.astype(np.float32))  # an explicit scale multiplies stored values
    rgb = open_source(tmp_path / "images", Preprocess()).sample(0)["input"]
    assert rgb.shape == (3, 8, 8) and np.array_equal(rgb[0], rgb[2])


def test_float_tiff_values_as_stored(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    values = np.linspace(-3.5, 700.25, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(values).save(folder / "0.tif")
    pixels = open_source(folder, Preprocess(color="L", mean=(1.0,), std=(2.0,))).sample(0)["input"]
    np.testing.assert_allclose(pixels[0], (values - 1.0) / 2.0, rtol=1e-6)


def test_8_bit_images_unchanged(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    values = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(values).save(folder / "0.png")
    pixels = open_source(folder, Preprocess(color="L")).sample(0)["input"]
    np.testing.assert_allclose(pixels[0], values / 255.0, rtol=1e-6)
