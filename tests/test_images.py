"""Image data (sdeflow.data.images): the digits, conversions, PNG folders, tensor files, dequantized
batches, splits and sample grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdeflow.data.images import (
    DequantizedImages,
    from_uint8,
    levels_to_signed,
    load_digits,
    load_digits_levels,
    load_image_folder,
    load_image_tensor,
    make_grid,
    resize_images,
    save_image_grid,
    save_image_tensor,
    save_images,
    signed_to_levels,
    split_holdout,
    to_uint8,
)
from sdeflow.errors import OptionError, ShapeError


def random_uint8(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# --------------------------------------------------------------------------- digits
def test_digits_levels_and_scaling() -> None:
    levels, labels = load_digits_levels(return_labels=True)
    assert levels.shape == (1797, 1, 8, 8) and levels.dtype == torch.uint8
    assert set(torch.unique(levels).tolist()) == set(range(17))
    assert set(labels.tolist()) == set(range(10))
    x = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert torch.equal(x, levels.float() / 8.0 - 1.0)  # k -> 2k/16 - 1
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0


def test_digits_padded_and_resized_to_16() -> None:
    x8, x16 = load_digits(), load_digits(16)
    assert x16.shape == (1797, 1, 16, 16)
    assert torch.equal(x16[:, :, 4:12, 4:12], x8)
    border = x16.clone()
    border[:, :, 4:12, 4:12] = -1.0
    assert bool((border == -1.0).all())
    xr = load_digits(16, mode="resize")
    assert xr.shape == (1797, 1, 16, 16) and float(xr.min()) >= -1.0 and float(xr.max()) <= 1.0
    # bilinear 2x upsampling preserves the mean of each image up to the border effect
    assert float((xr.mean((2, 3)) - x8.mean((2, 3))).abs().max()) < 0.1
    assert load_digits(11).shape[-1] == 11  # asymmetric padding
    with pytest.raises(OptionError, match="mode='resize'"):
        resize_images(x8, 4)
    assert resize_images(x8[:3], 4, mode="resize").shape == (3, 1, 4, 4)
    with pytest.raises(OptionError, match="unknown resize mode"):
        load_digits(16, mode="crop")


def test_digits_returned_copies_are_independent() -> None:
    a = load_digits_levels()
    a.zero_()
    assert int(load_digits_levels().max()) == 16


def test_split_holdout() -> None:
    x = torch.arange(100)[:, None]
    tr, te = split_holdout(x, 0.2, seed=3)
    assert tr.shape[0] == 80 and te.shape[0] == 20
    assert sorted(torch.cat([tr, te]).flatten().tolist()) == list(range(100))
    tr2, te2 = split_holdout(x, 0.2, seed=3)
    assert torch.equal(te, te2) and torch.equal(tr, tr2)
    with pytest.raises(OptionError, match="test_fraction"):
        split_holdout(x, 1.0)


# --------------------------------------------------------------------------- conversions
def test_uint8_round_trip_is_exact() -> None:
    k = torch.arange(256, dtype=torch.uint8)
    x = from_uint8(k)
    assert float(x[0]) == -1.0 and float(x[-1]) == 1.0
    assert torch.equal(to_uint8(x), k)
    assert torch.equal(to_uint8(from_uint8(k, dtype=torch.float64)), k)
    assert torch.equal(to_uint8(torch.tensor([-3.0, 0.0, 7.0])), torch.tensor([0, 128, 255], dtype=torch.uint8))
    assert torch.equal(signed_to_levels(levels_to_signed(torch.arange(17), 16), 16), torch.arange(17))
    assert torch.equal(to_uint8(torch.tensor([0.0, 0.5, 1.0]), value_range=(0, 1)),
                       torch.tensor([0, 128, 255], dtype=torch.uint8))
    with pytest.raises(OptionError, match="uint8"):
        from_uint8(torch.zeros(3))
    with pytest.raises(OptionError, match="NaN"):
        to_uint8(torch.tensor([float("nan")]))
    with pytest.raises(OptionError, match="value_range"):
        to_uint8(torch.zeros(3), value_range=(1, 0))


def test_dequantized_images_stay_in_their_bins() -> None:
    levels = torch.tensor([0, 5, 16], dtype=torch.uint8).reshape(3, 1, 1, 1).expand(3, 1, 4, 4).contiguous()
    src = DequantizedImages(levels, bins=17)
    z = src.sample(3000, torch.Generator().manual_seed(0))
    assert z.shape == (3000, 1, 4, 4) and z.dtype == torch.float32
    k = torch.floor((z + 1.0) * 17 / 2)  # each image is constant, so its level is recoverable
    assert bool((k == k[:, :, :1, :1]).all()) and set(torch.unique(k).tolist()) == {0.0, 5.0, 16.0}
    u = (z + 1.0) * 17 / 2 - k
    # u ~ U[0, 1): mean 1/2, variance 1/12 over 48,000 values: std of the mean 0.0013; 0.01 is > 7 std
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    # images are drawn uniformly: each of the three ~1000 times (binomial std ~26)
    counts = torch.bincount(k[:, 0, 0, 0].long(), minlength=17)[[0, 5, 16]]
    assert bool(((counts - 1000).abs() < 150).all())
    with pytest.raises(OptionError, match=r"0\.\.15 \(bins=16\)"):
        DequantizedImages(levels + 1, bins=16)


# --------------------------------------------------------------------------- PNG folders
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_folder_round_trip(tmp_path: Path, channels: int) -> None:
    k = random_uint8((5, channels, 6, 6), seed=channels)
    paths = save_images(from_uint8(k), tmp_path / "imgs")
    assert [p.name for p in paths] == [f"image_{i:05d}.png" for i in range(5)]
    back = load_image_folder(tmp_path / "imgs", channels=None if channels != 4 else 4)
    assert back.shape == (5, channels, 6, 6)
    assert torch.equal(to_uint8(back), k)


def test_png_folder_modes_and_resizing(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray).save(folder / "a.png")
    Image.fromarray(np.stack([gray] * 3, -1)).save(folder / "b.png")  # RGB
    x = load_image_folder(folder)  # one color file: all read as RGB
    assert x.shape == (2, 3, 8, 8)
    assert torch.equal(to_uint8(x[0, 0]), torch.from_numpy(gray)) and torch.equal(x[0, 0], x[0, 2])
    assert load_image_folder(folder, channels=1).shape == (2, 1, 8, 8)
    assert load_image_folder(folder, size=4).shape == (2, 3, 4, 4)
    # 16-bit gray keeps its precision
    deep = tmp_path / "deep"
    deep.mkdir()
    vals = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4097)
    Image.fromarray(vals).save(deep / "d.png")
    y = load_image_folder(deep, dtype=torch.float64)
    assert torch.allclose(y[0, 0], torch.from_numpy(vals.astype(np.float64)) / 65535 * 2 - 1, atol=1e-12)


def test_png_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(OptionError, match="no files matching"):
        load_image_folder(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ShapeError, match=r"differ in size \(a.png is 8x8, b.png is 4x4\)"):
        load_image_folder(tmp_path)
    rect = tmp_path / "rect"
    rect.mkdir()
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(rect / "r.png")
    with pytest.raises(ShapeError, match="square"):
        load_image_folder(rect)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(OptionError, match="cannot read image"):
        load_image_folder(bad)
    with pytest.raises(OptionError, match="channels"):
        load_image_folder(tmp_path, channels=2)
    with pytest.raises(ShapeError, match="1, 3 or 4 channels"):
        save_images(torch.zeros(1, 2, 4, 4), tmp_path / "out")


# --------------------------------------------------------------------------- tensor files
@pytest.mark.parametrize("suffix", [".npz", ".npy", ".pt"])
def test_tensor_file_round_trip(tmp_path: Path, suffix: str) -> None:
    k = random_uint8((4, 3, 5, 5))
    path = save_image_tensor(from_uint8(k), tmp_path / f"x{suffix}")
    back = load_image_tensor(path)
    assert back.shape == (4, 3, 5, 5) and torch.equal(to_uint8(back), k)


def test_tensor_file_layouts_dtypes_and_keys(tmp_path: Path) -> None:
    k = random_uint8((4, 5, 5, 3))  # NHWC
    np.savez(tmp_path / "nhwc.npz", images=k.numpy())
    assert torch.equal(to_uint8(load_image_tensor(tmp_path / "nhwc.npz")), k.permute(0, 3, 1, 2))
    np.save(tmp_path / "gray.npy", k[..., 0].numpy())  # (N, H, W)
    assert load_image_tensor(tmp_path / "gray.npy").shape == (4, 1, 5, 5)
    unit = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.save({"a": unit, "b": unit}, tmp_path / "two.pt")
    assert torch.allclose(load_image_tensor(tmp_path / "two.pt", key="b", value_range=(0, 1)), unit * 2 - 1)
    with pytest.raises(OptionError, match="holds 2 arrays .*key="):
        load_image_tensor(tmp_path / "two.pt")
    with pytest.raises(OptionError, match="no array 'c'"):
        load_image_tensor(tmp_path / "two.pt", key="c")
    with pytest.raises(OptionError, match=r"outside value_range=\(-1, 1\)"):
        load_image_tensor(_save(tmp_path / "big.pt", unit * 255))
    with pytest.raises(OptionError, match="unsupported dtype torch.int64"):
        load_image_tensor(_save(tmp_path / "int.pt", torch.zeros(2, 1, 4, 4, dtype=torch.int64)))
    np.save(tmp_path / "int.npy", np.zeros((2, 4, 4), np.int32))
    with pytest.raises(OptionError, match="unsupported dtype int32"):
        load_image_tensor(tmp_path / "int.npy")
    with pytest.raises(OptionError, match="NaN"):
        load_image_tensor(_save(tmp_path / "nan.pt", torch.full((2, 1, 4, 4), float("nan"))))
    with pytest.raises(ShapeError, match="cannot tell channels"):
        load_image_tensor(_save(tmp_path / "amb.pt", torch.zeros(2, 3, 3, 3)))
    assert load_image_tensor(tmp_path / "amb.pt", layout="nhwc").shape == (2, 3, 3, 3)
    with pytest.raises(ShapeError, match="square"):
        load_image_tensor(_save(tmp_path / "rect.pt", torch.zeros(2, 1, 4, 6)))
    with pytest.raises(ShapeError, match=r"\(N, H, W\)"):
        load_image_tensor(_save(tmp_path / "flat.pt", torch.zeros(2, 16)))
    with pytest.raises(OptionError, match="expected a tensor"):
        load_image_tensor(_save(tmp_path / "list.pt", [1, 2, 3]))
    with pytest.raises(OptionError, match="uint8 data are 0..255"):
        load_image_tensor(tmp_path / "nhwc.npz", value_range=(0, 255))


def test_tensor_file_errors(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="unknown image tensor file type '.csv'"):
        load_image_tensor(tmp_path / "x.csv")
    with pytest.raises(OptionError, match="does not exist"):
        load_image_tensor(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(OptionError, match="cannot read"):
        load_image_tensor(tmp_path / "junk.pt")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(OptionError, match="cannot read"):
        load_image_tensor(tmp_path / "junk.npz")
    # torch.load(weights_only=True) refuses arbitrary pickled objects
    torch.save({"images": torch.zeros(1, 1, 2, 2), "obj": Path("x")}, tmp_path / "obj.pt")
    with pytest.raises(OptionError, match="cannot read"):
        load_image_tensor(tmp_path / "obj.pt", key="images")


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


# --------------------------------------------------------------------------- grids
def test_grid_layout_and_png(tmp_path: Path) -> None:
    k = random_uint8((7, 3, 4, 5))
    grid = make_grid(from_uint8(k), nrow=3, padding=2, pad_value=9)
    rows, cols = 3, 3
    assert grid.shape == (3, rows * (4 + 2) + 2, cols * (5 + 2) + 2)
    for i in range(7):
        r, c = divmod(i, cols)
        tile = grid[:, 2 + r * 6: 2 + r * 6 + 4, 2 + c * 7: 2 + c * 7 + 5]
        assert torch.equal(tile, k[i]), i
    assert bool((grid[:, :2] == 9).all()) and bool((grid[:, :, -2:] == 9).all())
    assert bool((grid[:, 14:, 16:] == 9).all())  # the two empty cells of the last row
    path = save_image_grid(from_uint8(k), tmp_path / "sub" / "grid.png", nrow=3, padding=2, pad_value=9)
    with Image.open(path) as img:
        assert img.mode == "RGB" and img.size == (grid.shape[2], grid.shape[1])
        assert torch.equal(torch.from_numpy(np.array(img)).permute(2, 0, 1), grid)


def test_grid_gray_upscaled(tmp_path: Path) -> None:
    x = load_digits()[:10]
    path = save_image_grid(x, tmp_path / "digits.png", nrow=4, upscale=3, padding=1)
    with Image.open(path) as img:
        arr = np.asarray(img)
    assert img.mode == "L" and arr.shape == (3 * 25 + 1, 4 * 25 + 1)
    tile = torch.from_numpy(arr[1:25, 1:25].copy())
    expected = to_uint8(x[0, 0]).repeat_interleave(3, 0).repeat_interleave(3, 1)
    assert torch.equal(tile, expected)
    assert make_grid(x[:2], nrow=8).shape == (1, 12, 22)  # nrow larger than the batch: one row of two


def test_grid_errors(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        make_grid(torch.zeros(4, 4))
    with pytest.raises(OptionError, match="nrow"):
        make_grid(torch.zeros(1, 1, 2, 2), nrow=0)
    with pytest.raises(OptionError, match="pad_value"):
        make_grid(torch.zeros(1, 1, 2, 2), pad_value=300)
    with pytest.raises(ShapeError, match="1, 3 or 4 channels"):
        save_image_grid(torch.zeros(1, 2, 2, 2), tmp_path / "g.png")
