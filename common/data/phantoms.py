"""Procedural anatomy and its rendering in two domains: the synthetic benchmark's content.

Every task draws a subject's anatomy (a map of tissue classes) from a seeded generator and
renders it in either domain, so that the same subject can be shown in both (the references
that translations are scored against). Everything is vectorised numpy on the whole grid.

Coordinates are normalised to [-1, 1] along every axis of the physical field of view; 3D
volumes have half as many slices as in-plane pixels and twice the spacing, so a unit in
normalised coordinates is the same length along every axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates


@dataclass(frozen=True)
class Anatomy:
    """A subject's anatomy.

    Attributes:
        tissue: integer tissue classes on the grid (task-specific, 0 = air/background).
        label: the segmentation label map (0 = background), derived from ``tissue``.
        spacing: voxel spacing in mm, one value per axis.
    """

    tissue: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...]


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, correlation: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with a correlation length given as a fraction of the grid."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=[max(correlation * n, 0.5) for n in shape], mode="wrap")
    return field / (field.std() + 1e-12)


def grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Normalised coordinates in [-1, 1] along every axis (``ij`` indexing)."""
    return np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")


def deformed(coords: list[np.ndarray], rng: np.random.Generator, amplitude: float) -> list[np.ndarray]:
    """Coordinates displaced by a smooth random field: a subject's overall shape variation."""
    shape = coords[0].shape
    return [c + amplitude * smooth_field(shape, rng, 0.25) for c in coords]


def blob(coords: list[np.ndarray], centre, radii, rng: np.random.Generator, roughness: float = 0.15) -> np.ndarray:
    """An ellipsoid whose boundary is perturbed by a smooth random field."""
    distance = sum(((c - c0) / r) ** 2 for c, c0, r in zip(coords, centre, radii, strict=True))
    return distance + roughness * smooth_field(coords[0].shape, rng, 0.12) <= 1


def jitter(rng: np.random.Generator, values, spread: float) -> np.ndarray:
    """``values`` times a random factor in ``1 +/- spread`` each."""
    values = np.asarray(values, float)
    return values * rng.uniform(1 - spread, 1 + spread, size=values.shape)


