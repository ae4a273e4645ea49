"""How the benchmarks name the machine they ran on: the CPU's model name and whether it runs
bf16 natively (AMX / AVX512-BF16, the check ``--precision auto`` makes), since the bf16 figures
(and their ratios) differ several-fold between CPUs that have it and CPUs that do not."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    from ddn_cli.devices import cpu_has_fast_bf16

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                platform.processor() or platform.machine())
    return f"{name} ({'native bf16' if cpu_has_fast_bf16() else 'no native bf16'})"
