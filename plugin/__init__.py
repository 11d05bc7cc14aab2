"""onnxstyle.plugin — installed from the repository's top-level `plugin/` folder (pyproject.toml maps
`onnxstyle.plugin` to `plugin/`, and `onnxstyle.plugin.gimp` to `gimp/`).

The front ends of the engine: the `onnxstyle` command, the editor worker process and its protocol,
the GIMP installer. See DEVELOPERS.md.
"""
