"""Our service with the lease holder's rest after a computation set by BENCH_CPU_SHARE (bench/recompute_serving.py).

The rest (bento/monitoring/live_performance.py's CPU_SHARE: 100 times the computation's CPU time) is what keeps
recomputations at 1% of a core on average; it is not what is measured. With BENCH_CPU_SHARE=1 the holder rests only
as long as its last computation took, so the benchmark can ask for a recomputation every few tens of seconds.
Run: `bentoml serve bench.servers.recompute_app:ReadmissionService` from the project root.
"""

from __future__ import annotations

import os

from bento.monitoring import live_performance
from bento.service import ReadmissionService

live_performance.CPU_SHARE = float(os.environ.get("BENCH_CPU_SHARE", live_performance.CPU_SHARE))

__all__ = ["ReadmissionService"]
