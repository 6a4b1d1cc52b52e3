"""ubench: a reproducible benchmark harness for U-Net variants in 2D medical image segmentation."""

__version__ = "0.1.0"
