"""Image preprocessing: any photo, scan or rendering -> the model's input.

The model sees a float32 ink map, ink 1 on background 0, holding the expression cropped to
its ink. How it is sized is the package's `PreprocessConfig`:
- at the writer's scale (`symbol_height` > 0): brought to one scale, a typical symbol
  `symbol_height` pixels high (`inktex.scale`), aspect kept, at most `height` x `width`
  (larger inputs are shrunk to fit), padded with paper to a multiple of `STRIDE`;
- fitted (`symbol_height` 0, the packages before the writer's scale): fitted, aspect kept
  and centred, into a fixed `height` x `width` box.
The same functions prepare training images, serving requests and evaluation, so they look
alike. Inputs of different sizes travel together padded, with a mask (`pad_batch`).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from inktex.errors import BlankInputError, ImageError, ImageTooLargeError
from inktex.ink import Strokes
from inktex.render import render_at_scale
from inktex.scale import ink_size, normalise_strokes

MAX_PIXELS = 50_000_000  # phones make 12-50 MP; more is rejected with a clear message
# Larger photos are reduced to this longer side before any float copy: a 50 MP photo in
# float32 needs 200 MB per array, and the fitted expression is at most a few hundred pixels.
MAX_WORK_SIDE = 2048
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "MPO"}  # MPO: a phone's JPEG (docs/security.md)
# The encoder downsamples 16x: inputs at the writer's scale are padded to a multiple of it, so
# that an input alone and the same input padded in a batch see the same pixels in every layer.
STRIDE = 16
SIZE_SIDE = 512  # px: the longest side a photo's writing size is measured at


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings that travel with a model package; loading a package restores them."""

    height: int = 96  # the box; at the writer's scale, the largest height
    width: int = 256  # the box; at the writer's scale, the largest width
    margin: int = 4  # pixels of background kept around the ink
    ink_threshold: float = 0.15  # an ink-map value above this counts as ink when cropping
    symbol_height: float = 0.0  # px of a typical symbol; 0: fit into the box (older packages)
    line_width: int = 2  # px of the rendered pen strokes
    # An image is read this much larger than its estimated writing size: an image's strokes
    # are blurred where the renderer's are crisp, and read best larger. Fitted per model on
    # CROHME 2013 (`model_export.image_scale`); 1 for the packages before it.
    image_scale: float = 1.0

    @property
    def at_scale(self) -> bool:
        return self.symbol_height > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["image_scale"] == 1.0:  # left out, so that the packages before it keep their version
            del d["image_scale"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Grayscale uint8 array of an encoded image; the type is sniffed from the bytes."""
    if not data:
        raise ImageError("the file is empty: send a PNG, JPEG, WebP or BMP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            fmt = image.format
            if fmt not in ALLOWED_FORMATS:
                raise ImageError(f"unsupported image type {fmt}: send PNG, JPEG, WebP or BMP")
            w, h = image.size
            if w == 0 or h == 0:
                raise ImageError("the image has no pixels (0x0)")
            if w * h > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {w}x{h} = {w * h / 1e6:.0f} megapixels; "
                    f"the limit is {max_pixels / 1e6:.0f}: send a smaller photo or a crop"
                )
            # A phone's MPO photo carries a second (depth or preview) frame: the first is the photo.
            if fmt != "MPO" and getattr(image, "n_frames", 1) > 1:
                raise ImageError("animated images are not supported: send a single frame")
            if max(w, h) > MAX_WORK_SIDE:  # JPEG decodes at 1/2, 1/4 or 1/8 size directly
                scale = MAX_WORK_SIDE / max(w, h)
                image.draft("L", (math.ceil(w * scale), math.ceil(h * scale)))
            ImageOps.exif_transpose(image, in_place=True)
            image.load()
            transparent = image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info
            )
            image = image.convert("RGBA" if transparent else "L")
    except Image.UnidentifiedImageError as exc:
        raise ImageError(
            "not a readable image (an unknown type, or no pixels): send a PNG, JPEG, WebP or BMP"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"the image is too large to decode safely ({exc}); the limit is "
            f"{max_pixels / 1e6:.0f} megapixels: send a smaller photo or a crop"
        ) from exc
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"not a readable image ({exc}): send a PNG, JPEG, WebP or BMP") from exc
    factor = math.ceil(max(image.size) / MAX_WORK_SIDE)
    if factor > 1:  # box averaging: thin strokes fade rather than vanish
        image = image.reduce(factor)
    if transparent:
        # Transparent pixels are paper: canvas exports are often ink on transparency.
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image).convert("L")
    return np.asarray(image, dtype=np.uint8)


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Float ink map in [0, 1]: background 0 whatever the paper's tone, polarity or shading."""
    g = gray.astype(np.float32) / 255.0
    if np.median(g) < 0.5:  # light ink on dark paper (a blackboard, an inverted scan)
        g = 1.0 - g
    h, w = g.shape
    if min(h, w) >= 64:
        # Uneven lighting: estimate the paper with a wide max filter and divide it out.
        small = Image.fromarray((g * 255).astype(np.uint8))
        scale = 256 / max(h, w)
        if scale < 1:
            small = small.resize((max(1, round(w * scale)), max(1, round(h * scale))))
        paper = small.filter(ImageFilter.MaxFilter(9)).filter(ImageFilter.BoxBlur(6))
        paper_arr = (
            np.asarray(paper.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) / 255
        )
        g = np.clip(g / np.maximum(paper_arr, 1e-3), 0.0, 1.0)
    ink = 1.0 - g
    # Paper texture and JPEG noise sit well below real strokes: cut them off.
    noise = float(np.percentile(ink, 50)) + 0.08
    return np.clip((ink - noise) / max(1.0 - noise, 1e-3), 0.0, 1.0)


def crop_box(ink: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the ink, or BlankInputError when there is none."""
    rows = np.flatnonzero((ink > threshold).any(axis=1))
    cols = np.flatnonzero((ink > threshold).any(axis=0))
    if rows.size == 0:
        raise BlankInputError("no handwriting found: the image is blank")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def shrink_factor(height: float, width: float, cfg: PreprocessConfig) -> float:
    """How much an input of this ink size must shrink (<= 1) to fit the largest input with
    its margins; 1 for nearly every expression (docs/experiments.md, "One scale")."""
    room_h, room_w = cfg.height - 2 * cfg.margin, cfg.width - 2 * cfg.margin
    return min(1.0, room_h / max(height, 1e-9), room_w / max(width, 1e-9))


def pad_to_stride(ink: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Paper added right and below, up to a multiple of STRIDE, at most the largest input."""
    h, w = ink.shape
    h, w = min(h, cfg.height), min(w, cfg.width)
    out = np.zeros((-(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE), dtype=np.float32)
    out[:h, :w] = ink[:h, :w]
    return out


def scale_to_input(ink: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """An image's ink at the writer's scale: cropped, resized so that a typical symbol is
    `cfg.symbol_height` x `cfg.image_scale` pixels high (its size estimated from its blobs
    of ink), padded."""
    top, bottom, left, right = crop_box(ink, cfg.ink_threshold)
    crop = ink[top:bottom, left:right]
    h, w = crop.shape
    scale = cfg.symbol_height * cfg.image_scale / _writing_size(crop, cfg.ink_threshold)
    scale *= shrink_factor(h * scale, w * scale, cfg)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize(
        (new_w, new_h), Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    )
    m = cfg.margin
    out = np.zeros((new_h + 2 * m, new_w + 2 * m), dtype=np.float32)
    out[m : m + new_h, m : m + new_w] = np.asarray(resized, dtype=np.float32)
    return pad_to_stride(_normalise_contrast(out), cfg)


def strokes_to_input(
    strokes: Strokes, cfg: PreprocessConfig, normalised: bool = False, line_width: int = 0
) -> np.ndarray:
    """Pen strokes at the writer's scale, rendered by the one renderer and padded.

    `normalised`: the strokes are already at the scale (`inktex.scale.normalise_strokes`),
    as training keeps them; `line_width` overrides the package's (augmentation).
    """
    if not normalised:
        strokes = normalise_strokes(strokes, cfg.symbol_height)
    line_width = line_width or cfg.line_width
    points = np.concatenate(strokes)
    width, height = np.ptp(points, axis=0) + line_width
    factor = shrink_factor(height, width, cfg)
    if factor < 1:
        strokes = [s * factor for s in strokes]
    ink = render_at_scale(strokes, cfg.margin, line_width)
    return pad_to_stride(_normalise_contrast(ink), cfg)


def _writing_size(crop: np.ndarray, threshold: float) -> float:
    """`ink_size` of a cropped ink map, measured on a copy of at most SIZE_SIDE pixels a
    side: a large photo's blobs cost time with their number of runs, not their accuracy."""
    factor = max(1, math.ceil(max(crop.shape) / SIZE_SIDE))
    if factor > 1:
        crop = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").reduce(factor))
    return ink_size(crop, threshold) * factor


def pad_batch(inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of any sizes as one (N, H, W) batch, padded right and below with paper,
    and its (N, H, W) mask: 1 where an input's own pixels are, 0 on the padding."""
    height = max(x.shape[0] for x in inputs)
    width = max(x.shape[1] for x in inputs)
    batch = np.zeros((len(inputs), height, width), dtype=np.float32)
    mask = np.zeros((len(inputs), height, width), dtype=np.float32)
    for i, x in enumerate(inputs):
        batch[i, : x.shape[0], : x.shape[1]] = x
        mask[i, : x.shape[0], : x.shape[1]] = 1
    return batch, mask


def size_batches(
    shapes: list[tuple[int, int]], pixels: int, max_batch: int, order: list[int] | None = None
) -> list[list[int]]:
    """Indices in batches of similar size: each batch, padded to its largest input, within
    `pixels` (an input alone may exceed it) and at most `max_batch` inputs."""
    if order is None:
        order = list(range(len(shapes)))
    # By height band, then width: 86% of a CROHME batch's pixels are its inputs' own, where
    # sorting by width alone keeps 74% (the rest is padding).
    order = sorted(order, key=lambda i: (shapes[i][0] // (2 * STRIDE), shapes[i][1]))
    batches: list[list[int]] = []
    batch: list[int] = []
    height = width = 0
    for i in order:
        h, w = max(height, shapes[i][0]), max(width, shapes[i][1])
        if batch and ((len(batch) + 1) * h * w > pixels or len(batch) == max_batch):
            batches.append(batch)
            batch, (h, w) = [], shapes[i]
        batch.append(i)
        height, width = h, w
    if batch:
        batches.append(batch)
    return batches


def fit_to_box(ink: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Crop to the ink and fit it, aspect kept and centred, into the model's box."""
    top, bottom, left, right = crop_box(ink, cfg.ink_threshold)
    crop = ink[top:bottom, left:right]
    h, w = crop.shape
    inner_h, inner_w = cfg.height - 2 * cfg.margin, cfg.width - 2 * cfg.margin
    scale = min(inner_h / h, inner_w / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    # Box filtering keeps thin strokes when shrinking (they fade rather than vanish).
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize(
        (new_w, new_h), Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    )
    out = np.zeros((cfg.height, cfg.width), dtype=np.float32)
    y0, x0 = (cfg.height - new_h) // 2, (cfg.width - new_w) // 2
    out[y0 : y0 + new_h, x0 : x0 + new_w] = np.asarray(resized, dtype=np.float32)
    return _normalise_contrast(out)


def _normalise_contrast(ink: np.ndarray) -> np.ndarray:
    """Scale so that typical stroke pixels reach 1: faded thin strokes and bold ones look alike."""
    strokes = ink[ink > 0.05]
    if strokes.size == 0:
        raise BlankInputError("no handwriting found after scaling: the ink is too faint")
    peak = float(np.percentile(strokes, 90))
    return np.clip(ink / max(peak, 1e-3), 0.0, 1.0)


def preprocess_gray(gray: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Model input from a grayscale uint8 image (dark ink on light paper, or the reverse)."""
    ink = ink_map(gray)
    return scale_to_input(ink, cfg) if cfg.at_scale else fit_to_box(ink, cfg)


def preprocess_bytes(data: bytes, cfg: PreprocessConfig) -> np.ndarray:
    """Model input from an encoded image file."""
    return preprocess_gray(decode_image(data), cfg)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Compact storage of a model input (prepared datasets keep these)."""
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
