"""Packaging for S2VNet, a Detectron2 extension for universal (automatic + interactive) volume segmentation.

Detectron2 itself is not on PyPI; ``make install`` (tools/install_detectron2.py) installs it first.
"""

from setuptools import find_packages, setup

setup(
    name="s2vnet",
    version="0.1.0",
    description="S2VNet: clustering propagation for universal medical image segmentation (Detectron2 extension)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["s2vnet", "s2vnet.*"]),
    package_data={"s2vnet.serve": ["static/*.html", "static/*.js", "static/*.css"]},
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "numpy>=1.24",
        "scipy>=1.10",
        "SimpleITK>=2.2",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "timm>=0.9",
        "opencv-python-headless>=4.7",
        "Pillow>=9",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        # Clinical outputs: DICOM-SEG (highdicom on pydicom) and 3D Slicer .seg.nrrd (slicerio).
        "highdicom>=0.28",
        "pydicom>=3.0",
        "slicerio>=1.4",
        # s2vnet-serve, the browser viewer.
        "starlette>=0.40",
        "uvicorn>=0.30",
    ],
    extras_require={
        # medpy and surface-distance are the reference implementations the metric tests compare against.
        # httpx drives the viewer's API in-process; playwright drives Debian's /usr/bin/chromium (no browser download).
        # ruff lints and checks formatting (`make lint`, part of `make test`).
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",
            "medpy==0.5.2",
            "surface-distance==0.1",
            "httpx==0.28.1",
            "playwright==1.65.2",
            "ruff==0.17.5",
        ],
        # 3D peers for projects/S2VNet/benchmark.py (speed comparison only).
        "benchmark": ["monai==1.6.1", "einops>=0.7", "versioneer"],
    },
    entry_points={
        "console_scripts": [
            "s2vnet-build-cache=s2vnet.data.slice_cache:main",
            "s2vnet-demo-data=s2vnet.data.demo_data:main",
            "s2vnet-predict=s2vnet.predict:main",
            "s2vnet-serve=s2vnet.serve.cli:main",
        ]
    },
)
