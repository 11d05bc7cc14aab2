"""ORT's memory arena, which core/engine.py's CUDA tile budget counts (ARENA_GB_PER_MPX): a session
keeps its last run's activations after the run, and the run option that shrinks the arena gives them
back. Shown on the CPU provider's arena ("cpu:0"; a CUDA session's is "gpu:0")."""

import sys

import numpy as np
import onnxruntime as ort
import pytest

SHRINK = "memory.enable_memory_arena_shrinkage"  # onnxruntime_run_options_config_keys.h


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/statm")
def test_the_arena_keeps_a_run_s_memory_until_shrunk(style_graph_avg):
    session = style_graph_avg._features
    names = [o.name for o in session.get_outputs()]
    image = {"image": np.random.default_rng(0).random((1, 3, 384, 384), dtype=np.float32)}
    session.run(names, image)
    kept = _rss()
    shrink = ort.RunOptions()
    shrink.add_run_config_entry(SHRINK, "cpu:0")
    session.run(names, image, shrink)
    released = kept - _rss()
    assert released > 30e6, f"released {released / 1e6:.0f} MB"  # 384 px features: ~100 MB
    session.run(names, image)  # the next plain run takes it again: a shrink costs re-allocation
    assert kept - _rss() < released / 2
    wrong = ort.RunOptions()
    wrong.add_run_config_entry(SHRINK, "gpu:0")  # a device without an arena in this session
    with pytest.raises(Exception, match="arena"):
        session.run(names, image, wrong)
