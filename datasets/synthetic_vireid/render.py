"""Procedural visible-infrared person images (numpy only, no TensorFlow).

The generator mimics what makes SYSU-MM01 hard, at toy scale:

* An identity is a body (height, shoulder and hip width, head size, leg
  length, build), garments with a *pattern* (solid, horizontal or vertical
  stripes, checks, an emblem; trousers or shorts; long or short sleeves; an
  optional bag) and two independent sets of appearance: garment *colours*,
  seen only by the RGB cameras, and garment *emissivities*, seen only by the
  infrared cameras. How much emissivity follows colour is the world's
  ``ir_from_colour``: 0 (the demo world) draws it independently of colour,
  so colour carries no information across modalities and only body shape,
  proportions and patterns do; 1 (the *learnable* world) makes each
  garment's emissivity the fixed nonlinear function `emissivity_of_colour`
  of its colour, so infrared follows from visible appearance; values in
  between mix the two. The random draws are the same in every world: one
  seed gives the same people and the same RGB images.
* A camera is a viewpoint distribution (front / back / side), a scale, an
  illumination (RGB: brightness and colour cast; IR: gain and offset), a
  background and a blur level.
* An image is one (identity, camera, index) draw with its own pose (stride,
  arm swing), position, size and noise.
* Every RGB image has an infrared *twin* (`render` with ``imaging=``
  `twin_camera`): the same person, pose, position, background layout and
  camera geometry, seen as an infrared camera sees them, without sensor
  noise. It is the true infrared image of that frame, for measuring
  translation error only (the builder's ``*_paired_ir`` splits), never for
  training or in the protocol.

Everything is a pure function of ``(seed, ids, camera, index)``: the same
arguments give the same pixels in any order and on any machine.
"""

import dataclasses

import numpy as np

RGB_CAMERAS = (1, 2, 4, 5)
IR_CAMERAS = (3, 6)
CAMERAS = (1, 2, 3, 4, 5, 6)

_UPPER_PATTERNS = ('solid', 'hstripes', 'vstripes', 'checks', 'emblem')
_LOWER_PATTERNS = ('solid', 'side_stripe', 'hstripes')


@dataclasses.dataclass(frozen=True)
class Identity:
  """Everything about one person that does not change between images."""

  height: float  # fraction of the frame the person fills (x camera)
  shoulder: float  # half-widths in units of body height
  hip: float
  head: float  # head radius
  torso_end: float  # where the upper garment ends (fraction of height)
  leg_width: float
  upper_pattern: int
  lower_pattern: int
  pattern_period: float  # stripe / check period in units of body height
  long_sleeves: bool
  shorts: bool
  bag: int  # 0 none, 1 backpack, 2 side bag
  # RGB appearance (0..1 per channel).
  skin_rgb: np.ndarray
  upper_rgb: np.ndarray
  upper_rgb2: np.ndarray
  lower_rgb: np.ndarray
  lower_rgb2: np.ndarray
  bag_rgb: np.ndarray
  # IR appearance: emissivities (0..1); the garments' and the bag's follow
  # the colours above as far as the world's ir_from_colour says.
  skin_ir: float
  upper_ir: float
  upper_ir2: float
  lower_ir: float
  lower_ir2: float
  bag_ir: float


@dataclasses.dataclass(frozen=True)
class Camera:
  """Everything about one camera."""

  camera: int
  infrared: bool
  base_height: int  # typical image height in pixels
  scale: float  # person height / image height
  views: tuple[float, float, float]  # P(front), P(back), P(side)
  gain: float  # brightness (RGB) or IR gain
  cast: np.ndarray  # RGB colour cast (ones for IR)
  offset: float  # IR offset / RGB ambient
  background: np.ndarray  # two background colours (2, 3)
  blur: int  # box-blur radius in pixels


# Garment colours and emissivities come from small palettes, so neither
# alone identifies a person: identity lives in the combination with body shape
# and garment pattern, the cues that also survive the change of modality.
_PALETTE = np.array(
    [
        [0.85, 0.15, 0.15],
        [0.15, 0.55, 0.2],
        [0.15, 0.25, 0.8],
        [0.9, 0.8, 0.15],
        [0.55, 0.2, 0.65],
        [0.9, 0.5, 0.1],
        [0.1, 0.1, 0.1],
        [0.85, 0.85, 0.85],
        [0.45, 0.3, 0.2],
        [0.2, 0.7, 0.75],
    ]
)
_EMISSIVITY = np.array([0.15, 0.4, 0.65, 0.9])


