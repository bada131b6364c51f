"""Which way should DDColor's ab come back to full size: `nearest` (the authors') or `bilinear`?

The network predicts ab at the model input (512x512); the pipeline brings it back to the photo's size and joins
it with the photo's own L. To measure only that step, this takes natural colour photos (scikit-image's bundled
data, a dev dependency), and feeds the pipeline's postprocess the *true* ab at 512x512 (the Lab of the image
resized as the pipeline resizes it for the network): what a perfect network would predict. The colour image that
comes back is compared with the original: CIE76 colour difference (mean and 95th percentile) and RGB PSNR.

Run: .venv/bin/python benchmarks/ab_upsample.py [--input-size 512] [--enlarge 1 3]
`--enlarge 3` also tries each photo made 3x larger first (Lanczos), standing in for large scans, where the
upsampling factor is what it is for a typical 1500-3000 px scan.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from oldphoto.models.ddcolor.pipeline import AB_UPSAMPLE_MODES, postprocess, preprocess

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle")
RESULTS = Path(__file__).parent / "results" / "ab_upsample.json"


def natural_photos() -> dict[str, np.ndarray]:
    from skimage import data

    photos = {}
    for name in PHOTOS:
        image = getattr(data, name)()
        photos[name] = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
    return photos


def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((rgb / 255.0).astype(np.float32), cv2.COLOR_RGB2Lab)


def perfect_ab(rgb: np.ndarray, input_size: int) -> torch.Tensor:
    """The ab a perfect network would predict: that of the image as the pipeline resizes it for the network."""
    small = cv2.resize((rgb / 255.0).astype(np.float32), (input_size, input_size))
    ab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)[:, :, 1:]
    return torch.from_numpy(ab.transpose(2, 0, 1).copy()).unsqueeze(0)


def scores(original: np.ndarray, restored: np.ndarray) -> dict[str, float]:
    delta_e = np.linalg.norm(lab(original) - lab(restored), axis=-1)
    mse = np.mean((original.astype(np.float64) - restored.astype(np.float64)) ** 2)
    return {
        "delta_e_mean": round(float(delta_e.mean()), 3),
        "delta_e_p95": round(float(np.percentile(delta_e, 95)), 3),
        "psnr_db": round(float(10 * np.log10(255.0**2 / mse)), 2),
    }


def measure(rgb: np.ndarray, input_size: int) -> dict[str, dict[str, float]]:
    prepared = preprocess(rgb, input_size)
    ab = perfect_ab(rgb, input_size)
    return {mode: scores(rgb, postprocess(prepared, ab, mode)) for mode in AB_UPSAMPLE_MODES}  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--enlarge", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    rows = []
    for factor in args.enlarge:
        for name, photo in natural_photos().items():
            if factor != 1:
                photo = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_LANCZOS4)
            result = measure(photo, args.input_size)
            rows.append({"photo": name, "enlarge": factor, "size": f"{photo.shape[1]}x{photo.shape[0]}", **result})
    print("| photo | size | nearest ΔE mean / p95 | bilinear ΔE mean / p95 | nearest PSNR | bilinear PSNR |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        n, b = row["nearest"], row["bilinear"]
        print(
            f"| {row['photo']}{' x' + str(row['enlarge']) if row['enlarge'] != 1 else ''} | {row['size']} "
            f"| {n['delta_e_mean']:.2f} / {n['delta_e_p95']:.2f} | {b['delta_e_mean']:.2f} / {b['delta_e_p95']:.2f} "
            f"| {n['psnr_db']:.2f} | {b['psnr_db']:.2f} |"
        )
    for factor in args.enlarge:
        group = [r for r in rows if r["enlarge"] == factor]
        better = sum(r["bilinear"]["delta_e_mean"] < r["nearest"]["delta_e_mean"] for r in group)
        print(f"enlarge x{factor}: bilinear has the lower mean ΔE on {better} of {len(group)} photos")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"input_size": args.input_size, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
