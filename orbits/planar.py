"""Planar representation: every element of a planar group as a 3×3 matrix in pixel coordinates.

Convention:
    - Pixel-centre coordinates: pixel ``(row i, column j)`` is the point ``(x=j, y=i)``; x right,
      y down; the true image centre is ``((W-1)/2, (H-1)/2)``.
    - A matrix ``M`` maps a point of the input image to where it lands in the output image;
      the output pixel ``p`` takes the input value at ``M⁻¹ p``.
    - Angles in degrees, positive = counter-clockwise as displayed.
    - float64 throughout, so that exact elements are recognised exactly.

Each group builds its own matrices (``Group.planar``) from these helpers; this module knows
no group.

Perspective uses *camera coordinates*: the pinhole camera ``K = [[f, 0, cx], [0, f, cy], [0, 0, 1]]``
with focal length ``f`` = the image diagonal ``hypot(H, W)`` in pixels, so a pixel ``p`` is the
ray ``K⁻¹ p`` and a homography ``H`` of camera coordinates acts on pixels as ``K H K⁻¹``
(:func:`from_camera`). Two homographies of camera coordinates follow (derived in
:func:`plane_tilt` and :func:`camera_rotation_matrices`):

- *object pivot* ``[r1 r2 e3]``: the image printed on a plane through the image centre, rotated
  about that centre by ``R`` and seen by the fixed camera (ImageNet-P's tilt, a sheet of paper
  turned in front of the camera): the centre stays put and the content foreshortens;
- *camera pivot* ``R``: the camera turned about its own optical centre by ``R``; the whole
  image slides (the centre moves ``f·tan θ``) as well as foreshortening.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def centre(size: tuple[int, int]) -> tuple[float, float]:
    """``(cx, cy)`` of an image of ``size`` (H, W) in pixel-centre coordinates."""
    h, w = size
    return (w - 1) / 2.0, (h - 1) / 2.0


def about_centre(linear: Tensor, size: tuple[int, int]) -> Tensor:
    """``T(c) · L · T(-c)`` for a batch of 2×2 linear maps ``L``: the map acts about the centre."""
    cx, cy = centre(size)
    g = linear.shape[0]
    m = torch.zeros(g, 3, 3, dtype=torch.float64)
    m[:, :2, :2] = linear
    c = torch.tensor([cx, cy], dtype=torch.float64)
    m[:, :2, 2] = c - linear @ c
    m[:, 2, 2] = 1.0
    return m


def rotation_matrices(angles_deg: Tensor, size: tuple[int, int]) -> Tensor:
    """Counter-clockwise as displayed (y axis down) about the image centre."""
    theta = torch.deg2rad(torch.as_tensor(angles_deg, dtype=torch.float64))
    # Snap cos/sin of multiples of 90 degrees to exact 0/±1 so they are recognised as exact.
    cos, sin = torch.cos(theta), torch.sin(theta)
    cos = torch.where(cos.abs() < 1e-12, torch.zeros_like(cos), cos)
    sin = torch.where(sin.abs() < 1e-12, torch.zeros_like(sin), sin)
    lin = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    return about_centre(lin, size)


def translation_matrices(dx: Tensor, dy: Tensor) -> Tensor:
    """``(G, 3, 3)`` translations by ``dx`` (right) and ``dy`` (down) pixels."""
    m = torch.eye(3, dtype=torch.float64).repeat(len(dx), 1, 1)
    m[:, 0, 2] = dx
    m[:, 1, 2] = dy
    return m


def scale_matrices(factors: Tensor, size: tuple[int, int]) -> Tensor:
    """Isotropic zoom by ``factors`` about the image centre (> 1 enlarges)."""
    lin = torch.zeros(len(factors), 2, 2, dtype=torch.float64)
    lin[:, 0, 0] = factors
    lin[:, 1, 1] = factors
    return about_centre(lin, size)


def camera_matrix(size: tuple[int, int]) -> Tensor:
    """The pinhole camera ``K`` of an image of ``size`` (H, W): focal length = the diagonal, the
    principal point = the image centre."""
    h, w = size
    cx, cy = centre(size)
    f = math.hypot(h, w)
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def from_camera(homographies: Tensor, size: tuple[int, int]) -> Tensor:
    """``K H K⁻¹``: homographies ``(G, 3, 3)`` of camera coordinates as pixel matrices, scaled to
    ``det = 1`` (the identity stays the exact identity). ``H ↦ K H K⁻¹`` is a homomorphism, so
    products of elements become products of pixel matrices."""
    k = camera_matrix(size)
    m = k @ torch.as_tensor(homographies, dtype=torch.float64) @ torch.linalg.inv(k)
    det = torch.linalg.det(m)
    return m / (torch.sign(det) * det.abs().pow(1.0 / 3.0))[..., None, None]


def plane_tilt(rotations: Tensor) -> Tensor:
    """``[r1 r2 e3]``: the homography of camera coordinates that tilts the image plane by ``R``
    ``(G, 3, 3)`` about the image centre (the *object pivot* of ``perspective``).

    Derivation. Put the image on the plane ``z = f`` in front of the camera, a pixel ``(x, y)``
    at the plane point ``(u, v, 0) = (x − cx, y − cy, 0)`` of the plane's own frame, whose
    origin is the image centre. Rotate the plane by ``R`` about that origin and translate it by
    ``(0, 0, f)``: ``X = R (u, v, 0)ᵀ + (0, 0, f)ᵀ = u r1 + v r2 + f e3``. Project with ``K``:
    ``p ~ K X = K [r1 r2 f·e3] (u, v, 1)ᵀ``. With ``(u, v, 1)ᵀ = diag(f, f, 1) K⁻¹ (x, y, 1)ᵀ``,
    ``p ~ K [r1 r2 f·e3] diag(f, f, 1) K⁻¹ (x, y, 1)ᵀ = f · K [r1 r2 e3] K⁻¹ (x, y, 1)ᵀ``.

    Convention:
        - Camera coordinates: x right, y down, z forward (along the optical axis); the plane
          starts facing the camera at distance ``f`` (focal length = image diagonal), so
          ``R = I`` maps the image to itself and the image centre is a fixed point of every
          tilt (``[r1 r2 e3] e3 = e3``).
        - ``R`` rotates the plane (the object), not the camera: with ``R = R_y(yaw)``, yaw > 0
          brings the plane's right half nearer (it grows) and its left half away; with
          ``R = R_x(pitch)``, pitch > 0 brings the top half nearer and the bottom half away.
        - Foreshortening: the area scale at the centre is ``det [r1 r2 e3] = r33`` (the cosine
          of the angle between the plane's normal and the optical axis).
        - Tilts are not closed under composition (tilting the picture of a tilted plane is
          not a tilt of the plane; no non-trivial homomorphism of SO(3) into the homographies
          fixes a point), so the group they live in is the group of homographies itself.
        - Defined for planes that still face the camera (``r33 > 0``).
    """
    r = torch.as_tensor(rotations, dtype=torch.float64)
    out = r.clone()
    out[..., :, 2] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    return out


def camera_rotation_matrices(rotations: Tensor, size: tuple[int, int]) -> Tensor:
    """``K R K⁻¹``, scaled so that ``m[2, 2] = 1``: the camera turned about its own optical centre
    (pinhole, focal = image diagonal; the *camera pivot* of ``perspective``). The pixel of the
    ray ``d`` moves to the pixel of the ray ``R d``, whatever the scene's depth, so the homography
    of camera coordinates is ``R`` itself and the image centre moves by ``f·tan θ``."""
    m = from_camera(rotations, size)
    return m / m[:, 2:3, 2:3]


def transform_points(matrices: Tensor, points: Tensor) -> Tensor:
    """Apply ``(G, 3, 3)`` matrices to ``(..., 2)`` pixel coordinates: ``(G, ..., 2)``."""
    pts = torch.as_tensor(points, dtype=torch.float64)
    ones = torch.ones(*pts.shape[:-1], 1, dtype=torch.float64)
    hom = torch.cat([pts, ones], -1)
    out = torch.einsum("gij,...j->g...i", matrices.to(torch.float64), hom)
    return out[..., :2] / out[..., 2:3]


__all__ = ["centre", "about_centre", "rotation_matrices", "translation_matrices", "scale_matrices",
           "camera_matrix", "from_camera", "plane_tilt", "camera_rotation_matrices", "transform_points"]
