"""Synthetic widefield fluorescence of cultured cells (65 nm pixels, uint16 camera counts).

Curvy filaments (microtubule- and mitochondria-like, beaded), diffraction-limited puncta
(vesicles) and nuclei with chromatin texture and nucleoli, inside the overlapping cells of a
confluent culture (so structures fill the frame) with a dim cytoplasmic haze, over a slowly
varying background; blurred by a Gaussian PSF and recorded by a camera: shot noise at a
high photon count, gain, offset, 16-bit counts.

Objects belong to the cells of a fixed global grid (in Y, X and slabs of Z) and are
seeded by cell index; every pixel is a function of its global position, so any region
renders alone. Objects are 3D (filaments tilt through Z, puncta and nuclei have a Z
extent seen through the axial PSF), so consecutive planes look like a focal series.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from decrappify.sample._grid import cell_range, cell_rng, lattice_normal, splat, value_noise

__all__ = ["FLUO_PIXEL_SIZE", "FLUO_Z_STEP", "render_fluorescence"]

#: Lateral pixel size in micrometres.
FLUO_PIXEL_SIZE = 0.065
#: Z step in micrometres.
FLUO_Z_STEP = 0.2

_CELL = 128  # object cells (pixels)
_BODY_CELL = 288  # one cell body per such grid cell: a confluent culture fills the frame
_BODY_REACH = 330  # search margin: centres lie >= 86 px inside their cell, extent <= 414 px
_SLAB = 8  # planes per object slab along Z
_FILAMENT_REACH = 280  # farthest a filament point lies from its cell (pixels)
_PSF_SIGMA = 1.6  # lateral PSF (pixels): FWHM ~ 245 nm at 65 nm pixels
_AXIAL_SIGMA = 2.5  # axial PSF (planes)
_MARGIN = 10
_PHOTONS = 2000.0  # photons per pixel at the bright level
_GAIN = 2.0  # grey levels per photon
_OFFSET = 100.0  # camera offset (grey levels)
_TAGS = {
    "filament": 201,
    "punctum": 202,
    "cell": 203,
    "haze": 204,
    "background": 205,
    "chromatin": 206,
    "shot": 207,
}


def _filaments(seed: int, z: int, box: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    """Points (y, x, weight) sampled every half pixel along the filaments near ``box``."""
    y0, y1, x0, x1 = box
    reach = _FILAMENT_REACH
    params = []
    for cz in (z // _SLAB - 1, z // _SLAB, z // _SLAB + 1):
        for cy in cell_range(y0 - reach, y1 + reach, _CELL):
            for cx in cell_range(x0 - reach, x1 + reach, _CELL):
                rng = cell_rng(seed, _TAGS["filament"], cz, cy, cx)
                n = int(rng.poisson(7.0))
                start_y, start_x = (cy + rng.random(n)) * _CELL, (cx + rng.random(n)) * _CELL
                z0, slope = (cz + rng.random(n)) * _SLAB, rng.normal(0.0, 0.03, n)
                length = rng.uniform(60.0, reach - 20.0, n)
                theta0 = rng.uniform(0, 2 * math.pi, n)
                amps, waves = rng.uniform(0.15, 0.6, (n, 3)), rng.uniform(20.0, 80.0, (n, 3))
                phases = rng.uniform(0, 2 * math.pi, (n, 3))
                brightness = rng.uniform(0.35, 1.0, n)
                bead, bead_phase = rng.uniform(5.0, 14.0, n), rng.uniform(0, 2 * math.pi, n)
                z_end = z0 + slope * length
                near = np.minimum(np.abs(z - z0), np.abs(z - z_end))
                keep = (near <= 3.5 * _AXIAL_SIGMA) | ((z - z0) * (z - z_end) <= 0)
                params.append(
                    np.column_stack(
                        [
                            start_y,
                            start_x,
                            z0,
                            slope,
                            length,
                            theta0,
                            amps,
                            waves,
                            phases,
                            brightness,
                            bead,
                            bead_phase,
                        ]
                    )[keep]
                )
    table = np.concatenate(params) if params else np.zeros((0, 18))
    if not len(table):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    col = iter(range(table.shape[1]))
    start_y, start_x, z0, slope, length, theta0 = (table[:, [next(col)]] for _ in range(6))
    amps, waves, phases = (table[:, [next(col) for _ in range(3)]] for _ in range(3))
    brightness, bead, bead_phase = (table[:, [next(col)]] for _ in range(3))
    # One row per filament: each row's values depend only on that filament.
    s = np.arange(0.0, float(length.max()), 0.5)[None, :]
    theta = theta0 + sum(
        amps[:, [k]] * np.sin(s / waves[:, [k]] + phases[:, [k]]) for k in range(3)
    )
    py = start_y + np.cumsum(0.5 * np.sin(theta), axis=1)
    px = start_x + np.cumsum(0.5 * np.cos(theta), axis=1)
    focus = np.exp(-0.5 * ((z - (z0 + slope * s)) / _AXIAL_SIGMA) ** 2)
    beads = 1.0 + 0.45 * np.sin(2 * math.pi * s / bead + bead_phase)
    weight = 0.5 * brightness * focus * beads
    valid = s < length
    return py[valid], px[valid], weight[valid]


def _puncta(seed: int, z: int, box: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    """Point sources (y, x, weight) near ``box``."""
    y0, y1, x0, x1 = box
    ys, xs, ws = [], [], []
    for cz in (z // _SLAB - 1, z // _SLAB, z // _SLAB + 1):
        for cy in cell_range(y0 - 2, y1 + 2, _CELL):
            for cx in cell_range(x0 - 2, x1 + 2, _CELL):
                rng = cell_rng(seed, _TAGS["punctum"], cz, cy, cx)
                n = int(rng.poisson(10.0))
                pz = (cz + rng.random(n)) * _SLAB
                ys.append((cy + rng.random(n)) * _CELL)
                xs.append((cx + rng.random(n)) * _CELL)
                amp = 2.5 * rng.lognormal(0.0, 0.6, n)
                ws.append(amp * np.exp(-0.5 * ((z - pz) / _AXIAL_SIGMA) ** 2))
    return np.concatenate(ys), np.concatenate(xs), np.concatenate(ws)


def _cells(seed: int, z: int, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell bodies (soft irregular outlines) and their nuclei over ``box``.

    Returns
    -------
    body : numpy.ndarray
        Cell occupancy in [0, 1].
    nuclei : numpy.ndarray
        Nuclear stain intensity.
    """
    y0, y1, x0, x1 = box
    shape = (y1 - y0, x1 - x0)
    outside = np.ones(shape)
    nuclei = np.zeros(shape)
    reach = _BODY_REACH
    for cy in cell_range(y0 - reach, y1 + reach, _BODY_CELL):
        for cx in cell_range(x0 - reach, x1 + reach, _BODY_CELL):
            rng = cell_rng(seed, _TAGS["cell"], cy, cx)
            _, jy, jx = rng.random(3)
            radius = rng.uniform(175.0, 235.0)
            harm_amp = rng.uniform(0.0, 0.14, 3)
            harm_phase = rng.uniform(0, 2 * math.pi, 3)
            nucleus = _nucleus_params(rng, radius)
            by = (cy + 0.3 + 0.4 * jy) * _BODY_CELL
            bx = (cx + 0.3 + 0.4 * jx) * _BODY_CELL
            extent = radius * (1.0 + harm_amp.sum()) + 80.0  # occupancy < 4e-4 beyond
            ya, yb = max(y0, math.floor(by - extent)), min(y1, math.ceil(by + extent))
            xa, xb = max(x0, math.floor(bx - extent)), min(x1, math.ceil(bx + extent))
            if ya >= yb or xa >= xb:
                continue
            gy = np.arange(ya, yb, dtype=np.float64)
            gx = np.arange(xa, xb, dtype=np.float64)
            yy, xx = gy[:, None] - by, gx[None, :] - bx
            theta = np.arctan2(yy, xx)
            outline = radius * (
                1.0
                + sum(
                    a * np.sin(k * theta + p)
                    for k, a, p in zip(range(2, 5), harm_amp, harm_phase, strict=True)
                )
            )
            rho = np.hypot(yy, xx)
            occupancy = 1.0 / (1.0 + np.exp(np.clip((rho - outline) / 10.0, -50, 50)))
            outside[ya - y0 : yb - y0, xa - x0 : xb - x0] *= 1.0 - occupancy
            if nucleus is not None:
                _add_nucleus(nuclei, box, seed, z, nucleus, by, bx)
    return 1.0 - outside, nuclei


