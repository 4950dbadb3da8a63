"""Fast preprocessing: one PIL resample straight to the model's input crop.

Geometry equals torchvision's ``Resize(resize_size)`` + ``CenterCrop(crop_size)``
(the weights' own ``transforms()``), but only the cropped region is resampled and the
result stays ``uint8``; scaling and normalisation run inside the model graph
(:class:`Normalised`), batched, on whatever device runs the model.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def crop_box(width: int, height: int, resize: int, crop: int) -> tuple[float, float, float, float]:
    """Source-pixel box that Resize(shorter side -> resize) + CenterCrop(crop) keeps."""
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_w, new_h = int(resize * width / height), resize
    sx, sy = new_w / width, new_h / height
    left, top = int(round((new_w - crop) / 2.0)), int(round((new_h - crop) / 2.0))
    return (left / sx, top / sy, (left + crop) / sx, (top + crop) / sy)


def fit_box(width: int, height: int, crop: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(size, offset)`` of a picture scaled to fit a ``crop`` square and centred in it (``"pad"``)."""
    scale = crop / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return size, ((crop - size[0]) // 2, (crop - size[1]) // 2)


def placement(width: int, height: int, resize: int, crop: int, geometry: str = "crop-box") -> tuple[float, ...]:
    """Where a ``width`` x ``height`` picture lands in the model's ``crop`` square, as :func:`resize_crop` puts it.

    Returns ``(ax, bx, ay, by)``: the input coordinate of the picture's point ``(x, y)`` (in
    pixels, continuous) is ``(ax * x + bx, ay * y + by)``. Input coordinates outside
    ``[0, crop)`` were cropped away (``"crop-box"``); a padded picture lands whole.
    """
    if geometry in ("pad", "pad-edge"):
        (w, h), (left, top) = fit_box(width, height, crop)
        return w / width, float(left), h / height, float(top)
    x0, y0, x1, y1 = crop_box(width, height, resize, crop)
    ax, ay = crop / (x1 - x0), crop / (y1 - y0)
    return ax, -x0 * ax, ay, -y0 * ay


def edge_colour(image: Image.Image) -> tuple[int, int, int]:
    """Median colour of the picture's outermost rows and columns (its background)."""
    a = np.asarray(image)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))


def resize_crop(
    image: Image.Image, resize: int, crop: int, interpolation: str = "bilinear", geometry: str = "crop-box"
) -> np.ndarray:
    """RGB PIL image -> ``(crop, crop, 3)`` uint8 array.

    ``geometry="crop-box"`` keeps what the weights' transforms keep (the centre crop);
    ``"pad"`` keeps the whole picture, scaled to fit and centred on white, which keeps
    the top and bottom of tall product photos; ``"pad-edge"`` does the same on the
    picture's own background colour (the median of its border pixels), so the product
    sits on one seamless background.
    """
    if geometry in ("pad", "pad-edge"):
        size, offset = fit_box(image.width, image.height, crop)
        fill = edge_colour(image) if geometry == "pad-edge" else (255, 255, 255)
        canvas = Image.new("RGB", (crop, crop), fill)
        canvas.paste(image.resize(size, _RESAMPLE[interpolation]), offset)
        return np.asarray(canvas, dtype=np.uint8)
    box = crop_box(image.width, image.height, resize, crop)
    out = image.resize((crop, crop), _RESAMPLE[interpolation], box=box)
    return np.asarray(out, dtype=np.uint8)


def normalised(model, mean, std):
    """Wrap ``model`` so it takes ``(n, H, W, 3)`` uint8 and normalises inside the graph."""
    import torch

    class Normalised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("scale", (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1))
            self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.permute(0, 3, 1, 2).float() * self.scale - self.shift
            return self.model(x.contiguous(memory_format=torch.channels_last))

    return Normalised().eval()
