"""The authors' colorization pipeline, written here from its published description, as the yardstick.

piddnad/DDColor's `ColorizationPipeline.process` (and ModelScope's DDColor pipeline, which is the same) on a BGR
image as OpenCV reads it: float32 in 0..1; L of the full image (cv2 Lab); the image resized to the model input
with cv2.resize's defaults; its L alone as a gray RGB image (a = b = 0) into the network; the predicted ab
brought to full size by `F.interpolate` with its default mode (nearest); joined with the full L; Lab to BGR;
x255, rounded, uint8.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812


def authors_pipeline(rgb: np.ndarray, network: torch.nn.Module, input_size: int) -> np.ndarray:
    """RGB uint8 in, RGB uint8 out; the work in between on BGR, as the authors do it."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    height, width = bgr.shape[:2]
    image = (bgr / 255.0).astype(np.float32)
    full_l = cv2.cvtColor(image, cv2.COLOR_BGR2Lab)[:, :, :1]
    small_l = cv2.cvtColor(cv2.resize(image, (input_size, input_size)), cv2.COLOR_BGR2Lab)[:, :, :1]
    gray_lab = np.concatenate((small_l, np.zeros_like(small_l), np.zeros_like(small_l)), axis=-1)
    gray_rgb = cv2.cvtColor(gray_lab, cv2.COLOR_LAB2RGB)
    batch = torch.from_numpy(gray_rgb.transpose((2, 0, 1))).float().unsqueeze(0)
    with torch.inference_mode():
        ab = network(batch).cpu()
    full_ab = F.interpolate(ab, size=(height, width))[0].float().numpy().transpose(1, 2, 0)
    out_bgr = cv2.cvtColor(np.concatenate((full_l, full_ab), axis=-1), cv2.COLOR_LAB2BGR)
    return cv2.cvtColor((out_bgr * 255.0).round().astype(np.uint8), cv2.COLOR_BGR2RGB)
