"""A synthetic compositional world: scenes of 1 to 3 shapes, a caption grammar, a renderer.

The world exists so that a tiny text-to-image model can be trained from scratch on a CPU
and its outputs checked against ground truth. Prompts range from simple ("a red circle")
to hard (three objects with attribute binding and spatial relations, or counting), in the
spirit of GenEval and T2I-CompBench, so that approximation hurts some prompts more than others.

Everything here is deterministic: the same ``Scene`` always renders the same pixels and the
same caption, and ``sample_scene(rng)`` depends only on the generator's state.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE_PX = 32
SUPERSAMPLE = 4

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "yellow": (240, 220, 30),
    "blue": (30, 60, 220),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 3.5, "large": 6.0}  # radius in output pixels
POSITIONS: dict[str, tuple[float, float]] = {
    "center": (16.0, 16.0),
    "left": (8.0, 16.0),
    "right": (24.0, 16.0),
    "top": (16.0, 8.0),
    "bottom": (16.0, 24.0),
}
POSITION_PHRASE = {
    "center": "in the center",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
# Slots used by multi-object scenes (the center would overlap its neighbours).
MULTI_SLOTS = ("left", "right", "top", "bottom")
COUNT_SLOTS = {2: ("left", "right"), 3: ("left", "right", "top")}

Difficulty = Literal["simple", "medium", "hard", "counting"]


@dataclasses.dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    position: str
    position_said: bool  # whether the caption names the position
    size_said: bool


@dataclasses.dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    background_said: bool
    counting: bool = False
    kind: Difficulty = "simple"

    def caption(self) -> str:
        """The scene's one canonical caption."""
        if self.counting:
            obj = self.objects[0]
            noun = obj.shape + ("es" if obj.shape.endswith("s") else "s")
            size = f"{obj.size} " if obj.size_said else ""
            text = f"{NUMBER_WORDS[len(self.objects)]} {size}{obj.color} {noun}"
        else:
            parts = []
            for obj in self.objects:
                size = f"{obj.size} " if obj.size_said else ""
                phrase = f"a {size}{obj.color} {obj.shape}"
                if obj.position_said:
                    phrase += f" {POSITION_PHRASE[obj.position]}"
                parts.append(phrase)
            text = " and ".join(parts)
        if self.background_said:
            text += f" on a {self.background} background"
        return text


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


def sample_scene(rng: random.Random, kind: Difficulty | None = None) -> Scene:
    """Draw one scene. ``kind`` fixes the difficulty class; None draws it too."""
    if kind is None:
        kind = _pick(rng, ("simple", "simple", "medium", "medium", "hard", "counting"))
    background = _pick(rng, tuple(BACKGROUNDS))
    n = {"simple": 1, "medium": 2, "hard": 3, "counting": rng.choice((2, 3))}[kind]
    used_colors = {background}
    objects: list[SceneObject] = []
    if kind == "counting":
        color = _pick(rng, [c for c in COLORS if c not in used_colors])
        shape, size = _pick(rng, SHAPES), _pick(rng, tuple(SIZES))
        size_said = rng.random() < 0.5
        objects = [SceneObject(shape, color, size, slot, False, size_said) for slot in COUNT_SLOTS[n]]
        return Scene(tuple(objects), background, True, counting=True, kind=kind)
    slots = ["center"] + list(MULTI_SLOTS) if n == 1 else list(MULTI_SLOTS)
    rng.shuffle(slots)
    for i in range(n):
        color = _pick(rng, [c for c in COLORS if c not in used_colors])
        used_colors.add(color)
        position_said = kind != "simple" or rng.random() < 0.5
        objects.append(
            SceneObject(
                shape=_pick(rng, SHAPES),
                color=color,
                size=_pick(rng, tuple(SIZES)),
                position=slots[i] if (position_said or n > 1) else "center",
                position_said=position_said,
                size_said=rng.random() < (0.5 if kind == "simple" else 0.7),
            )
        )
    background_said = kind == "hard" or rng.random() < 0.6
    return Scene(tuple(objects), background, background_said, kind=kind)