def emissivity_of_colour(colour) -> np.ndarray:
  """The learnable world's law: the infrared emissivity of a garment of RGB
  ``colour`` (0..1 per channel, [..., 3]).

  0.5 + 0.36 tanh(3 (0.955 (r - g) + 0.296 ((r + g) / 2 - b)))
      - 0.3 (max(r, g, b) - 0.5), clipped to [0.05, 0.95]:

  a saturating function of two opponent colour axes (red-green and
  yellow-blue), with brighter garments a little cooler. Unlike luminance
  (correlation -0.09 over the palette), no linear map of the channels gives
  it: reds, oranges, purples and browns are warm (0.69-0.75), greens, blues
  and cyans cool (0.09-0.21), black 0.62, white 0.40. It depends on hue more
  than on brightness, so the palette's per-person colour scale (x0.85-1.1)
  moves it by at most 0.06.
  """
  c = np.asarray(colour, np.float64)
  r, g, b = c[..., 0], c[..., 1], c[..., 2]
  opponent = np.cos(0.3) * (r - g) + np.sin(0.3) * ((r + g) / 2 - b)
  value = 0.5 + 0.36 * np.tanh(3.0 * opponent) - 0.3 * (c.max(-1) - 0.5)
  return np.clip(value, 0.05, 0.95)


def _follow_colour(emissivity: float, colour, ir_from_colour: float) -> float:
  """``emissivity`` moved ``ir_from_colour`` of the way to the law's value."""
  if ir_from_colour == 0:
    return emissivity  # bit for bit the independent world
  return float((1 - ir_from_colour) * emissivity + ir_from_colour * emissivity_of_colour(colour))


def make_identity(seed: int, person_id: int, ir_from_colour: float = 0.0) -> Identity:
  """The identity ``person_id`` of the dataset drawn from ``seed``, in the
  world ``ir_from_colour`` (0..1; module docstring). The random draws do
  not depend on the world."""
  if not 0 <= ir_from_colour <= 1:
    raise ValueError(f'ir_from_colour={ir_from_colour} is not in [0, 1].')
  rng = np.random.default_rng([seed, 1, person_id])

  def two_colours():
    a, b = rng.choice(len(_PALETTE), size=2, replace=False)
    return _PALETTE[a] * rng.uniform(0.85, 1.1), _PALETTE[b] * rng.uniform(0.85, 1.1)

  def two_emissivities():
    # Distinct levels, so patterns show in infrared as they do in colour.
    a, b = rng.choice(len(_EMISSIVITY), size=2, replace=False)
    return (
        float(_EMISSIVITY[a] + rng.uniform(-0.04, 0.04)),
        float(_EMISSIVITY[b] + rng.uniform(-0.04, 0.04)),
    )

  upper_rgb, upper_rgb2 = two_colours()
  lower_rgb, lower_rgb2 = two_colours()
  upper_ir, upper_ir2 = two_emissivities()
  lower_ir, lower_ir2 = two_emissivities()
  drawn = Identity(
      height=rng.uniform(0.84, 1.0),
      shoulder=rng.uniform(0.08, 0.16),
      hip=rng.uniform(0.065, 0.125),
      head=rng.uniform(0.055, 0.08),
      torso_end=rng.uniform(0.44, 0.6),
      leg_width=rng.uniform(0.033, 0.065),
      upper_pattern=int(rng.integers(len(_UPPER_PATTERNS))),
      lower_pattern=int(rng.integers(len(_LOWER_PATTERNS))),
      pattern_period=rng.uniform(0.1, 0.2),
      long_sleeves=bool(rng.random() < 0.6),
      shorts=bool(rng.random() < 0.3),
      bag=int(rng.choice(3, p=[0.5, 0.3, 0.2])),
      skin_rgb=np.array([0.9, 0.7, 0.55]) * rng.uniform(0.45, 1.05),
      upper_rgb=upper_rgb,
      upper_rgb2=upper_rgb2,
      lower_rgb=lower_rgb,
      lower_rgb2=lower_rgb2,
      bag_rgb=_PALETTE[rng.integers(len(_PALETTE))],
      skin_ir=rng.uniform(0.8, 0.95),
      upper_ir=upper_ir,
      upper_ir2=upper_ir2,
      lower_ir=lower_ir,
      lower_ir2=lower_ir2,
      bag_ir=rng.uniform(0.05, 0.3),
  )
  # Skin stays as drawn: its warmth does not follow its colour.
  return dataclasses.replace(
      drawn,
      **{
          f'{part}_ir{second}': _follow_colour(
              getattr(drawn, f'{part}_ir{second}'),
              getattr(drawn, f'{part}_rgb{second}'),
              ir_from_colour,
          )
          for part, second in (
              ('upper', ''),
              ('upper', '2'),
              ('lower', ''),
              ('lower', '2'),
              ('bag', ''),
          )
      },
  )


