"""Patch-wise any-resolution encoding (LLaVA-NeXt "anyres", BLIP-3, Idefics2 image splitting): pure functions.

An image is resized to the grid of base-resolution crops that fits it best (:func:`select_grid`), padded
to the grid's exact size, and cut into ``rows x cols`` crops of ``base x base`` pixels; a downscaled
global view of the whole image comes first (as in LLaVA-NeXt and BLIP-3). The model encodes every crop
separately and concatenates the crops' tokens per image
(:meth:`vlkit.models.VisionLanguageModel.encode_images`).

Settings (the datasets' ``anyres`` argument): ``grids`` (the allowed ``(rows, cols)`` grid shapes) and
``global_view`` (add the downscaled whole image, default True).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

Grid = tuple[int, int]  # (rows, cols)
PAD_COLOUR = (0, 0, 0)  # black, as LLaVA-NeXT's resize_and_pad_image and transformers' LlavaNext pad


def select_grid(image_size_hw: tuple[int, int], grids: Sequence[Sequence[int]], base: int) -> Grid:
    """The grid whose resolution keeps most of the image's pixels, then wastes the fewest (LLaVA-NeXt's
    ``select_best_resolution``).

    Each grid ``(rows, cols)`` offers ``rows * base x cols * base`` pixels; the image is scaled to fit it
    with its aspect ratio kept. The effective resolution is the scaled image's pixel count, capped at the
    original's (upscaling adds nothing); the waste is the grid's pixels that the image does not fill.

    Args:
        image_size_hw: the image's (height, width) in pixels.
        grids: the allowed grid shapes, ``(rows, cols)`` each.
        base: the encoder's input resolution (a crop's side).
    """
    if not grids:
        raise ValueError(
            'anyres.grids is empty; expected a list of (rows, cols) grid shapes such as [[1, 2]]'
        )
    height, width = image_size_hw
    best, best_key = None, None
    for grid in grids:
        rows, cols = _as_grid(grid)
        scale = min(cols * base / width, rows * base / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        key = (effective, -(rows * cols * base * base - effective))
        if best_key is None or key > best_key:
            best, best_key = (rows, cols), key
    return best


def _as_grid(grid: Sequence[int]) -> Grid:
    if len(grid) != 2 or any(not isinstance(n, int) or n < 1 for n in grid):
        raise ValueError(f'an anyres grid must be (rows, cols) of positive ints, got {grid!r}')
    return int(grid[0]), int(grid[1])


def resize_and_pad(image: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    """Scales ``image`` to fit ``size_hw`` with its aspect ratio kept and centres it on a black canvas, as
    LLaVA-NeXT's ``resize_and_pad_image`` does: the fitting side takes the target's size, the other
    ``ceil(side * scale)`` at most the target's."""
    height, width = size_hw
    scale_w, scale_h = width / image.width, height / image.height
    if scale_w < scale_h:
        new_w, new_h = width, min(math.ceil(image.height * scale_w), height)
    else:
        new_w, new_h = min(math.ceil(image.width * scale_h), width), height
    canvas = Image.new('RGB', (width, height), PAD_COLOUR)
    canvas.paste(
        image.convert('RGB').resize((new_w, new_h), Image.BICUBIC),
        ((width - new_w) // 2, (height - new_h) // 2),
    )
    return canvas


def split_image(
    image: Image.Image, grid: Sequence[int], base: int, global_view: bool = True
) -> list[Image.Image]:
    """The crops of ``image`` on ``grid``: the global view (the whole image resized to ``base x base``)
    first if asked, then the ``rows x cols`` crops in row-major order, each ``base x base``."""
    rows, cols = _as_grid(grid)
    canvas = resize_and_pad(image, (rows * base, cols * base))
    crops = [
        canvas.crop((c * base, r * base, (c + 1) * base, (r + 1) * base))
        for r in range(rows)
        for c in range(cols)
    ]
    if global_view:
        crops.insert(0, image.convert('RGB').resize((base, base), Image.BICUBIC))
    return crops


def num_crops(grid: Sequence[int], global_view: bool = True) -> int:
    """How many crops :func:`split_image` makes on ``grid``."""
    rows, cols = _as_grid(grid)
    return rows * cols + int(global_view)


def check_anyres(anyres: dict) -> dict:
    """Validates an ``anyres`` setting; returns it with ``global_view`` filled in."""
    unknown = set(anyres) - {'grids', 'global_view'}
    if unknown or 'grids' not in anyres:
        raise ValueError(
            'anyres settings take grids=[(rows, cols), ...] and global_view=True|False; '
            f'got keys {sorted(anyres)}'
        )
    for grid in anyres['grids']:
        _as_grid(grid)
    return {
        'grids': [tuple(g) for g in anyres['grids']],
        'global_view': bool(anyres.get('global_view', True)),
    }