def render(scene: Scene, size_px: int = IMAGE_SIZE_PX) -> Image.Image:
    """Render a scene deterministically (supersampled, then box-filtered down)."""
    s = SUPERSAMPLE * size_px / IMAGE_SIZE_PX
    big = Image.new("RGB", (int(IMAGE_SIZE_PX * s), int(IMAGE_SIZE_PX * s)), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(big)
    for obj in scene.objects:
        cx, cy = POSITIONS[obj.position]
        _draw_object(draw, obj.shape, cx, cy, SIZES[obj.size], s, COLORS[obj.color])
    return big.resize((size_px, size_px), Image.Resampling.BOX)


# ---------------------------------------------------------------------------------------------
# Parsing a caption back into a scene specification (for the ground-truth check)

_OBJ_RE = re.compile(
    r"^a (?:(?P<size>small|large) )?(?P<color>\w+) (?P<shape>circle|square|triangle)"
    r"(?: (?P<pos>in the center|on the left|on the right|at the top|at the bottom))?$"
)
_COUNT_RE = re.compile(r"^(?P<num>two|three) (?:(?P<size>small|large) )?(?P<color>\w+) (?P<shape>circles|squares|triangles)$")
_PHRASE_POS = {v: k for k, v in POSITION_PHRASE.items()}
_WORD_NUM = {v: k for k, v in NUMBER_WORDS.items()}


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    shape: str
    color: str
    size: str | None
    position: str | None


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """What a caption promises; None means 'not said'."""

    objects: tuple[ObjectSpec, ...]
    background: str | None
    counting: bool


def parse_caption(caption: str) -> SceneSpec | None:
    """Parse a caption of this world's grammar; None for anything else (e.g. real prompts)."""
    text = caption.strip().lower()
    background = None
    m = re.search(r" on a (\w+) background$", text)
    if m:
        background = m.group(1)
        if background not in BACKGROUNDS:
            return None
        text = text[: m.start()]
    cm = _COUNT_RE.match(text)
    if cm:
        if cm["color"] not in COLORS:
            return None
        spec = ObjectSpec(cm["shape"].rstrip("s"), cm["color"], cm["size"], None)
        slots = COUNT_SLOTS[_WORD_NUM[cm["num"]]]
        return SceneSpec(tuple(dataclasses.replace(spec, position=p) for p in slots), background, True)
    objects = []
    for part in text.split(" and "):
        om = _OBJ_RE.match(part)
        if not om or om["color"] not in COLORS:
            return None
        objects.append(ObjectSpec(om["shape"], om["color"], om["size"], _PHRASE_POS.get(om["pos"]) if om["pos"] else None))
    return SceneSpec(tuple(objects), background, False) if objects else None


# ---------------------------------------------------------------------------------------------
# Ground truth: does an image contain what the caption promised?

# Object colours plus background-only colours (gray), so a gray background is never read as purple.
_COLOR_NAMES = list(COLORS) + [b for b in BACKGROUNDS if b not in COLORS]
_COLOR_TABLE = np.array([{**BACKGROUNDS, **COLORS}[n] for n in _COLOR_NAMES], dtype=np.float32)


def _nearest_color_map(img: np.ndarray) -> np.ndarray:
    """Label every pixel with the index of the nearest palette colour (H, W)."""
    d = ((img[:, :, None, :].astype(np.float32) - _COLOR_TABLE[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, s: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=fill)
    elif shape == "square":
        k = r * 0.85
        draw.rectangle([(cx - k) * s, (cy - k) * s, (cx + k) * s, (cy + k) * s], fill=fill)
    else:
        draw.polygon([(cx * s, (cy - r) * s), ((cx - r) * s, (cy + r * 0.8) * s), ((cx + r) * s, (cy + r * 0.8) * s)], fill=fill)


def _template_labels(shape: str, r: float, cx: float, cy: float, color, background, size_px: int) -> np.ndarray:
    """Palette labels of one object rendered exactly as ``render`` would (same antialiasing)."""
    s = SUPERSAMPLE * size_px / IMAGE_SIZE_PX
    big = Image.new("RGB", (int(IMAGE_SIZE_PX * s),) * 2, background)
    _draw_object(ImageDraw.Draw(big), shape, cx, cy, r, s, color)
    return _nearest_color_map(np.asarray(big.resize((size_px, size_px), Image.Resampling.BOX)))


def _component(mask: np.ndarray, y: int, x: int) -> np.ndarray:
    """The 4-connected component of ``mask`` that contains (y, x) (empty if that pixel is off)."""
    out = np.zeros_like(mask)
    stack = [(y, x)] if mask[y, x] else []
    while stack:
        cy, cx = stack.pop()
        if 0 <= cy < mask.shape[0] and 0 <= cx < mask.shape[1] and mask[cy, cx] and not out[cy, cx]:
            out[cy, cx] = True
            stack.extend(((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)))
    return out


def _core_filled(mask: np.ndarray, slot: str, scale: float) -> bool:
    """Whether the centre of a slot (3x3 output pixels) is mostly the colour of ``mask``."""
    cx, cy = POSITIONS[slot]
    core = mask[int((cy - 1.5) * scale) : int((cy + 1.5) * scale) + 1, int((cx - 1.5) * scale) : int((cx + 1.5) * scale) + 1]
    return bool(core.mean() > 0.5)


def _nearest_slot_cell(slot: str, slots: list[str], size_px: int, scale: float) -> np.ndarray:
    """Pixels nearer to ``slot``'s centre than to any other of ``slots`` (a Voronoi cell)."""
    ys, xs = np.mgrid[0:size_px, 0:size_px]
    px, py = (xs + 0.5) / scale, (ys + 0.5) / scale
    dist = {s: (px - POSITIONS[s][0]) ** 2 + (py - POSITIONS[s][1]) ** 2 for s in slots}
    return np.all([dist[slot] <= d for s, d in dist.items() if s != slot], axis=0) if len(slots) > 1 else np.ones_like(px, bool)


def _classify_shape(mask: np.ndarray, ci: int, background, cx: float, cy: float, size_px: int, centred: bool = False,
                    region: np.ndarray | None = None) -> str:
    """The shape whose rendered template (any size, at the blob's centroid, or at (cx, cy) itself when
    ``centred``) best overlaps the blob, compared inside ``region`` when given."""
    best, best_iou = "circle", -1.0
    for shape in SHAPES:
        for r in SIZES.values():
            # A triangle's centroid sits below its bounding-box centre.
            ty = cy - (r * 0.27 if shape == "triangle" and not centred else 0.0)
            t = _template_labels(shape, r, cx, ty, tuple(_COLOR_TABLE[ci].astype(int)), background, size_px) == ci
            if region is not None:
                t = t & region
            iou = (t & mask).sum() / max((t | mask).sum(), 1)
            if iou > best_iou:
                best, best_iou = shape, iou
    return best


def ground_truth_check(image: np.ndarray | Image.Image, caption: str) -> dict[str, float] | None:
    """Per-attribute accuracy of an image against its caption, or None for off-grammar captions.

    Checks, for every object, that its colour is present (in its named slot when the caption
    names one, anywhere otherwise: the object is there), its shape by template overlap of the
    colour blob, its position, the count for counting captions (blobs of the colour), and the
    background colour at the corners. Returns fractions in [0, 1] and ``all`` (1 if every check passed).
    """
    spec = parse_caption(caption)
    if spec is None:
        return None
    img = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    labels = _nearest_color_map(img)
    h = img.shape[0]
    scale = h / IMAGE_SIZE_PX
    background = tuple(int(v) for v in np.median(img[[0, 0, -1, -1], [0, -1, 0, -1]], axis=0))
    color_ok, shape_ok, pos_ok = [], [], []
    for obj in spec.objects:
        ci = _COLOR_NAMES.index(obj.color)
        mask = labels == ci
        if spec.counting:  # counted objects may touch: judge each in the part of the image nearest its slot
            cx, cy = POSITIONS[obj.position]
            cell = _nearest_slot_cell(obj.position, [o.position for o in spec.objects], h, scale)
            local = mask & cell
            present = local.sum() >= 4 * scale * scale
            color_ok.append(float(present))
            guess = _classify_shape(local, ci, background, cx, cy, h, centred=True, region=cell) if present else None
            shape_ok.append(float(guess == obj.shape))
            continue
        if obj.position is not None:
            cx, cy = POSITIONS[obj.position]
            x0, x1 = int((cx - 7) * scale), int((cx + 7) * scale)
            y0, y1 = int((cy - 7) * scale), int((cy + 7) * scale)
            local = np.zeros_like(mask)
            local[max(y0, 0) : y1, max(x0, 0) : x1] = mask[max(y0, 0) : y1, max(x0, 0) : x1]
            blob = _component(local, int(cy * scale), int(cx * scale))
            local = blob if blob.sum() >= 4 * scale * scale else local
            pos_ok.append(float(_core_filled(mask, obj.position, scale)))
        else:
            local = mask
        present = local.sum() >= 4 * scale * scale
        color_ok.append(float(present))
        if present:
            ys, xs = np.nonzero(local)
            guess = _classify_shape(local, ci, background, (float(xs.mean()) + 0.5) / scale, (float(ys.mean()) + 0.5) / scale, h)
            shape_ok.append(float(guess == obj.shape))
        else:
            shape_ok.append(0.0)
    out = {"color": float(np.mean(color_ok)), "shape": float(np.mean(shape_ok))}
    if pos_ok and not spec.counting:  # a counting caption names no positions: its slots are only where the renderer puts them
        out["position"] = float(np.mean(pos_ok))
    if spec.counting:  # the renderer places counted objects in fixed slots: count the slots the colour fills
        mask = labels == _COLOR_NAMES.index(spec.objects[0].color)
        filled = sum(_core_filled(mask, slot, scale) for slot in COUNT_SLOTS[max(COUNT_SLOTS)])
        out["count"] = float(filled == len(spec.objects))
    if spec.background is not None:
        corners = np.concatenate([img[:2, :2].reshape(-1, 3), img[:2, -2:].reshape(-1, 3), img[-2:, :2].reshape(-1, 3), img[-2:, -2:].reshape(-1, 3)])
        bg = np.array(BACKGROUNDS[spec.background], dtype=np.float32)
        out["background"] = float(np.abs(corners.astype(np.float32) - bg).mean() < 40)
    out["all"] = float(all(v == 1.0 for v in out.values()))
    return out


def all_captions_sample(n: int, seed: int = 0) -> list[str]:
    """n captions drawn from the world (for the tokenizer and quick evaluations)."""
    rng = random.Random(seed)
    return [sample_scene(rng).caption() for _ in range(n)]