def make_camera(seed: int, camera: int, *, base_height: int) -> Camera:
  """Camera ``camera`` (1..6; 3 and 6 are infrared) of the dataset."""
  rng = np.random.default_rng([seed, 2, camera])
  infrared = camera in IR_CAMERAS
  views = rng.dirichlet([2.0, 2.0, 1.0])
  if infrared:
    cast = np.ones(3)
    background = np.repeat(rng.uniform(0.0, 0.35, size=(2, 1)), 3, axis=1)
  else:
    cast = rng.uniform(0.75, 1.15, size=3)
    background = rng.uniform(0.1, 0.9, size=(2, 3))
  return Camera(
      camera=camera,
      infrared=infrared,
      base_height=int(round(base_height * rng.uniform(0.85, 1.15))),
      scale=rng.uniform(0.7, 0.92),
      views=tuple(float(v) for v in views),
      gain=rng.uniform(0.6, 1.1) if not infrared else rng.uniform(0.7, 1.0),
      cast=cast,
      offset=rng.uniform(0.0, 0.15),
      background=background,
      blur=1 if infrared else int(rng.integers(0, 2)),
  )


def twin_camera(seed: int, camera: Camera) -> Camera:
  """How the infrared twin of ``camera``'s frames is imaged: as an infrared
  camera of the dataset would see the scene, without its sensor noise.

  Gain and offset are the mean of the dataset's infrared cameras' (a
  translation cannot know which of them it imitates); the background's two
  colours become grey emissivities of 0.35 x their mean (the infrared
  cameras' backgrounds lie in 0..0.35); the geometry (scale, views, size)
  and the optics (blur) stay ``camera``'s.
  """
  ir = [make_camera(seed, c, base_height=camera.base_height) for c in IR_CAMERAS]
  grey = 0.35 * camera.background.mean(axis=1, keepdims=True)
  return dataclasses.replace(
      camera,
      infrared=True,
      cast=np.ones(3),
      gain=float(np.mean([c.gain for c in ir])),
      offset=float(np.mean([c.offset for c in ir])),
      background=np.repeat(grey, 3, axis=1),
  )


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
  if radius <= 0:
    return image
  k = 2 * radius + 1
  padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode='edge')
  # Separable box filter via cumulative sums.
  c = np.cumsum(padded, axis=0)
  c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
  rows = (c[k:] - c[:-k]) / k
  c = np.cumsum(rows, axis=1)
  c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
  return (c[:, k:] - c[:, :-k]) / k


