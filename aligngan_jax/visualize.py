"""Pictures of what the model does (numpy + Pillow; no TensorFlow).

* ``translation_grid``: one row per person, real RGB | generated IR | (the
  true IR twin of the RGB frame, where the dataset has one) | real IR of the
  same identity in another view | RGB reconstructed from the generated IR:
  the pixel alignment at a glance.
* ``retrieval_sheet``: one row per query, the query and its top-k gallery
  images in rank order, each bordered green (same identity) or red (not;
  grey when identities are unknown), with rank, distance and camera written
  under it; the first true match is appended after a gap when it ranks
  below the top k.
* ``cmc_plot``: CMC curves of several settings, drawn with Pillow.

``save_png`` writes any of them.
"""

import dataclasses
import io
import os

import numpy as np

TRANSLATION_COLUMNS = ('real RGB', 'fake IR', 'real IR', 'reconstructed RGB')
# With the infrared twin of the RGB frame; 'real IR' is another view's.
TRANSLATION_COLUMNS_WITH_TRUTH = ('real RGB', 'fake IR', 'true IR', 'real IR', 'reconstructed RGB')


def to_uint8(images) -> np.ndarray:
  """[..., H, W, 3] in [-1, 1] (the networks' range) -> uint8 [0, 255]."""
  images = np.asarray(images, np.float32)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(rows: list[list[np.ndarray]], *, gap: int = 2, background: int = 255) -> np.ndarray:
  """Tiles equally sized uint8 [H, W, 3] images, ``gap`` pixels apart."""
  if not rows or not rows[0]:
    raise ValueError('grid: no images to lay out.')
  h, w, c = rows[0][0].shape
  n_cols = max(len(r) for r in rows)
  out = np.full((len(rows) * (h + gap) - gap, n_cols * (w + gap) - gap, c), background, np.uint8)
  for i, row in enumerate(rows):
    for j, image in enumerate(row):
      if image.shape != (h, w, c):
        raise ValueError(f'grid: image ({i}, {j}) is {image.shape}, expected {(h, w, c)}.')
      out[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = image
  return out


def translation_grid(real_rgb, fake_ir, real_ir, reconstructed_rgb, true_ir=None) -> np.ndarray:
  """One row per person: the [N, H, W, 3] arrays in [-1, 1], side by side in
  ``TRANSLATION_COLUMNS`` order, or with ``true_ir`` (the RGB images'
  infrared twins, where the dataset has them) in
  ``TRANSLATION_COLUMNS_WITH_TRUTH`` order. Returns uint8 [H', W', 3]."""
  images = (
      (real_rgb, fake_ir, real_ir, reconstructed_rgb)
      if true_ir is None
      else (real_rgb, fake_ir, true_ir, real_ir, reconstructed_rgb)
  )
  columns = [to_uint8(x) for x in images]
  n = len(columns[0])
  if any(len(c) != n for c in columns):
    raise ValueError(f'translation_grid: column lengths {[len(c) for c in columns]} differ.')
  return grid([[c[i] for c in columns] for i in range(n)])


GREEN, RED, GREY, BLUE = (0, 160, 0), (210, 0, 0), (150, 150, 150), (30, 90, 220)
TILE = (128, 64)  # (height, width) of a person on a retrieval sheet
BORDER, GAP, CAPTION = 4, 6, 26  # pixels


def tile_from_encoded(data: bytes, size=TILE) -> np.ndarray:
  """An encoded image (JPEG/PNG/BMP bytes) as a uint8 [h, w, 3] tile."""
  from PIL import Image

  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert('RGB').resize((size[1], size[0]), Image.BICUBIC))


@dataclasses.dataclass(frozen=True)
class Hit:
  """One gallery image on a retrieval sheet."""

  image: np.ndarray  # uint8 [h, w, 3]
  rank: int  # 1-based, in the kept ranking
  distance: float
  camera: int | None  # None: unknown (then `name` is shown)
  correct: bool | None = None  # same identity as the query (None: unknown)
  name: str = ''


@dataclasses.dataclass(frozen=True)
class RetrievalRow:
  query: np.ndarray  # uint8 [h, w, 3]
  caption: tuple[str, str]  # two short lines under the query
  hits: tuple[Hit, ...]  # the top k, in rank order
  first_match: Hit | None = None  # shown after a gap when below the top k


def _where(hit: Hit) -> str:
  return f'cam {hit.camera}' if hit.camera is not None else hit.name[:12]


def _border_colour(correct) -> tuple:
  return GREY if correct is None else (GREEN if correct else RED)


