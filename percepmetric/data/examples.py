"""A built-in example triplet, made from scikit-image's bundled photos (no download)."""

from __future__ import annotations

import io

import numpy as np
import torch


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def example_triplet(size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ref, a, b)``, each ``(1,3,size,size)`` in [0, 1]: a crop of skimage's astronaut,
    A = that crop as JPEG at quality 10, B = that crop blurred with a Gaussian of sigma 1.5.
    Deterministic.
    """
    from scipy.ndimage import gaussian_filter
    from skimage import data

    photo = data.astronaut()
    top, left = 20, 130
    ref = photo[top : top + size, left : left + size]
    a = _jpeg(ref, quality=10)
    b = np.clip(np.round(gaussian_filter(ref.astype(np.float64), sigma=(1.5, 1.5, 0))), 0, 255).astype(np.uint8)

    def tensor(im: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(im.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]

    return tensor(ref), tensor(a), tensor(b)
