"""Exporter: VGG19 as ONNX feature and feature-and-gradient graphs (the only part that imports torch)."""
