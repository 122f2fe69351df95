"""Past one machine: calibration shards and candidate evaluations as Ray tasks, merged exactly.

Ray is imported only when a cluster is asked for (``--ray`` / ``ray=...``); ``import quant`` never
imports it. Results are byte-identical to one process: histograms are sums of counts on a fixed
dyadic grid (order-independent), and evaluations are pure functions of their inputs.
"""
from quant.distributed.ray_cluster import RayCluster, RayOptions

__all__ = ["RayCluster", "RayOptions"]
