"""The `onnxstyle` command's subcommands, one module each (see plugin/cli.py)."""