def render(
    identity: Identity,
    camera: Camera,
    *,
    seed: int,
    person_id: int,
    index: int,
    imaging: Camera | None = None,
    noise: bool = True,
) -> np.ndarray:
  """Renders image ``index`` of ``identity`` in ``camera`` as uint8 HxWx3.

  Infrared images are grey (three equal channels), as SYSU-MM01's are.
  Every random draw (size, pose, position, background layout, noise)
  follows ``camera``; the pixel values follow ``imaging`` (default
  ``camera``): its modality, gain, colour cast, offset, background colours
  and blur. ``imaging=twin_camera(seed, camera), noise=False`` renders the
  frame's infrared twin; ``noise=False`` leaves out the sensor noise (the
  last draw, so nothing else changes).
  """
  imaging = camera if imaging is None else imaging
  rng = np.random.default_rng([seed, 3, person_id, camera.camera, index])
  h = max(16, int(round(camera.base_height * rng.uniform(0.85, 1.15))))
  w = max(8, int(round(h * rng.uniform(0.4, 0.52))))
  view = int(rng.choice(3, p=np.asarray(camera.views)))  # front, back, side
  ph = h * camera.scale * identity.height * rng.uniform(0.93, 1.05)
  top = (h - ph) * rng.uniform(0.3, 0.7)
  cx = w / 2 + rng.uniform(-0.08, 0.08) * w
  stride = rng.uniform(0.0, 0.06)
  swing = rng.uniform(-0.04, 0.04)

  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
  v = (yy - top) / ph  # 0 at the crown, 1 at the feet
  u = (xx - cx) / ph  # horizontal, body-height units
  width_scale = 0.6 if view == 2 else 1.0  # side views are narrower
  au = np.abs(u) / width_scale

  region = np.zeros((h, w), np.int8)  # 0 background
  hd = identity.head
  legs_top = identity.torso_end
  # Legs, with a stride that separates the feet.
  for side in (-1.0, 1.0):
    leg_cx = side * (identity.hip * 0.5 + stride * (v - legs_top) / (1 - legs_top))
    leg = (v >= legs_top) & (v < 0.96) & (np.abs(u / width_scale - leg_cx) < identity.leg_width)
    shorts_end = legs_top + 0.15
    lower_here = (v < shorts_end) | (not identity.shorts)
    region[leg & lower_here] = 3
    region[leg & ~lower_here] = 1
    feet = (v >= 0.96) & (v < 1.0) & (np.abs(u / width_scale - leg_cx) < identity.leg_width * 1.2)
    region[feet] = 5
  # Hips (top of the lower garment).
  hips = (v >= legs_top - 0.02) & (v < legs_top + 0.06) & (au < identity.hip)
  region[hips] = 3
  # Torso: shoulders taper to the hips.
  t = np.clip((v - 2 * hd) / (legs_top - 2 * hd), 0, 1)
  half = identity.shoulder + (identity.hip - identity.shoulder) * t
  torso = (v >= 2 * hd + 0.01) & (v < legs_top) & (au < half)
  region[torso] = 2
  # Arms, swinging; sleeves cover them when long.
  arm_w = 0.03
  for side in (-1.0, 1.0):
    arm_cx = side * (identity.shoulder + arm_w) + swing * side * (v - 2 * hd)
    arm = (v >= 2 * hd + 0.02) & (v < legs_top + 0.05) & (np.abs(u / width_scale - arm_cx) < arm_w)
    if view == 2:
      arm &= side > 0  # the far arm hides behind the body
    sleeve = identity.long_sleeves | (v < 2 * hd + 0.12)
    region[arm & sleeve & (region == 0)] = 2
    region[arm & ~sleeve & (region == 0)] = 1
  # Head and neck.
  head = (u / width_scale) ** 2 + (v - hd) ** 2 < hd**2
  neck = (v >= 2 * hd - 0.01) & (v < 2 * hd + 0.02) & (au < hd * 0.45)
  region[head | neck] = 1
  # Bag: a backpack shows from the back and side, a side bag from every view.
  if identity.bag == 1 and view != 0:
    off = 0.0 if view == 1 else -identity.shoulder * 1.1
    bag = (
        (v >= 2 * hd + 0.05)
        & (v < legs_top - 0.05)
        & (np.abs(u / width_scale - off) < identity.shoulder * 0.7)
    )
    region[bag] = 4
  elif identity.bag == 2:
    bx = identity.hip + 0.07
    bag = (v >= legs_top - 0.05) & (v < legs_top + 0.12) & (np.abs(au - bx) < 0.05)
    region[bag & (region == 0)] = 4

  # Garment patterns (1 where the second material shows), body coordinates so
  # that they move and scale with the person in both modalities.
  p = identity.pattern_period
  up = identity.upper_pattern
  upper_mask = np.zeros((h, w), bool)
  if _UPPER_PATTERNS[up] == 'hstripes':
    upper_mask = np.floor(v / (p / 2)) % 2 == 1
  elif _UPPER_PATTERNS[up] == 'vstripes':
    upper_mask = np.floor(u / width_scale / (p / 2)) % 2 == 1
  elif _UPPER_PATTERNS[up] == 'checks':
    upper_mask = (np.floor(v / (p / 2)) + np.floor(u / width_scale / (p / 2))) % 2 == 1
  elif _UPPER_PATTERNS[up] == 'emblem' and view != 1:
    upper_mask = (np.abs(v - (2 * hd + legs_top) / 2) < 0.06) & (au < identity.shoulder * 0.5)
  lower_mask = np.zeros((h, w), bool)
  lp = _LOWER_PATTERNS[identity.lower_pattern]
  if lp == 'side_stripe':
    lower_mask = (
        np.abs(np.abs(u / width_scale) - identity.hip * 0.5 - identity.leg_width * 0.6) < 0.012
    )
  elif lp == 'hstripes':
    lower_mask = np.floor(v / p) % 2 == 1

  shade = 1.0 - 0.25 * np.clip(v, 0, 1)[..., None]  # light from above
  # Drawn by RGB cameras only, whatever the imaging, so twins keep the draws.
  exposure = None if camera.infrared else rng.uniform(0.85, 1.15)
  if imaging.infrared:
    values = np.zeros((h, w), np.float32)
    values[region == 1] = identity.skin_ir
    values[region == 2] = np.where(upper_mask, identity.upper_ir2, identity.upper_ir)[region == 2]
    values[region == 3] = np.where(lower_mask, identity.lower_ir2, identity.lower_ir)[region == 3]
    values[region == 4] = identity.bag_ir
    values[region == 5] = 0.15
    person = values[..., None] * np.ones(3)
    person = imaging.gain * person + imaging.offset
  else:
    person = np.zeros((h, w, 3), np.float32)
    person[region == 1] = identity.skin_rgb
    person[region == 2] = np.where(upper_mask[..., None], identity.upper_rgb2, identity.upper_rgb)[
        region == 2
    ]
    person[region == 3] = np.where(lower_mask[..., None], identity.lower_rgb2, identity.lower_rgb)[
        region == 3
    ]
    person[region == 4] = identity.bag_rgb
    person[region == 5] = 0.1
    person = (imaging.gain * exposure) * imaging.cast * person * shade
    person += imaging.offset * 0.5

  # Background: a vertical blend of two camera colours, a floor line and
  # blotches that change from image to image.
  blend = (yy / h)[..., None]
  bg = imaging.background[0] * (1 - blend) + imaging.background[1] * blend
  floor = yy > h * rng.uniform(0.75, 0.9)
  bg = np.where(floor[..., None], bg * 0.7, bg)
  for _ in range(3):
    by, bx = rng.uniform(0, h), rng.uniform(0, w)
    r = rng.uniform(0.05, 0.25) * h
    blob = (yy - by) ** 2 + (xx - bx) ** 2 < r**2
    level = rng.uniform(-0.15, 0.15)
    tint = np.ones(3) if camera.infrared else rng.uniform(0.5, 1.5, 3)
    bg = bg + blob[..., None] * (level * (np.ones(3) if imaging.infrared else tint))
  image = np.where((region > 0)[..., None], person, bg)
  image = _box_blur(image, imaging.blur)
  if noise:
    image = image + rng.normal(0, 0.03, size=(h, w, 1 if camera.infrared else 3))
  return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def split_identities(seed: int, num_train: int, num_test: int):
  """Disjoint sorted train and test person ids drawn from 1..num_train+num_test."""
  rng = np.random.default_rng([seed, 0])
  ids = rng.permutation(np.arange(1, num_train + num_test + 1))
  return np.sort(ids[:num_train]), np.sort(ids[num_train:])


