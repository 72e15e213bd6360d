"""Helpers for the study benchmarks (bench-scale.sh, bench-storage.sh)."""
import os
import re


def mlp_widths(config_text):
    """The first `widths = [...]` of a config, as ints."""
    return [int(x) for x in re.search(r"widths = \[([^\]]*)\]", config_text).group(1).replace(",", " ").split()]


def mlp_params(widths):
    """P of an MLP with biases."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def file_bytes(root, match):
    """Total size of the files under `root` for which match(folder, name) holds."""
    return sum(
        os.stat(os.path.join(dp, f)).st_size
        for dp, _, fs in os.walk(root) for f in fs
        if match(dp, f)
    )