def _nucleus_params(rng: np.random.Generator, radius: float) -> dict[str, float] | None:
    """Draw the nucleus of a cell of ``radius`` (None for a cell without one in view)."""
    has = rng.random()
    params = {
        "oy": rng.uniform(-0.2, 0.2) * radius,
        "ox": rng.uniform(-0.2, 0.2) * radius,
        "a": rng.uniform(0.32, 0.42) * radius,
        "ratio": rng.uniform(0.7, 0.95),
        "angle": rng.uniform(0, math.pi),
        "z0": rng.uniform(-4.0, 4.0),
        "ez": rng.uniform(14.0, 24.0),
        "brightness": rng.uniform(0.10, 0.18),
    }
    nucleoli = rng.uniform(-0.45, 0.45, (3, 2))
    count = int(rng.integers(1, 4))
    for i in range(3):
        params[f"n{i}y"], params[f"n{i}x"] = nucleoli[i] if i < count else (9.0, 9.0)
    return params if has < 0.85 else None


def _add_nucleus(
    out: np.ndarray,
    box: tuple[int, int, int, int],
    seed: int,
    z: int,
    p: dict[str, float],
    by: float,
    bx: float,
) -> None:
    """Add a nucleus (ellipsoid section, chromatin texture, rim, nucleoli) to ``out``."""
    section = 1.0 - ((z - p["z0"]) / p["ez"]) ** 2
    if section <= 0.02:
        return
    a = p["a"] * math.sqrt(section)
    b = a * p["ratio"]
    ny, nx = by + p["oy"], bx + p["ox"]
    y0, y1, x0, x1 = box
    ya, yb = max(y0, math.floor(ny - a - 10)), min(y1, math.ceil(ny + a + 11))
    xa, xb = max(x0, math.floor(nx - a - 10)), min(x1, math.ceil(nx + a + 11))
    if ya >= yb or xa >= xb:
        return
    gy = np.arange(ya, yb, dtype=np.float64)
    gx = np.arange(xa, xb, dtype=np.float64)
    yy, xx = gy[:, None] - ny, gx[None, :] - nx
    u = xx * math.cos(p["angle"]) + yy * math.sin(p["angle"])
    v = -xx * math.sin(p["angle"]) + yy * math.cos(p["angle"])
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    inside = 1.0 / (1.0 + np.exp(np.clip((r - 1.0) * b / 2.5, -50, 50)))
    texture = 1.0 + 0.18 * value_noise(seed, _TAGS["chromatin"], z, gy, gx, 6.0)
    texture += 0.2 * value_noise(seed, _TAGS["chromatin"] + 50, z, gy, gx, 22.0)
    for i in range(3):
        d2 = (u - p[f"n{i}y"] * a) ** 2 + (v - p[f"n{i}x"] * b) ** 2
        texture -= 0.45 * np.exp(-0.5 * d2 / (0.13 * b) ** 2)
    texture += 0.35 * np.exp(-0.5 * ((r - 0.95) * b / 3.0) ** 2)
    out[ya - y0 : yb - y0, xa - x0 : xb - x0] += (
        p["brightness"] * inside * np.clip(texture, 0.1, None)
    )


