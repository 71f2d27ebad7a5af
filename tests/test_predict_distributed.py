"""Scale-out: a dask.distributed LocalCluster of 2 workers gives the single-process output
(the trust maps included: the workers fill the TTA spread sink)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import zarr

from _tiny import tiny_generator
from decrappify import api
from decrappify.config.model import ModelInfo
from decrappify.config.predict import PredictConfig
from decrappify.devices import available_cores
from decrappify.errors import InputError
from decrappify.events import run_to_end
from decrappify.io import write_image
from decrappify.models import build_generator, save_model
from decrappify.predict.cluster import open_client
from decrappify.predict.engine import iter_predict_image

distributed = pytest.importorskip("distributed")

SETTINGS = {
    "tile": 32,
    "overlap": 8,
    "batch": 4,
    "device": "cpu",
    "chunk": 32,
    "block": 64,
    "tta": True,
}


def arrays(path):
    return {name: a[...] for name, a in zarr.open_group(path, mode="r").arrays()}


def test_open_client_checks_its_arguments():
    with pytest.raises(InputError, match="either scheduler"):
        with open_client("tcp://127.0.0.1:1", "local"):
            pass
    with pytest.raises(InputError, match=r"cluster must be 'local' \(got 'slurm'\)"):
        with open_client(None, "slurm"):
            pass
    with pytest.raises(InputError, match="workers applies only to cluster='local'"):
        with open_client(None, None, workers=2):
            pass
    with open_client(None, None) as client:
        assert client is None


@pytest.mark.slow
def _dask_scratch() -> set[str]:
    """What dask's default scratch folders hold (in the temporary and working folders)."""
    import glob
    import tempfile

    roots = [os.path.join(tempfile.gettempdir(), "dask-scratch-space"), "dask-scratch-space"]
    return {p for root in roots for p in glob.glob(os.path.join(root, "**"), recursive=True)}


def test_local_cluster_of_two_workers_gives_the_single_process_output(tmp_path):
    from decrappify.predict import network

    cfg = tiny_generator()
    from decrappify.crappify import get_preset

    info = ModelInfo(generator=cfg, crappify=get_preset("em", scale=2).model_dump(mode="json"))
    model = save_model(tmp_path / "x2.safetensors", build_generator(cfg, seed=1).eval(), info)
    digest = network.model_handle(model).digest
    rng = np.random.default_rng(5)
    stack = (rng.random((2, 70, 60)) * 4000).astype(np.uint16)
    source = write_image(stack, tmp_path / "in.zarr", chunks=(1, 32, 32))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_to_end(
            iter_predict_image(
                model, source, tmp_path / "local.zarr", PredictConfig(threads=1, **SETTINGS)
            )
        )
    finally:
        torch.set_num_threads(threads)
    assert local.stats["blocks"] == 2 * 3 * 2
    scratch_before = _dask_scratch()
    with open_client(None, "local", workers=2) as client:
        assert len(client.nthreads()) == 2
        results = api.predict(model, [source], tmp_path / "dist", SETTINGS, client=client)
        loads = client.run(network.load_count, digest)
        worker_threads = client.run(lambda: network.WORKER_TORCH_THREADS)
    assert results[0].ok, results[0].error
    assert _dask_scratch() <= scratch_before  # no dask-scratch-space/*.lock left (issue 20.13)
    assert results[0].info["blocks_computed"] == 12
    got, expected = arrays(tmp_path / "dist" / "in.zarr"), arrays(local.path)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    for trust_map in ("uncertainty", "consistency"):
        got = arrays(tmp_path / "dist" / "in.zarr" / trust_map)
        expected = arrays(local.path / trust_map)
        assert got.keys() == expected.keys() and expected["0"].shape[0] == 2
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
    assert results[0].info["trust"]["uncertainty"]["mean"] == pytest.approx(
        local.stats["trust"]["uncertainty"]["mean"], rel=1e-5
    )
    # each worker read the model file once for its many blocks, and runs torch on its share
    # of the cores (2 cores // 2 workers here)
    assert sorted(loads.values()) in ([1, 1], [0, 1])
    assert set(worker_threads.values()) == {max(1, available_cores() // 2)}
