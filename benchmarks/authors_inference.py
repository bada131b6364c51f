"""The authors' inference script, as a person runs it: piddnad/DDColor's `infer.py` with its `ColorizationPipeline`.

A standalone script (it imports nothing from this project), the yardstick of benchmarks/cold_start.py: build the
DDColor network, load the weights, then for each image in the input folder: cv2.imread, float32 in 0..1, L of the
full image (cv2 Lab), the image resized to the model input, its L alone as a gray RGB image into the network,
`F.interpolate` of the predicted ab to full size (nearest, its default), joined with the full L, Lab to BGR, x255,
rounded, uint8, cv2.imwrite under the same name in the output folder. The same steps as tests/models/reference.py
(which works on RGB in and out); the network is spandrel_extra_arches' copy of the authors' DDColor, built with the
authors' arguments (their `input_size` too, which sizes a dry run of the encoder when the network is built), since
the authors' repository is not installed here.

    python benchmarks/authors_inference.py --model_path W.pth --input FOLDER --output FOLDER [--input_size 512]
        [--model_size tiny|large]
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from spandrel_extra_arches.architectures.DDColor import DDColor
from tqdm import tqdm

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageColorizationPipeline:
    def __init__(self, model_path: str, input_size: int = 256, model_size: str = "large") -> None:
        self.input_size = input_size
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.encoder_name = "convnext-t" if model_size == "tiny" else "convnext-l"
        self.decoder_type = "MultiScaleColorDecoder"
        self.model = DDColor(
            encoder_name=self.encoder_name,
            decoder_name=self.decoder_type,
            input_size=[self.input_size, self.input_size],
            num_output_channels=2,
            last_norm="Spectral",
            do_normalize=False,
            num_queries=100,
            num_scales=3,
            dec_layers=9,
        ).to(self.device)
        self.model.load_state_dict(torch.load(model_path, map_location=torch.device("cpu"))["params"], strict=False)
        self.model.eval()

    @torch.no_grad()
    def process(self, img: np.ndarray) -> np.ndarray:
        self.height, self.width = img.shape[:2]
        img = (img / 255.0).astype(np.float32)
        orig_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]  # (h, w, 1)

        # resize rgb image -> lab -> get grey -> rgb
        img = cv2.resize(img, (self.input_size, self.input_size))
        img_l = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[:, :, :1]
        img_gray_lab = np.concatenate((img_l, np.zeros_like(img_l), np.zeros_like(img_l)), axis=-1)
        img_gray_rgb = cv2.cvtColor(img_gray_lab, cv2.COLOR_LAB2RGB)

        tensor_gray_rgb = torch.from_numpy(img_gray_rgb.transpose((2, 0, 1))).float().unsqueeze(0).to(self.device)
        output_ab = self.model(tensor_gray_rgb).cpu()  # (1, 2, self.height, self.width)

        # resize ab -> concat original l -> rgb
        output_ab_resize = F.interpolate(output_ab, size=(self.height, self.width))[0].float().numpy().transpose(1, 2, 0)
        output_lab = np.concatenate((orig_l, output_ab_resize), axis=-1)
        output_bgr = cv2.cvtColor(output_lab, cv2.COLOR_LAB2BGR)
        return (output_bgr * 255.0).round().astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_path", type=str, required=True)
    parser.add_argument("--input", type=str, required=True, help="a folder of images")
    parser.add_argument("--output", type=str, required=True, help="the folder the results are written to")
    parser.add_argument("--input_size", type=int, default=512)
    parser.add_argument("--model_size", type=str, default="large", choices=["tiny", "large"])
    args = parser.parse_args(argv)

    print(f"Output path: {args.output}")
    os.makedirs(args.output, exist_ok=True)
    img_list = sorted(name for name in os.listdir(args.input) if name.lower().endswith(IMAGE_SUFFIXES))
    assert len(img_list) > 0, f"no images in {args.input}"

    colorizer = ImageColorizationPipeline(model_path=args.model_path, input_size=args.input_size, model_size=args.model_size)
    for name in tqdm(img_list):
        img = cv2.imread(os.path.join(args.input, name))
        image_out = colorizer.process(img)
        cv2.imwrite(os.path.join(args.output, name), image_out)


if __name__ == "__main__":
    main()
