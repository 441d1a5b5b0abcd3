"""What this machine computes fast, for the `auto` values of the precision settings (extraction's --precision,
training's --mixed_precision): one place that reads the GPU's compute capability and the CPU's flags."""

from __future__ import annotations

from typing import Optional


def gpu_half_precision() -> tuple[Optional[str], str]:
    """(None when there is no GPU, else "bfloat16", "float16" or "float32": the half precision its tensor cores
    run, and why). TensorFlow is imported here, not at module load."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None, "no GPU"
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    if capability >= (8, 0):
        return "bfloat16", f"GPU compute capability {capability} has bfloat16 tensor cores"
    if capability >= (7, 0):
        return "float16", f"GPU compute capability {capability} has float16 tensor cores"
    return "float32", f"GPU compute capability {capability} has no tensor cores"


def cpu_bfloat16() -> list[str]:
    """The CPU's bfloat16 instructions (AVX512_BF16, AMX), from /proc/cpuinfo; empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return []
    return sorted(flags & {"avx512_bf16", "amx_bf16"})
