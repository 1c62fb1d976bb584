"""Object shapes and textures of the synthetic images, on normalised object coordinates.

``u`` (right) and ``v`` (down) are in [-1, 1] over the object's box; ``x``, ``y`` are pixel offsets in the object's
frame. Masks are boolean arrays of the broadcast shape of the coordinates.
"""
from __future__ import annotations

import numpy as np


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` on normalised object coordinates u (right), v (down), both in [-1, 1]."""
    au, av = np.abs(u), np.abs(v)
    if shape == "ellipse":
        return u * u + v * v <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if shape == "triangle":  # apex up
        return (v <= 1.0) & (au <= (v + 1.0) * 0.5)
    if shape == "star":
        r = np.sqrt(u * u + v * v)
        t = np.arctan2(v, u) * (5.0 / (2.0 * np.pi)) + 0.25
        tri = np.abs(t - np.floor(t) - 0.5) * 2.0  # 1 at the 5 tips, 0 between them
        return r <= 0.42 + 0.58 * tri ** 2
    if shape == "halfdisc":  # hull: flat deck on top
        w = (v + 1.0) * 0.5
        return u * u + w * w <= 1.0
    if shape == "bottle":
        return ((au <= 1.0) & (v >= -0.35)) | ((au <= 0.4) & (v >= -1.0))
    if shape == "rectangle":
        return (au <= 1.0) & (av <= 1.0)
    if shape == "car":
        body = (au <= 1.0) & (v >= -0.35) & (v <= 0.55)
        cabin = (au <= 0.55) & (v >= -1.0)
        wheels = ((au - 0.6) ** 2 + (v - 0.62) ** 2) <= 0.38 ** 2
        return body | (cabin & (v <= -0.35)) | wheels
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "lshape":
        # thick arms (0.45 of the box each): with the thin ones of earlier versions (0.33) the chairs were slivers
        # a few pixels wide at the demo's size, their CAMs found nothing and the demo's DeepLab never learned them
        return ((u <= -0.1) & (av <= 1.0) & (u >= -1.0)) | ((v >= 0.1) & (v <= 1.0) & (au <= 1.0))
    if shape == "table":
        # a thick top and legs: with the thin ones of earlier versions (top 0.25, legs 0.16 of the box) the
        # class's CAMs found only specks, and the demo's DeepLab never learned it
        top = (v >= -1.0) & (v <= -0.35) & (au <= 1.0)
        legs = (v >= -0.35) & (v <= 1.0) & (au >= 0.5) & (au <= 0.95)
        return top | legs
    if shape == "hexagon":
        return (av <= 0.866) & (0.866 * au + 0.5 * av <= 0.866)
    if shape == "crescent":
        return (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.75 ** 2)
    if shape == "plus":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "person":
        head = u * u / 0.36 + (v + 0.72) ** 2 / 0.08 <= 1.0
        body = (v >= -0.42) & (v <= 1.0) & (au <= 0.55 + 0.45 * np.clip(v + 0.42, 0.0, 1.0))
        return head | body
    if shape == "flower":
        r = np.sqrt(u * u + v * v)
        return r <= 0.62 + 0.38 * np.cos(6.0 * np.arctan2(v, u))
    if shape == "octagon":
        return (au <= 1.0) & (av <= 1.0) & (au + av <= 1.45)
    if shape == "ushape":
        return (au <= 1.0) & (av <= 1.0) & ~((au < 0.6) & (v < 0.15))
    if shape == "arrow":
        shaft = (u >= -1.0) & (u <= 0.25) & (av <= 0.45)
        head = (u >= 0.25) & (av <= (1.0 - u) / 0.75)
        return shaft | head
    if shape == "frame":
        m = np.maximum(au, av)
        return (m <= 1.0) & (m >= 0.62)
    if shape in EXTRA_SHAPES:
        return _extra_shape_mask(shape, u, v)
    raise ValueError(f"unknown shape {shape!r}")


# Shapes no style of :data:`misc.synth.styles.DEMO_STYLES` uses: the object kinds of the stand-in pretraining set,
# as ImageNet's classes are not VOC's.
EXTRA_SHAPES: tuple[str, ...] = ("heart", "trapezoid", "pentagon", "keyhole", "tshape", "chevron", "hourglass",
                                 "pacman", "parallelogram", "teardrop", "cloud", "dumbbell", "lightning", "mushroom",
                                 "lens", "gear")

_LIGHTNING = np.asarray([(0.15, -1.0), (-0.75, 0.15), (-0.1, 0.15), (-0.35, 1.0), (0.75, -0.25), (0.1, -0.25),
                         (0.55, -1.0)], np.float32)


def _polygon_mask(u: np.ndarray, v: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of (u, v) against the closed polygon ``pts`` (N, 2) of (u, v) vertices."""
    inside = np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
    for (u0, v0), (u1, v1) in zip(pts, np.roll(pts, -1, axis=0)):
        if v0 == v1:
            continue
        crosses = (v0 > v) != (v1 > v)
        u_at = u0 + (v - v0) * (u1 - u0) / (v1 - v0)
        inside ^= crosses & (u < u_at)
    return inside


def _extra_shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of one of :data:`EXTRA_SHAPES` (same frame as :func:`shape_mask`)."""
    au, av = np.abs(u), np.abs(v)
    r2 = u * u + v * v
    if shape == "heart":  # (x² + y² - 1)³ ≤ x² y³, y up, scaled into [-1, 1]²
        x, y = u * 1.15, -v * 1.2 + 0.15
        q = x * x + y * y - 1.0
        return q * q * q <= x * x * y * y * y
    if shape == "trapezoid":  # narrow side up
        return (av <= 0.8) & (au <= 0.5 + 0.5 * (v + 0.8) / 1.6)
    if shape == "pentagon":  # apex up
        ok = np.ones(np.broadcast_shapes(u.shape, v.shape), bool)
        for k in range(5):
            a = np.pi / 2 + 2 * np.pi * k / 5  # outward edge normals: one points down (flat base)
            ok &= u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)) <= np.float32(np.cos(np.pi / 5))
        return ok
    if shape == "keyhole":
        return (u * u + (v + 0.42) ** 2 <= 0.55 ** 2) | ((v >= -0.2) & (v <= 1.0) & (au <= 0.22 + 0.3 * (v + 0.2)))
    if shape == "tshape":
        return ((v >= -1.0) & (v <= -0.45) & (au <= 1.0)) | ((au <= 0.28) & (av <= 1.0))
    if shape == "chevron":  # a thick V
        d = v + 0.95 * au
        return (d >= -0.75) & (d <= 0.1) & (au <= 1.0) & (av <= 1.0)
    if shape == "hourglass":
        return (av <= 1.0) & (au <= 0.12 + 0.88 * av)
    if shape == "pacman":  # a disc with a wedge cut out on the right
        return (r2 <= 1.0) & ~((u > 0) & (av < 0.75 * u))
    if shape == "parallelogram":
        return (av <= 0.75) & (np.abs(u + 0.5 * v) <= 0.62)
    if shape == "teardrop":  # round bottom, tip up
        return (u * u + (v - 0.35) ** 2 <= 0.65 ** 2) | ((v >= -1.0) & (v <= 0.35) & (au <= 0.6 * (v + 1.0) / 1.35))
    if shape == "cloud":
        puffs = (((u + 0.5) ** 2 + (v - 0.1) ** 2 <= 0.45 ** 2) | ((u - 0.5) ** 2 + (v - 0.1) ** 2 <= 0.45 ** 2)
                 | (u * u + (v + 0.2) ** 2 <= 0.6 ** 2))
        return puffs | ((au <= 0.75) & (v >= 0.0) & (v <= 0.55))
    if shape == "dumbbell":
        return ((au - 0.68) ** 2 + v * v <= 0.32 ** 2) | ((au <= 0.7) & (av <= 0.12))
    if shape == "lightning":
        return _polygon_mask(u, v, _LIGHTNING)
    if shape == "mushroom":
        cap = (u * u + ((v + 0.05) / 0.95) ** 2 <= 1.0) & (v <= -0.05)
        return cap | ((au <= 0.3) & (v >= -0.1) & (v <= 1.0))
    if shape == "lens":  # intersection of two discs: a vertical leaf
        return ((u - 0.75) ** 2 + v * v <= 1.25 ** 2) & ((u + 0.75) ** 2 + v * v <= 1.25 ** 2)
    if shape == "gear":  # 8 square teeth
        teeth = np.cos(8.0 * np.arctan2(v, u)) > 0
        return r2 <= np.where(teeth, 1.0, 0.72 ** 2)
    raise ValueError(f"unknown shape {shape!r}")


def texture_mask(kind: str, x: np.ndarray, y: np.ndarray, v: np.ndarray, period: float) -> np.ndarray | None:
    """Mixing weight (bool) of the second colour; x, y object-frame pixel offsets, v normalised height."""
    half = period / 2.0
    if kind == "solid":
        return None
    if kind == "hstripes":
        return (np.floor(y / half) % 2) == 1
    if kind == "vstripes":
        return (np.floor(x / half) % 2) == 1
    if kind == "dstripes":
        return (np.floor((x + y) / (half * 1.41)) % 2) == 1
    if kind == "checks":
        return ((np.floor(x / half) + np.floor(y / half)) % 2) == 1
    if kind == "dots":
        fx = x / period - np.floor(x / period) - 0.5
        fy = y / period - np.floor(y / period) - 0.5
        return fx * fx + fy * fy <= 0.3 ** 2
    if kind == "rings":
        return (np.floor(np.sqrt(x * x + y * y) / half) % 2) == 1
    if kind == "split":
        return np.broadcast_to(v >= -0.42, np.broadcast_shapes(x.shape, y.shape))
    if kind == "waves":  # wavy horizontal stripes
        return (np.floor((y + half * np.sin(x * (np.pi / period))) / half) % 2) == 1
    if kind == "grid":  # thin lines on the base colour
        return ((x / period - np.floor(x / period)) < 0.28) | ((y / period - np.floor(y / period)) < 0.28)
    if kind == "band":  # one horizontal band across the middle
        return np.broadcast_to(np.abs(v) <= 0.3, np.broadcast_shapes(x.shape, y.shape))
    raise ValueError(f"unknown texture {kind!r}")