def render_fluorescence(seed: int, z: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Render the fluorescence-like image on the global pixel box ``(y0, y1, x0, x1)``.

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
        uint16 camera counts of shape ``(y1 - y0, x1 - x0)``: offset 100, gain 2 grey
        levels per photon, about 2000 photons at the bright level.
    """
    y0, y1, x0, x1 = box
    ext = (y0 - _MARGIN, y1 + _MARGIN, x0 - _MARGIN, x1 + _MARGIN)
    ys = np.arange(ext[0], ext[1], dtype=np.float64)
    xs = np.arange(ext[2], ext[3], dtype=np.float64)
    body, nuclei = _cells(seed, z, ext)
    structures = np.zeros((ext[1] - ext[0], ext[3] - ext[2]))
    splat(structures, ext, *_filaments(seed, z, ext))
    splat(structures, ext, *_puncta(seed, z, ext))
    haze = 0.04 + 0.012 * value_noise(seed, _TAGS["haze"], z, ys, xs, 40.0)
    img = body * (structures + haze) + nuclei
    img += 0.035 + 0.015 * value_noise(seed, _TAGS["background"], 0, ys, xs, 300.0)
    img = ndimage.gaussian_filter(img, _PSF_SIGMA, mode="nearest")
    photons = np.maximum(img[_MARGIN:-_MARGIN, _MARGIN:-_MARGIN], 0.0) * _PHOTONS
    shot = lattice_normal(seed, _TAGS["shot"], z, (y0, y1), (x0, x1))
    counts = _OFFSET + _GAIN * (photons + np.sqrt(photons) * shot)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