def retrieval_sheet(rows: list[RetrievalRow]):
  """Draws the rows; returns (uint8 [H, W, 3] image, boxes) where
  boxes[(row, column)] is the (x0, y0, x1, y1) of that tile's bordered frame
  (column 0 the query, 1..k the hits, k + 1 the appended first match)."""
  from PIL import Image
  from PIL import ImageDraw
  from PIL import ImageFont

  if not rows:
    raise ValueError('retrieval_sheet: no rows to draw.')
  h, w = rows[0].query.shape[:2]
  frame_w, frame_h = w + 2 * BORDER, h + 2 * BORDER
  columns = max(1 + len(r.hits) + (r.first_match is not None) for r in rows)
  # Gap after the query and before an appended first match: twice GAP.
  width = GAP + columns * (frame_w + GAP) + 2 * GAP
  row_h = frame_h + CAPTION + GAP
  canvas = Image.new('RGB', (width, GAP + len(rows) * row_h), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default()
  boxes = {}

  def put(r, c, x, image, colour, lines):
    y = GAP + r * row_h
    draw.rectangle((x, y, x + frame_w - 1, y + frame_h - 1), fill=colour)
    canvas.paste(Image.fromarray(np.asarray(image, np.uint8)), (x + BORDER, y + BORDER))
    for i, line in enumerate(lines):
      draw.text((x, y + frame_h + 1 + 12 * i), line, fill=(0, 0, 0), font=font)
    boxes[(r, c)] = (x, y, x + frame_w - 1, y + frame_h - 1)

  for r, row in enumerate(rows):
    put(r, 0, GAP, row.query, BLUE, row.caption)
    x = GAP + frame_w + 2 * GAP
    for c, hit in enumerate(row.hits, start=1):
      put(
          r,
          c,
          x,
          hit.image,
          _border_colour(hit.correct),
          (f'#{hit.rank} d={hit.distance:.3f}', _where(hit)),
      )
      x += frame_w + GAP
    if row.first_match is not None:
      hit = row.first_match
      put(
          r,
          len(row.hits) + 1,
          x + GAP,
          hit.image,
          _border_colour(hit.correct),
          (f'1st match #{hit.rank}', f'd={hit.distance:.3f} {_where(hit)}'),
      )
  return np.asarray(canvas), boxes


# Curve colours of `cmc_plot`, in setting order.
CURVE_COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
)


def cmc_plot(curves: dict[str, np.ndarray], *, title: str = 'CMC', size=(360, 560)):
  """CMC curves (name -> [max_rank] fractions in [0, 1]) on one plot.
  Returns (uint8 image, to_pixel): to_pixel(rank, value) gives the (x, y) of
  a curve point, rank 1-based."""
  from PIL import Image
  from PIL import ImageDraw
  from PIL import ImageFont

  if not curves:
    raise ValueError('cmc_plot: no curves.')
  height, width = size
  left, right, top, bottom = 44, 16, 28, 40 + 14 * len(curves)
  max_rank = max(len(c) for c in curves.values())
  canvas = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default()
  plot_w, plot_h = width - left - right, height - top - bottom

  def to_pixel(rank, value):
    x = left + (rank - 1) / max(1, max_rank - 1) * plot_w
    return int(round(x)), int(round(top + (1.0 - value) * plot_h))

  for k in range(6):  # 0, 20, ..., 100 %
    y = to_pixel(1, k / 5)[1]
    draw.line((left, y, left + plot_w, y), fill=(225, 225, 225))
    draw.text((4, y - 5), f'{20 * k:3d}%', fill=(0, 0, 0), font=font)
  for rank in sorted({1, 5, 10, 20, max_rank}):
    if rank <= max_rank:
      x = to_pixel(rank, 0)[0]
      draw.text((x - 4, top + plot_h + 4), str(rank), fill=(0, 0, 0), font=font)
  draw.rectangle((left, top, left + plot_w, top + plot_h), outline=(0, 0, 0))
  draw.text((left, 8), title, fill=(0, 0, 0), font=font)
  draw.text((left + plot_w // 2 - 10, top + plot_h + 16), 'rank', fill=(0, 0, 0), font=font)
  for i, (name, curve) in enumerate(curves.items()):
    colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
    points = [to_pixel(r + 1, float(v)) for r, v in enumerate(curve)]
    if len(points) > 1:
      draw.line(points, fill=colour, width=2)
    for x, y in points:
      draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    y = top + plot_h + 32 + 14 * i
    draw.line((left, y + 5, left + 18, y + 5), fill=colour, width=3)
    draw.text(
        (left + 24, y), f'{name}  (Rank-1 {100 * float(curve[0]):.1f}%)', fill=(0, 0, 0), font=font
    )
  return np.asarray(canvas), to_pixel


def save_png(path: str, image: np.ndarray) -> str:
  """Writes a uint8 [H, W, 3] image as PNG (parent folders created)."""
  from PIL import Image

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(np.asarray(image, np.uint8)).save(path, format='PNG')
  return path
