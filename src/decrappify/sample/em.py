"""Synthetic serial-section TEM of neural tissue (ssTEM-like, 4 nm pixels, uint8).

Light, grainy cytoplasm cut into neurite profiles by dark membranes (an additively
weighted Voronoi diagram, warped by smooth noise so that membranes are curvy and
profiles vary in size), mitochondria with a dark double membrane and cristae, clusters
of synaptic vesicles, dark granules, staining variations and fine grain, blurred by a
slight probe/optics blur.

Objects belong to the cells of a fixed global grid and are seeded by cell index; every
pixel is a function of its global position, so any region renders alone. Along Z the
profiles drift and swell slowly and the organelles have a finite thickness, so
consecutive planes look like consecutive sections.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from decrappify.sample._grid import cell_range, cell_rng, lattice_normal, splat, value_noise

__all__ = ["EM_PIXEL_SIZE", "EM_SECTION", "render_em"]

#: Lateral pixel size in nanometres.
EM_PIXEL_SIZE = 4.0
#: Section thickness (Z step) in nanometres.
EM_SECTION = 50.0

_GRID = 48  # spacing of the neurite seeds (pixels)
_COARSE = 4  # the Voronoi diagram is evaluated every _COARSE pixels and interpolated
_OBJECT_REACH = 110  # farthest an organelle extends from its seed (pixels)
_MARGIN = 12  # halo for the final blurs (pixels)
_TAGS = {
    "seed": 101,
    "warp_y": 102,
    "warp_x": 103,
    "grain": 104,
    "granule": 105,
    "stain": 106,
    "texture": 107,
    "vesicle": 109,
    "membrane": 110,
}


def _seeds(seed: int, rows: range, cols: range, z: float) -> dict[str, np.ndarray]:
    """Neurite seeds of a block of grid cells at plane ``z``: position, weight and tone."""
    shape = (len(rows), len(cols))
    out: dict[str, np.ndarray] = {k: np.zeros(shape) for k in ("y", "x", "w", "tone")}
    out["rng"] = np.empty(shape, dtype=object)
    for i, cy in enumerate(rows):
        for j, cx in enumerate(cols):
            rng = cell_rng(seed, _TAGS["seed"], cy, cx)
            jy, jx, size, tone, dark = rng.random(5)
            amp_y, amp_x, amp_w = rng.uniform(1.0, 6.0, 3)
            ph_y, ph_x, ph_w = rng.uniform(0, 2 * math.pi, 3)
            freq = rng.uniform(0.02, 0.08)
            out["y"][i, j] = (cy + 0.1 + 0.8 * jy) * _GRID + amp_y * math.sin(freq * z + ph_y)
            out["x"][i, j] = (cx + 0.1 + 0.8 * jx) * _GRID + amp_x * math.sin(freq * z + ph_x)
            # Heavy-tailed weights: mostly small axon profiles, some large dendrites.
            out["w"][i, j] = 0.75 * _GRID * size**3 + amp_w * math.sin(freq * z + ph_w)
            out["tone"][i, j] = 0.48 + 0.08 * tone if dark < 0.06 else 0.60 + 0.14 * tone
            out["rng"][i, j] = rng  # continues with the seed's organelles
    return out


def _voronoi(
    seed: int, z: float, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], range, range]:
    """Distance to the nearest membrane and the profile tone, on the coarse global grid."""
    y0, y1, x0, x1 = box
    gy = np.arange(math.floor(y0 / _COARSE), math.floor((y1 - 1) / _COARSE) + 2) * _COARSE
    gx = np.arange(math.floor(x0 / _COARSE), math.floor((x1 - 1) / _COARSE) + 2) * _COARSE
    py = gy[:, None] + 20.0 * value_noise(seed, _TAGS["warp_y"], 0, gy, gx, 170.0)
    px = gx[None, :] + 20.0 * value_noise(seed, _TAGS["warp_x"], 0, gy, gx, 170.0)
    py += 6.0 * value_noise(seed, _TAGS["warp_y"] + 50, 0, gy, gx, 41.0)
    px += 6.0 * value_noise(seed, _TAGS["warp_x"] + 50, 0, gy, gx, 41.0)
    rows = range(math.floor(py.min() / _GRID) - 2, math.floor(py.max() / _GRID) + 3)
    cols = range(math.floor(px.min() / _GRID) - 2, math.floor(px.max() / _GRID) + 3)
    seeds = _seeds(seed, rows, cols, z)
    ci = np.floor(py / _GRID).astype(np.int64) - rows.start
    cj = np.floor(px / _GRID).astype(np.int64) - cols.start
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    ii = np.stack([ci + dy for dy, _ in offsets])
    jj = np.stack([cj + dx for _, dx in offsets])
    dist = np.hypot(py - seeds["y"][ii, jj], px - seeds["x"][ii, jj]) - seeds["w"][ii, jj]
    first = np.argmin(dist, axis=0)[None]
    best1 = np.take_along_axis(dist, first, axis=0)[0]
    tone = seeds["tone"][np.take_along_axis(ii, first, 0)[0], np.take_along_axis(jj, first, 0)[0]]
    np.put_along_axis(dist, first, np.inf, axis=0)
    best2 = dist.min(axis=0)
    return gy, gx, 0.5 * (best2 - best1), tone, seeds, rows, cols


def _interpolate(
    grid: np.ndarray, gy: np.ndarray, gx: np.ndarray, ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """Bilinear interpolation of a field on the coarse grid at pixel rows ``ys``, cols ``xs``."""
    ty, tx = (ys - gy[0]) / _COARSE, (xs - gx[0]) / _COARSE
    iy, ix = np.floor(ty).astype(np.int64), np.floor(tx).astype(np.int64)
    fy, fx = (ty - iy)[:, None], (tx - ix)[None, :]
    top = grid[iy][:, ix] * (1 - fx) + grid[iy][:, ix + 1] * fx
    bottom = grid[iy + 1][:, ix] * (1 - fx) + grid[iy + 1][:, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def _mitochondrion(
    img: np.ndarray,
    box: tuple[int, int, int, int],
    rng: np.random.Generator,
    cy: float,
    cx: float,
    z: float,
    room: float,
) -> None:
    """Paint one mitochondrion (dark double membrane, darker matrix, cristae) in place."""
    length, width = min(room, rng.uniform(22, 50)), rng.uniform(11, 18)
    width = min(width, 0.8 * length)
    angle, z0, ez = rng.uniform(0, math.pi), rng.uniform(-30, 30), rng.uniform(6, 25)
    off_r, off_a = rng.uniform(0, 0.3 * room), rng.uniform(0, 2 * math.pi)
    period, phase, tone = rng.uniform(7, 11), rng.uniform(0, 2 * math.pi), rng.uniform(0.40, 0.50)
    section = 1.0 - ((z - z0) / ez) ** 2
    if section <= 0.05:
        return
    a, b = length * math.sqrt(section), width * math.sqrt(section)
    my, mx = cy + off_r * math.sin(off_a), cx + off_r * math.cos(off_a)
    y0, y1, x0, x1 = box
    ya, yb = max(y0, math.floor(my - a - 3)), min(y1, math.ceil(my + a + 4))
    xa, xb = max(x0, math.floor(mx - a - 3)), min(x1, math.ceil(mx + a + 4))
    if ya >= yb or xa >= xb:
        return
    yy = np.arange(ya, yb, dtype=np.float64)[:, None] - my
    xx = np.arange(xa, xb, dtype=np.float64)[None, :] - mx
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    edge = (r - 1.0) * b  # signed distance (pixels) to the outline, roughly
    inside = 1.0 / (1.0 + np.exp(np.clip(edge / 0.8, -50, 50)))
    cristae = np.cos(2 * math.pi * u / period + phase + 1.2 * np.sin(v / 4.0))
    matrix = tone - 0.16 * np.clip(cristae - 0.5, 0, None) + 0.04 * cristae
    membrane = np.exp(-0.5 * ((edge + 1.2) / 1.1) ** 2) + 0.8 * np.exp(
        -0.5 * ((edge - 1.6) / 1.0) ** 2
    )
    region = img[ya - y0 : yb - y0, xa - x0 : xb - x0]
    region *= 1 - inside
    region += inside * matrix
    region *= 1 - 0.45 * np.clip(membrane, 0, 1)


def _vesicles(
    img: np.ndarray,
    box: tuple[int, int, int, int],
    rng: np.random.Generator,
    cy: float,
    cx: float,
    z: float,
) -> None:
    """Paint a cluster of synaptic vesicles (dark rings, light lumen) in place."""
    count = int(rng.integers(8, 30))
    direction, dist, spread = rng.uniform(0, 2 * math.pi), rng.uniform(15, 45), rng.uniform(8, 18)
    centre_y, centre_x = cy + dist * math.sin(direction), cx + dist * math.cos(direction)
    # Offsets clipped to 3 spreads keep every vesicle within _OBJECT_REACH of its seed.
    vy = centre_y + spread * np.clip(rng.standard_normal(count), -3, 3)
    vx = centre_x + spread * np.clip(rng.standard_normal(count), -3, 3)
    radius, vz = rng.uniform(3.0, 5.0, count), rng.uniform(-1.5, 1.5, count)
    y0, y1, x0, x1 = box
    for k in range(count):
        section = 1.0 - ((z - vz[k]) / 1.5) ** 2
        if section <= 0.1:
            continue
        rad = radius[k] * math.sqrt(section)
        ya, yb = max(y0, math.floor(vy[k] - rad - 3)), min(y1, math.ceil(vy[k] + rad + 4))
        xa, xb = max(x0, math.floor(vx[k] - rad - 3)), min(x1, math.ceil(vx[k] + rad + 4))
        if ya >= yb or xa >= xb:
            continue
        rho = np.hypot(
            np.arange(ya, yb, dtype=np.float64)[:, None] - vy[k],
            np.arange(xa, xb, dtype=np.float64)[None, :] - vx[k],
        )
        ring = np.exp(-0.5 * ((rho - rad) / 0.9) ** 2)
        lumen = 1.0 / (1.0 + np.exp(np.clip((rho - rad) / 0.7, -50, 50)))
        region = img[ya - y0 : yb - y0, xa - x0 : xb - x0]
        region += 0.03 * lumen
        region *= 1 - 0.32 * ring


def render_em(seed: int, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Render the EM-like image on the global pixel box ``(y0, y1, x0, x1)`` of plane ``z``.

    Parameters
    ----------
    seed : int
        Seed (>= 0).
    z : int
        Plane index (0 for a 2D image).
    box : tuple of int
        Global pixel box.

    Returns
    -------
    numpy.ndarray
        uint8 array of shape ``(y1 - y0, x1 - x0)``.
    """
    y0, y1, x0, x1 = box
    ext = (y0 - _MARGIN, y1 + _MARGIN, x0 - _MARGIN, x1 + _MARGIN)
    ys = np.arange(ext[0], ext[1], dtype=np.float64)
    xs = np.arange(ext[2], ext[3], dtype=np.float64)
    gy, gx, dist, tone, seeds, rows, cols = _voronoi(seed, float(z), ext)
    dist_px = _interpolate(dist, gy, gx, ys, xs)
    img = _interpolate(tone, gy, gx, ys, xs)

    # Cytoplasmic texture and staining variations.
    img += 0.04 * value_noise(seed, _TAGS["texture"], z, ys, xs, 3.0)
    img += 0.06 * value_noise(seed, _TAGS["texture"] + 50, z, ys, xs, 9.0)
    img += 0.08 * value_noise(seed, _TAGS["stain"], 0, ys, xs, 220.0)

    # Organelles anchored to the neurite seeds.
    reach = _OBJECT_REACH
    for i, cy in enumerate(rows):
        for j, cx in enumerate(cols):
            sy, sx, weight = seeds["y"][i, j], seeds["x"][i, j], seeds["w"][i, j]
            if not (
                ext[0] - reach <= sy < ext[1] + reach and ext[2] - reach <= sx < ext[3] + reach
            ):
                continue
            rng = seeds["rng"][i, j]
            has_mito, has_vesicles = rng.random(2)
            if weight > 12 and has_mito < 0.45:
                _mitochondrion(img, ext, rng, sy, sx, float(z), 0.6 * (weight + 0.5 * _GRID))
            if has_vesicles < 0.10:
                _vesicles(img, ext, cell_rng(seed, _TAGS["vesicle"], cy, cx), sy, sx, float(z))

    # Dark granules (ribosomes, glycogen, microtubule cross-sections).
    gys, gxs, gws = [], [], []
    for cy in cell_range(ext[0] - 4, ext[1] + 4, 128):
        for cx in cell_range(ext[2] - 4, ext[3] + 4, 128):
            rng = cell_rng(seed, _TAGS["granule"], z, cy, cx)
            count = int(rng.poisson(110))
            gys.append((cy + rng.random(count)) * 128)
            gxs.append((cx + rng.random(count)) * 128)
            gws.append(rng.uniform(0.4, 1.6, count))
    granules = np.zeros(img.shape)
    splat(granules, ext, np.concatenate(gys), np.concatenate(gxs), np.concatenate(gws))
    img -= 4.0 * ndimage.gaussian_filter(granules, 1.9, mode="constant")

    # Membranes: dark bands along the Voronoi edges, of varying thickness.
    wobble = value_noise(seed, _TAGS["membrane"], 0, ys, xs, 60.0)
    thickness = 1.6 + 0.4 * wobble
    img *= 1.0 - (0.66 + 0.1 * wobble) * np.exp(-0.5 * (dist_px / thickness) ** 2)

    grain = lattice_normal(seed, _TAGS["grain"], z, (ext[0], ext[1]), (ext[2], ext[3]))
    img += 0.06 * grain
    img = ndimage.gaussian_filter(img, 0.8, mode="nearest")
    out = img[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
