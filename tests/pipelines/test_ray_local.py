"""Without ``RAY_ADDRESS`` a command starts a Ray of its own: it never joins another `ray start`
cluster on the machine (a plain ``ray.init()`` would, through the cluster's ``ray_current_cluster``
file — a colleague's test cluster included)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ray


def test_ensure_ray_without_ray_address_starts_its_own_ray_beside_a_running_cluster():
    from ray.cluster_utils import Cluster
    from pipelines_support import patched_env

    with patched_env({"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": None}):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        try:
            code = ("import ray\nfrom pipelines.ray_support import ensure_ray\nensure_ray(num_cpus=2)\n"
                    "print(ray.get_runtime_context().gcs_address, ray.cluster_resources().get('CPU'))")
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                                    env=dict(os.environ))
        finally:
            cluster.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    address, cpus = result.stdout.split()[-2:]
    assert address != cluster.address and float(cpus) == 2.0
