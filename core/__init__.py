"""onnxstyle.core — installed from the repository's top-level `core/` folder (pyproject.toml maps
`onnxstyle.core` to `core/`; there is no `onnxstyle/` folder).

The engine: the shipped models, ONNX Runtime sessions and devices, the pixel optimisers, multi-scale
and tiling, colour preservation and image files. Never imports torch. See DEVELOPERS.md.
"""