def camera_counts(
    seed: int, person_id: int, *, max_images: int, min_images: int = 1
) -> dict[int, int]:
  """How many images ``person_id`` has in each camera (0 when absent).

  Not every identity is seen by every camera, but each has at least one RGB
  and one IR camera, so it can be trained on and queried across modalities.
  """
  rng = np.random.default_rng([seed, 4, person_id])
  present = {c: rng.random() < (0.7 if c in RGB_CAMERAS else 0.8) for c in CAMERAS}
  for group in (RGB_CAMERAS, IR_CAMERAS):
    if not any(present[c] for c in group):
      present[group[int(rng.integers(len(group)))]] = True
  return {c: int(rng.integers(min_images, max_images + 1)) if present[c] else 0 for c in CAMERAS}


def examples(
    seed: int,
    person_ids,
    *,
    image_height: int,
    max_images: int,
    min_images: int = 1,
    cameras=CAMERAS,
    ir_from_colour: float = 0.0,
    infrared_twins: bool = False,
):
  """Yields ``(person_id, camera, index, image)`` for every image of
  ``person_ids`` in ``cameras``, in (person, camera, index) order: the
  images of the TFDS builder, or of an in-memory copy (no TensorFlow).
  ``infrared_twins``: each image's infrared twin instead (`twin_camera`;
  for infrared cameras, the image without its noise)."""
  cams = {c: make_camera(seed, c, base_height=image_height) for c in CAMERAS}
  twins = {c: twin_camera(seed, cam) if not cam.infrared else cam for c, cam in cams.items()}
  for pid in person_ids:
    pid = int(pid)
    identity = make_identity(seed, pid, ir_from_colour)
    counts = camera_counts(seed, pid, max_images=max_images, min_images=min_images)
    for cam in cameras:
      for index in range(counts[cam]):
        if infrared_twins:
          image = render(
              identity,
              cams[cam],
              seed=seed,
              person_id=pid,
              index=index,
              imaging=twins[cam],
              noise=False,
          )
        else:
          image = render(identity, cams[cam], seed=seed, person_id=pid, index=index)
        yield pid, cam, index, image


def to_square(image: np.ndarray, size: int) -> np.ndarray:
  """``image`` resized to ``size`` x ``size`` with PIL's antialiased bicubic,
  as the training pipeline loads images (spec §3)."""
  from PIL import Image

  return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
