"""ESPNetv2 Cityscapes segmenter using the MIT-licensed weights shipped in `structvpr/assets/espnetv2`."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from structvpr.io_utils import sha256_of_file
from structvpr.segment.classes import IGNORE_ID, NUM_CITYSCAPES_CLASSES
from structvpr.segment.espnetv2_net import ESPNetv2Segmentation
from structvpr.segment.segmenter import Segmenter

# sha256 of the shipped files (from the upstream model zoo; see assets/espnetv2/README.md).
SHIPPED_WEIGHTS: dict[float, tuple[str, str]] = {
    2.0: ("espnetv2_s_2.0_city_1024x512.pth", "a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8"),
    0.5: ("espnetv2_s_0.5_city_1024x512.pth", "9412a86a30f137540ef945d08da3cb7191448956c56c41a64210dab443a9f65f"),
}
DEFAULT_INPUT_SIZE = (256, 512)  # (H, W); the weights were trained at 512x1024, half is 10x faster
NUM_OUTPUTS = NUM_CITYSCAPES_CLASSES + 1  # 19 trainIds + background
SIZE_MULTIPLE = 16  # four exact halvings, so decoder up-sampling meets the encoder skips


def check_input_size(height: int, width: int) -> None:
    """ValueError unless both sides are positive multiples of 16."""
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(
            f"ESPNetv2 needs input sides that are multiples of {SIZE_MULTIPLE}, got {width}x{height} (WxH)"
        )


def shipped_weights_path(width: float) -> Path:
    """Path of the packaged weight file for width s (2.0 or 0.5)."""
    if width not in SHIPPED_WEIGHTS:
        raise ValueError(
            f"no shipped ESPNetv2 Cityscapes weights for width s={width}; available: {sorted(SHIPPED_WEIGHTS)}"
        )
    return Path(str(resources.files("structvpr") / "assets" / "espnetv2" / SHIPPED_WEIGHTS[width][0]))


def load_espnetv2(
    width: float = 2.0, weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> ESPNetv2Segmentation:
    """ESPNetv2 in eval mode with Cityscapes weights loaded strictly (20 output channels).

    `weights=None` uses the shipped file and checks its sha256 first, so a damaged install fails
    with a clear message instead of producing silent garbage.
    """
    width = float(width)
    network = ESPNetv2Segmentation(width, num_classes=NUM_OUTPUTS)
    if weights is None:
        weights = shipped_weights_path(width)
        expected = SHIPPED_WEIGHTS[width][1]
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: shipped ESPNetv2 weights are missing (broken install?)")
        if sha256_of_file(weights) != expected:
            raise RuntimeError(f"{weights}: sha256 differs from the shipped file (corrupted install?)")
    weights = Path(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for non-checkpoint files
        raise RuntimeError(f"{weights}: cannot read ESPNetv2 weights ({type(error).__name__}: {error})") from error
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RuntimeError(f"{weights}: not ESPNetv2 s={width} Cityscapes weights ({error})") from error
    return network.to(device).eval()


class ESPNetv2Segmenter(Segmenter):
    """ESPNetv2 (s = 2.0 or 0.5) trained on Cityscapes; background is mapped to ignore (255)."""

    name = "espnetv2"

    def __init__(
        self,
        width: float = 2.0,
        input_size: Sequence[int] = DEFAULT_INPUT_SIZE,
        device: str | torch.device = "cpu",
        weights: str | Path | None = None,
    ) -> None:
        self.width = float(width)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        check_input_size(*self.input_size)
        self.device = torch.device(device)
        # channels_last roughly halves CPU time of the depth-wise/grouped convolutions (measured)
        self.network = load_espnetv2(self.width, weights, self.device).to(memory_format=torch.channels_last)
        # 20 outputs -> trainIds: 0..18 unchanged, background (19) -> ignore
        lookup = torch.arange(NUM_OUTPUTS, dtype=torch.uint8)
        lookup[NUM_CITYSCAPES_CLASSES] = IGNORE_ID
        self._to_train_id = lookup.to(self.device)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 [B, 3, H, W] normalised -> float32 [B, 20, H, W] (index 19 = background)."""
        check_input_size(*batch.shape[2:])
        with torch.inference_mode():
            batch = batch.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            return self.network(batch)

    def labels_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """float [B, 20, H, W] -> uint8 [B, H, W] trainIds (argmax; background -> 255)."""
        return self._to_train_id.to(logits.device)[logits.argmax(1)]

    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        check_input_size(*batch.shape[2:])
        return self.labels_from_logits(self.network(batch.contiguous(memory_format=torch.channels_last)))
