"""The embedded sample set: natural photographs that ship inside scikit-image's wheel.

No data set can be downloaded at run time, so the demo, the tests and the shipped model's training data
come from these files. Synthetic images of that folder (chessboards, logos, phantoms, text) are left out.
"""

from __future__ import annotations

from pathlib import Path

NAMES = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)


def data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def sample_paths() -> list[Path]:
    """Paths of the sample images, in a fixed order."""
    root = data_dir()
    return [root / name for name in NAMES if (root / name).is_file()]
