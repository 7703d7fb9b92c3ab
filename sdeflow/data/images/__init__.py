"""Image data: the embedded digits set, PNG folders and tensor files, conversions, sample grids.

Everything hands out floating tensors ``(N, C, H, W)`` scaled to ``[-1, 1]`` (Ho et al. 2020,
Sec. 4), the range the UNet plugin and the image demo expect.
"""

from .convert import check_images, from_uint8, levels_to_signed, signed_to_levels, to_uint8
from .digits import (
    DIGITS_LEVELS,
    DIGITS_SIZE,
    DIGITS_SPLITS,
    DequantizedImages,
    load_digits,
    load_digits_levels,
    load_digits_split,
    resize_images,
    split_holdout,
)
from .grid import make_grid, save_image_grid
from .io import (
    images_from_array,
    load_image,
    load_image_folder,
    load_image_tensor,
    load_labelled_image_folder,
    save_image_tensor,
    save_images,
    to_nchw,
)

__all__ = ["DIGITS_LEVELS", "DIGITS_SIZE", "DIGITS_SPLITS", "DequantizedImages", "check_images", "from_uint8",
           "images_from_array", "levels_to_signed", "load_digits", "load_digits_levels", "load_digits_split",
           "load_image", "load_image_folder", "load_image_tensor", "load_labelled_image_folder",
           "make_grid", "resize_images", "save_image_grid", "save_image_tensor", "save_images", "signed_to_levels",
           "split_holdout", "to_nchw", "to_uint8"]
