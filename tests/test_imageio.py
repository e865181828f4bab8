import numpy as np
import pytest
from PIL import Image

from pipeline.imageio import ImageReadError, colorize, read_image, read_label_map, voc_palette, write_label_png


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)
    out[0, 0] = 0  # the array is writable (torch.from_numpy needs that)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    g = np.arange(600, dtype=np.uint8).reshape(20, 30)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out[..., 0], g)
    np.testing.assert_array_equal(out[..., 2], g)


def test_rgba_drops_alpha_and_keeps_colours(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 10, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (12, 16, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60 and out[..., 2].mean() < 60


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    g16 = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8
    assert list(out[0, :, 0]) == [0, 128, 255]


def test_palette_image_gives_colours(tmp_path):
    labels = np.array([[0, 1], [2, 15]], np.uint8)
    write_label_png(tmp_path / "p.png", labels)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), voc_palette()[labels])


def test_truncated_and_corrupt_files_raise_with_file_name(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    for name in ("cut.jpg", "junk.jpg", "missing.png"):
        with pytest.raises(ImageReadError, match=name):
            read_image(tmp_path / name)


def test_label_map_reads_palette_indices(tmp_path):
    labels = np.array([[0, 1, 255], [20, 3, 0]], np.uint8)
    write_label_png(tmp_path / "m.png", labels)
    assert Image.open(tmp_path / "m.png").mode == "P"
    np.testing.assert_array_equal(read_label_map(tmp_path / "m.png"), labels)


def test_label_map_rejects_colour_images(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError, match="rgb.png: a label map must be"):
        read_label_map(tmp_path / "rgb.png")


def test_voc_palette_known_colours():
    pal = voc_palette()
    assert tuple(pal[0]) == (0, 0, 0)
    assert tuple(pal[1]) == (128, 0, 0)
    assert tuple(pal[15]) == (192, 128, 128)  # person
    assert tuple(pal[255]) == (224, 224, 192)  # void
    assert colorize(np.array([[1]], np.uint8)).shape == (1, 1, 3)