def torso(size: int, rng: np.random.Generator, deformation: float, radii, spread: float):
    """A 3D volume ``(size, size, size // 2)`` with a deformed elliptic body (tissue 1).

    Returns:
        The deformed coordinates ``(x, y, z)``, the tissue map and the body mask.
    """
    shape = (size, size, max(size // 2, 4))
    x, y, z = deformed(grid(shape), rng, deformation)
    tissue = np.zeros(shape, np.uint8)
    body = blob([x, y], (0, 0), jitter(rng, radii, spread), rng, 0.05)
    tissue[body] = 1
    return (x, y, z), tissue, body


def torso_spacing(size: int) -> tuple[float, float, float]:
    """Voxel spacing of a torso volume: a 300 mm field of view, slices twice as thick."""
    return (300.0 / size, 300.0 / size, 600.0 / size)


@dataclass(frozen=True)
class CTMRRendering:
    """Renders a torso's tissue map as CT (HU-like values, Gaussian noise) or MR (tissue
    values times a smooth multiplicative bias field, Rician noise), both with a mild
    multiplicative per-tissue texture.

    Attributes:
        ct: CT value per tissue class.
        mr: MR value per tissue class.
        texture: relative amplitude of the texture.
        ct_noise: standard deviation of the CT noise (HU).
        bias: log-amplitude of the MR bias field.
        mr_noise: standard deviation of the MR (complex Gaussian) noise.
    """

    ct: np.ndarray
    mr: np.ndarray
    texture: float
    ct_noise: float
    bias: float
    mr_noise: float

    def __call__(self, anatomy: Anatomy, domain: str, rng: np.random.Generator) -> np.ndarray:
        """The rendering of ``anatomy`` in ``domain`` (``"ct"`` or ``"mr"``), float32."""
        tissue, shape = anatomy.tissue, anatomy.tissue.shape
        texture = 1 + self.texture * smooth_field(shape, rng, 0.03)
        if domain == "ct":
            image = self.ct[tissue] * np.where(tissue > 0, texture, 1)
            return (image + rng.normal(0, self.ct_noise, shape)).astype(np.float32)
        if domain == "mr":
            bias = np.exp(self.bias * smooth_field(shape, rng, 0.3))
            return rician(self.mr[tissue] * texture * bias, self.mr_noise, rng)
        raise ValueError(f"Unknown domain {domain!r}; expected 'ct' or 'mr'.")


# --- abdomen: CT and MR of body, spine and four organs ------------------------------------

ABDOMEN_LABELS = {0: "background", 1: "liver", 2: "right_kidney", 3: "left_kidney", 4: "spleen"}
# tissue classes: 0 air, 1 fat, 2 muscle, 3 bone, 4 liver, 5 right kidney, 6 left kidney, 7 spleen
ABDOMEN_CT = np.array([-1000.0, -100.0, 45.0, 650.0, 130.0, 190.0, 190.0, 85.0])  # HU-like
ABDOMEN_MR = np.array([0.0, 620.0, 170.0, 90.0, 210.0, 720.0, 720.0, 560.0])  # T2-like: fat bright, liver < spleen


def abdomen_anatomy(size: int, rng: np.random.Generator) -> Anatomy:
    """Body outline, subcutaneous fat, muscle, spine, liver, kidneys and spleen in a 3D volume.

    Args:
        size: in-plane pixels; the volume is ``(size, size, size // 2)``.
        rng: the subject's generator.
    """
    (x, y, z), tissue, body = torso(size, rng, 0.04, (0.9, 0.68), 0.06)
    tissue[blob([x, y], (0, 0), jitter(rng, (0.8, 0.58), 0.06), rng, 0.05) & body] = 2
    tissue[blob([x, y], (0, -0.4), (0.11, 0.11), rng, 0.02) & body] = 3
    organs = [
        (4, (-0.32, 0.08, 0.1), (0.36, 0.3, 0.6)),
        (5, (-0.3, -0.3, -0.15), (0.13, 0.16, 0.38)),
        (6, (0.3, -0.3, -0.1), (0.13, 0.16, 0.38)),
        (7, (0.42, 0.02, 0.25), (0.18, 0.22, 0.38)),
    ]
    for value, centre, radii in organs:
        centre = np.asarray(centre) + rng.uniform(-0.05, 0.05, 3)
        tissue[blob([x, y, z], centre, jitter(rng, radii, 0.15), rng) & body] = value
    label = np.where(tissue >= 4, tissue - 3, 0).astype(np.uint8)
    return Anatomy(tissue, label, torso_spacing(size))


render_abdomen = CTMRRendering(ABDOMEN_CT, ABDOMEN_MR, texture=0.05, ct_noise=20.0, bias=0.25, mr_noise=25.0)


# --- cardiac: CT and MR with an uneven gap across structures ------------------------------

CARDIAC_LABELS = {0: "background", 1: "ascending_aorta", 2: "left_atrium", 3: "left_ventricle", 4: "myocardium"}
# tissue classes: 0 air, 1 soft tissue, 2 lung, 3 aorta, 4 left atrium, 5 LV cavity, 6 myocardium
CARDIAC_CT = np.array([-1000.0, 40.0, -800.0, 330.0, 320.0, 310.0, 110.0])
# MR: aorta and atrium bright as in CT; LV cavity dark and myocardium bright, the inverse of CT.
CARDIAC_MR = np.array([0.0, 260.0, 40.0, 820.0, 780.0, 230.0, 640.0])


def cardiac_anatomy(size: int, rng: np.random.Generator) -> Anatomy:
    """Thorax with lungs, ascending aorta (a tube), left atrium, LV cavity and myocardium ring.

    Args:
        size: in-plane pixels; the volume is ``(size, size, size // 2)``.
        rng: the subject's generator.
    """
    (x, y, z), tissue, body = torso(size, rng, 0.03, (0.92, 0.7), 0.05)
    for side in (-1, 1):
        tissue[blob([x, y, z], (side * 0.5, -0.05, 0), jitter(rng, (0.33, 0.45, 1.3), 0.08), rng) & body] = 2
    lv_centre = np.array([0.12, 0.05, -0.1]) + rng.uniform(-0.05, 0.05, 3)
    lv_radii = jitter(rng, (0.21, 0.18, 0.42), 0.12)
    wall = rng.uniform(0.07, 0.1)
    myocardium = blob([x, y, z], lv_centre, lv_radii + wall, rng, 0.05)
    tissue[myocardium] = 6
    tissue[blob([x, y, z], lv_centre, lv_radii, rng, 0.05)] = 5
    la_centre = np.array([-0.08, -0.3, 0.15]) + rng.uniform(-0.04, 0.04, 3)
    tissue[blob([x, y, z], la_centre, jitter(rng, (0.19, 0.13, 0.28), 0.12), rng) & (tissue != 5)] = 4
    # The aorta: a tube rising through the upper half, slightly tilted.
    tilt = rng.uniform(-0.15, 0.15, 2)
    centre_x, centre_y = -0.12 + tilt[0] * z, 0.2 + tilt[1] * z
    radius = rng.uniform(0.08, 0.1)
    aorta = ((x - centre_x) ** 2 + (y - centre_y) ** 2 <= radius**2) & (z > -0.2) & (tissue != 5) & (tissue != 6)
    tissue[aorta] = 3
    label = np.where(tissue >= 3, tissue - 2, 0).astype(np.uint8)
    return Anatomy(tissue, label, torso_spacing(size))


render_cardiac = CTMRRendering(CARDIAC_CT, CARDIAC_MR, texture=0.04, ct_noise=25.0, bias=0.2, mr_noise=30.0)


# --- brain: paired T1-like and T2-like slices ---------------------------------------------

BRAIN_LABELS = {0: "background", 1: "scalp", 2: "skull", 3: "csf", 4: "gray_matter", 5: "white_matter"}
# Relative signal per tissue (0 background, scalp, skull, CSF, GM, WM), in the order of
# literature T1-weighted (WM > GM > CSF) and T2-weighted (CSF > GM > WM) contrast.
BRAIN_T1 = np.array([0.0, 0.72, 0.12, 0.18, 0.55, 0.82])
BRAIN_T2 = np.array([0.0, 0.5, 0.06, 0.95, 0.62, 0.42])


def brain_anatomy(size: int, rng: np.random.Generator) -> Anatomy:
    """An axial head slice: scalp, skull, outer CSF, folded cortex, white matter and ventricles.

    Args:
        size: pixels per side of the 2D image.
        rng: the subject's generator.
    """
    x, y = deformed(grid((size, size)), rng, 0.02)
    radius = np.hypot(x / 0.78, y / 0.92)
    angle = np.arctan2(y, x)
    folds = 0.035 * np.sin(rng.integers(9, 14) * angle + rng.uniform(0, 2 * np.pi))
    folds += 0.02 * np.sin(rng.integers(17, 23) * angle + rng.uniform(0, 2 * np.pi))
    scale = rng.uniform(0.93, 1.05)
    tissue = np.zeros((size, size), np.uint8)
    tissue[radius <= 1.0 * scale] = 1
    tissue[radius <= 0.93 * scale] = 2
    tissue[radius <= 0.86 * scale] = 3
    tissue[radius <= (0.82 + folds) * scale] = 4
    tissue[radius <= (0.66 + folds) * scale] = 5
    spread = rng.uniform(0.1, 0.16)
    for side in (-1, 1):
        tissue[blob([x, y], (side * spread, rng.uniform(-0.05, 0.08)), jitter(rng, (0.07, 0.26), 0.2), rng, 0.1)] = 3
    return Anatomy(tissue, tissue.copy(), (240.0 / size, 240.0 / size))


def render_brain(anatomy: Anatomy, domain: str, rng: np.random.Generator, tables=(BRAIN_T1, BRAIN_T2)) -> np.ndarray:
    """T1-like or T2-like image in [0, 1]; the background is exactly 0 (noise only inside the head).

    ``tables``: the T1 and T2 value of each tissue class.
    """
    if domain not in ("t1", "t2"):
        raise ValueError(f"Unknown brain domain {domain!r}; expected 't1' or 't2'.")
    tissue = anatomy.tissue
    values = tables[0 if domain == "t1" else 1][tissue]
    texture = 1 + 0.04 * smooth_field(tissue.shape, rng, 0.03)
    image = np.where(tissue > 0, values * texture + rng.normal(0, 0.01, tissue.shape), 0.0)
    return np.clip(image, 0, 1).astype(np.float32)


def misalign(image: np.ndarray, level: int, rng: np.random.Generator, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """RegGAN's misalignment of level ``L``: a random rotation up to L degrees, translation up
    to 2L % of the image size along each axis and scale 1 +/- 0.02 L, about the image centre.

    Args:
        image: a 2D image ``(H, W)``, or ``(C, H, W)`` (one transform for every channel).
        level: 0 (unchanged) to 5.
        rng: the generator that draws the transform.
        order: spline order of the resampling (1 for images, 0 for label maps).
        cval: the value outside the field of view (the background).

    Returns:
        The transformed image, same shape and dtype.

    Raises:
        ValueError: a level outside 0-5 or an image that is neither 2D nor channel-first 2D.
    """
    if level not in range(6):
        raise ValueError(f"Misalignment level must be 0 to 5, got {level}.")
    if image.ndim not in (2, 3):
        raise ValueError(f"Misalignment applies to 2D images (H, W) or (C, H, W), got shape {image.shape}.")
    if level == 0:
        return image.copy()
    return resample(image, misalignment_field(tuple(image.shape[-2:]), level, rng), order, cval)


def resample(image: np.ndarray, field: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """``image`` (``(H, W)`` or ``(C, H, W)``) sampled at ``field`` (``(2, H, W)`` coordinates in
    pixels), outside the field of view ``cval``; same shape and dtype."""
    spatial = field.shape[1:]
    channels = image[None] if image.ndim == 2 else image
    warped = np.stack(
        [
            map_coordinates(channel, field.reshape(2, -1), order=order, mode="constant", cval=cval).reshape(spatial)
            for channel in channels
        ]
    )
    return (warped[0] if image.ndim == 2 else warped).astype(image.dtype)


def misalignment_field(shape: tuple[int, int], level: int, rng: np.random.Generator) -> np.ndarray:
    """The sampling coordinates of one random misalignment of level ``L`` (see :func:`misalign`,
    which draws it the same way): output pixel ``p`` samples the input at ``field[:, p]``.

    ``field - indices`` is therefore the exact displacement that MONAI's ``Warp`` needs to warp
    the aligned image onto the misaligned one (the ideal output of RegGAN's R).

    Args:
        shape: ``(H, W)``.
        level: 1 to 5.
        rng: the generator that draws the transform.

    Returns:
        ``(2, H, W)`` row and column coordinates, in pixels.
    """
    spatial = np.asarray(shape)
    angle = np.deg2rad(rng.uniform(-level, level))
    shift = rng.uniform(-0.02 * level, 0.02 * level, 2) * spatial
    scale = rng.uniform(1 - 0.02 * level, 1 + 0.02 * level)
    centre = (spatial - 1) / 2
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # Output pixel p samples the input at A^-1 (p - centre - shift) + centre.
    coords = np.indices(tuple(spatial)).reshape(2, -1).astype(float)
    source = np.linalg.inv(scale * rotation) @ (coords - (centre + shift)[:, None]) + centre[:, None]
    return source.reshape(2, *shape)


# --- polyp: RGB endoscopy from two centres -------------------------------------------------

POLYP_LABELS = {0: "background", 1: "polyp"}


def polyp_anatomy(size: int, rng: np.random.Generator) -> Anatomy:
    """A colonoscopy frame's layout: folds and one polyp (tissue 0 mucosa, 1 fold, 2 polyp).

    Args:
        size: pixels per side of the 2D image.
        rng: the subject's generator.
    """
    x, y = deformed(grid((size, size)), rng, 0.05)
    tissue = np.zeros((size, size), np.uint8)
    theta = rng.uniform(0, np.pi)
    phase = x * np.cos(theta) + y * np.sin(theta) + 0.2 * smooth_field((size, size), rng, 0.2)
    tissue[np.sin(rng.uniform(5, 9) * phase + rng.uniform(0, 2 * np.pi)) > 0.85] = 1
    centre = rng.uniform(-0.45, 0.45, 2)
    polyp = blob([x, y], centre, jitter(rng, (0.22, 0.22), 0.35), rng, 0.2)
    tissue[polyp] = 2
    return Anatomy(tissue, polyp.astype(np.uint8), (1.0, 1.0))


# Per centre: colour cast (RGB gain), vignetting strength, blur sigma (fraction of size), noise.
POLYP_CENTRES = {
    "a": {"gain": (1.0, 1.0, 1.0), "vignetting": 0.25, "blur": 0.0, "noise": 0.01},
    "b": {"gain": (0.78, 1.08, 1.25), "vignetting": 0.65, "blur": 0.018, "noise": 0.04},
}


def _polyp_scene(anatomy: Anatomy, rng: np.random.Generator, highlight: float) -> np.ndarray:
    """The centre-independent reflectance of a frame: mucosa texture, folds, polyp dome, specular
    highlights of value ``highlight``."""
    tissue, shape = anatomy.tissue, anatomy.tissue.shape
    mucosa = np.array([0.78, 0.42, 0.36])[:, None, None] * (
        1 + 0.12 * smooth_field(shape, rng, 0.05) + 0.06 * smooth_field(shape, rng, 0.01)
    )
    image = mucosa * np.where(tissue == 1, 0.7, 1.0)
    polyp = tissue == 2
    if polyp.any():
        distance = gaussian_filter(polyp.astype(float), sigma=0.03 * shape[0])
        dome = np.clip(distance / (distance[polyp].max() + 1e-9), 0, 1)
        polyp_colour = np.array([0.86, 0.36, 0.38])[:, None, None] * (0.75 + 0.45 * dome)
        image = np.where(polyp, polyp_colour, image)
    highlights = smooth_field(shape, rng, 0.015) > 2.7
    return np.where(highlights, highlight, image)


def render_polyp(anatomy: Anatomy, domain: str, rng: np.random.Generator) -> np.ndarray:
    """RGB image in [0, 1], shape ``(3, H, W)``: mucosa texture, darker folds, a domed polyp,
    specular highlights, then the centre's colour cast, illumination falloff, blur and noise."""
    if domain not in POLYP_CENTRES:
        raise ValueError(f"Unknown polyp centre {domain!r}; expected one of {sorted(POLYP_CENTRES)}.")
    centre = POLYP_CENTRES[domain]
    shape = anatomy.tissue.shape
    x, y = grid(shape)
    image = _polyp_scene(anatomy, rng, highlight=1.0)
    image = image * np.asarray(centre["gain"])[:, None, None]
    image = image * (1 - centre["vignetting"] * (x**2 + y**2) / 2)
    if centre["blur"]:
        image = gaussian_filter(image, sigma=(0, centre["blur"] * shape[0], centre["blur"] * shape[1]))
    image = image + rng.normal(0, centre["noise"], image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation ``sigma``."""
    real = image + rng.normal(0, sigma, image.shape)
    imaginary = rng.normal(0, sigma, image.shape)
    return np.hypot(real, imaginary).astype(np.float32)


# === version 2: each task holds the kind of shift its method removes (benchmark v2) ========
# Version 1 above stays byte-identical behind ``--version 1``. Each change is motivated in
# docs/synthetic_benchmark.md by the real-data phenomenon it imitates, and calibrated with
# oracles by ``python -m common.data.calibrate``.

# --- polyp v2: centres differ by an invertible colour/tone/illumination change -------------

# Per centre, applied in this order to the scene's reflectance: a 3 x 3 colour matrix (white
# balance and the processor's hue/saturation rendering), illumination falloff (the light
# source), a display gamma, then a small blur and noise. All but blur and noise are invertible
# per pixel, which :func:`polyp_inverse` undoes exactly (up to 8-bit quantisation): the scene
# is kept in [0, 1] and the gains keep every centre's appearance there, so nothing is clipped.


def hue_saturation_matrix(degrees: float, saturation: float) -> np.ndarray:
    """The RGB matrix that rotates hue by ``degrees`` about the grey axis and scales saturation."""
    grey = np.full((3, 3), 1 / 3)
    angle = np.deg2rad(degrees)
    # Rotation about the unit grey axis (Rodrigues); grey stays grey.
    k = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3)
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    return grey + saturation * (rotation - grey)


POLYP_CENTRES_V2 = {
    "a": {"colour": 0.9 * np.eye(3), "vignetting": 0.25, "gamma": 1.0, "blur": 0.0, "noise": 0.01},
    "b": {
        "colour": 0.82 * hue_saturation_matrix(45.0, 1.3),  # cooler light, a processor that shifts red to yellow-green
        "vignetting": 0.55,  # a narrower beam: darker periphery
        "gamma": 0.65,  # a brighter tone curve (output = input ** 0.65)
        "blur": 0.006,  # 0.4 pixel at 64 x 64: slightly softer optics
        "noise": 0.015,
    },
}


def _falloff(shape: tuple[int, int], strength: float) -> np.ndarray:
    x, y = grid(shape)
    return 1 - strength * (x**2 + y**2) / 2


def polyp_appearance(scene: np.ndarray, domain: str) -> np.ndarray:
    """A centre's invertible appearance: colour matrix, illumination falloff and gamma (no blur, no noise)."""
    centre = POLYP_CENTRES_V2[domain]
    image = np.einsum("ij,jhw->ihw", centre["colour"], scene) * _falloff(scene.shape[1:], centre["vignetting"])
    return np.clip(image, 0, 1) ** centre["gamma"]


def polyp_inverse(image: np.ndarray, domain: str, to: str) -> np.ndarray:
    """The oracle translation of a ``domain`` frame into centre ``to``: the exact inverse of
    ``domain``'s gamma, falloff and colour matrix, then ``to``'s appearance; blur and noise stay.

    Args:
        image: ``(3, H, W)`` in [0, 1].
        domain: the centre the image comes from.
        to: the centre to render it in.
    """
    centre = POLYP_CENTRES_V2[domain]
    linear = np.clip(image, 1e-6, 1) ** (1 / centre["gamma"]) / _falloff(image.shape[1:], centre["vignetting"])
    scene = np.einsum("ij,jhw->ihw", np.linalg.inv(centre["colour"]), linear)
    return polyp_appearance(scene, to).astype(np.float32)


def render_polyp_v2(anatomy: Anatomy, domain: str, rng: np.random.Generator) -> np.ndarray:
    """RGB image in [0, 1], shape ``(3, H, W)``: the scene in the centre's appearance, a small blur and noise."""
    if domain not in POLYP_CENTRES_V2:
        raise ValueError(f"Unknown polyp centre {domain!r}; expected one of {sorted(POLYP_CENTRES_V2)}.")
    centre = POLYP_CENTRES_V2[domain]
    image = polyp_appearance(np.clip(_polyp_scene(anatomy, rng, highlight=0.97), 0, 1), domain)
    if centre["blur"]:
        sigma = centre["blur"] * anatomy.tissue.shape[0]
        image = gaussian_filter(image, sigma=(0, sigma, sigma))
    image = image + rng.normal(0, centre["noise"], image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


# --- brain v2: oedema-like lesions, bright in T2 and faint in T1 ---------------------------

BRAIN_LABELS_V2 = {**BRAIN_LABELS, 6: "lesion"}
# Vasogenic oedema: strongly hyperintense in T2 (near CSF), only mildly hypointense in T1.
BRAIN_T1_V2 = np.append(BRAIN_T1, 0.7)
BRAIN_T2_V2 = np.append(BRAIN_T2, 0.85)


def brain_anatomy_v2(size: int, rng: np.random.Generator) -> Anatomy:
    """The v1 head slice with one or two oedema-like lesions (tissue and label 6) in the white matter."""
    anatomy = brain_anatomy(size, rng)
    tissue = anatomy.tissue.copy()
    x, y = grid((size, size))
    brain = (tissue == 4) | (tissue == 5)
    for _ in range(rng.integers(1, 3)):
        candidates = np.argwhere(tissue == 5)
        centre = candidates[rng.integers(len(candidates))] / (size - 1) * 2 - 1
        lesion = blob([x, y], centre, jitter(rng, (0.11, 0.11), 0.4), rng, 0.3) & brain
        tissue[lesion] = 6
    return Anatomy(tissue, tissue.copy(), anatomy.spacing)


def render_brain_v2(anatomy: Anatomy, domain: str, rng: np.random.Generator) -> np.ndarray:
    """T1-like or T2-like image in [0, 1] with the lesions' own contrast; background exactly 0."""
    return render_brain(anatomy, domain, rng, (BRAIN_T1_V2, BRAIN_T2_V2))


# --- cardiac v2: MR-only local differences on top of the global contrast change ------------


@dataclass(frozen=True)
class CardiacLocalEffects:
    """MR-only, structure-specific appearance of the myocardium, applied to the tissue values
    before bias field and noise:

    - ``texture``: relative amplitude of a fine myocardial texture (fibre orientation and
      susceptibility effects in MR; CT myocardium is smooth);
    - ``contrast``: per subject, the myocardium's value moves a fraction drawn from
      ``[0, contrast]`` of the way to the LV cavity's (oedema, fibrosis and inflow effects
      that change the wall/blood contrast from subject to subject);
    - ``partial_volume``: Gaussian blur (fraction of the in-plane size) of the values of the
      heart, the partial-volume boundaries of thick MR slices.
    """

    texture: float = 0.4
    contrast: float = 0.8
    partial_volume: float = 0.018

    def __call__(self, values: np.ndarray, tissue: np.ndarray, table: np.ndarray, rng: np.random.Generator):
        myocardium, heart = tissue == 6, (tissue == 5) | (tissue == 6)
        shift = rng.uniform(0, self.contrast) * (table[5] - table[6])
        fine = 1 + self.texture * smooth_field(tissue.shape, rng, 0.02)
        values = np.where(myocardium, (values + shift) * fine, values)
        sigma = [self.partial_volume * tissue.shape[0]] * 2 + [0.5 * self.partial_volume * tissue.shape[0]]
        blurred = gaussian_filter(values, sigma=sigma[: tissue.ndim])
        near_heart = gaussian_filter(heart.astype(float), sigma=sigma[: tissue.ndim]) > 0.01
        return np.where(near_heart, blurred, values)


@dataclass(frozen=True)
class CardiacRenderingV2:
    """v1's CT/MR rendering plus the MR-only local effects.

    ``render(anatomy, "ct_local", rng)`` is the CT rendering *with* the MR-only local effects: what
    an ideal global style transfer (a per-tissue lookup from MR to CT values) makes of an MR
    image, the ceiling of any method that aligns the domains globally only.
    """

    base: CTMRRendering
    local: CardiacLocalEffects

    def __call__(self, anatomy: Anatomy, domain: str, rng: np.random.Generator) -> np.ndarray:
        if domain not in ("ct", "mr", "ct_local"):
            raise ValueError(f"Unknown cardiac domain {domain!r}; expected 'ct' or 'mr'.")
        base, tissue, shape = self.base, anatomy.tissue, anatomy.tissue.shape
        table = base.mr if domain == "mr" else base.ct
        texture = 1 + base.texture * smooth_field(shape, rng, 0.03)
        values = table[tissue] * np.where(tissue > 0, texture, 1)
        # v1's draws first, in v1's order (CT: texture, noise; MR: texture, bias, complex noise),
        # then the local effects': "ct" is v1's CT exactly and "ct_local" differs from it only
        # where the local effects act.
        if domain == "mr":
            bias = np.exp(base.bias * smooth_field(shape, rng, 0.3))
            noise = rng.normal(0, base.mr_noise, shape), rng.normal(0, base.mr_noise, shape)
        else:
            noise = rng.normal(0, base.ct_noise, shape)
        if domain != "ct":
            values = self.local(values, tissue, table, rng)
        if domain == "mr":
            return np.hypot(values * bias + noise[0], noise[1]).astype(np.float32)
        return (values + noise).astype(np.float32)


render_cardiac_v2 = CardiacRenderingV2(render_cardiac, CardiacLocalEffects())


# --- abdomen v2: an optional multi-phase T1-weighted MR target -----------------------------

# Dynamic contrast-enhanced T1 (fat-suppressed) per tissue (0 air, fat, muscle, bone, liver,
# right kidney, left kidney, spleen) and phase: pre-contrast, arterial (~20 s: kidneys' cortex
# and spleen enhance first), portal-venous (~70 s: liver enhances, spleen and kidneys even out).
ABDOMEN_MR_PHASES = {
    "pre_contrast": np.array([0.0, 150.0, 300.0, 120.0, 420.0, 260.0, 260.0, 330.0]),
    "arterial": np.array([0.0, 160.0, 330.0, 130.0, 470.0, 900.0, 900.0, 780.0]),
    "portal_venous": np.array([0.0, 170.0, 360.0, 140.0, 740.0, 800.0, 800.0, 650.0]),
}
render_abdomen_phases = {
    phase: CTMRRendering(ABDOMEN_CT, mr, texture=0.05, ct_noise=20.0, bias=0.25, mr_noise=25.0)
    for phase, mr in ABDOMEN_MR_PHASES.items()
}


def render_abdomen_v2(anatomy: Anatomy, domain: str, rng: np.random.Generator) -> np.ndarray:
    """v1's CT and T2-like MR rendering, or a T1-weighted MR phase (a key of ``ABDOMEN_MR_PHASES``)."""
    if domain in ABDOMEN_MR_PHASES:
        return render_abdomen_phases[domain](anatomy, "mr", rng)
    return render_abdomen(anatomy, domain, rng)
