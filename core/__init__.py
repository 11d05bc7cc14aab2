"""Engine: style-transfer loss and pixel optimisation through ONNX Runtime (never imports torch)."""
