"""What hostile clients send: small changes of the global arrays, and poisoned ones."""

from __future__ import annotations

import numpy as np


def perturbed(arrays: dict, seed: int, scale: float = 0.01) -> dict:
    rng = np.random.default_rng(seed)
    return {k: (v + scale * rng.standard_normal(v.shape)).astype(np.float32) for k, v in arrays.items()}


def poisoned(arrays: dict, value: float = np.nan) -> dict:
    out = {k: v.copy() for k, v in arrays.items()}
    out[next(iter(out))][...] = value
    return out


def metadata(node: int, message_type: str = "train"):
    """Flower metadata of a reply from ``node`` to the server."""
    import time

    from flwr.app import Metadata

    return Metadata(run_id=1, message_id=f"m{node}", src_node_id=node, dst_node_id=0, reply_to_message_id="i",
                    group_id="1", created_at=time.time(), ttl=60.0, message_type=message_type)


def reply(node: int, arrays: dict | None, metrics: dict, message_type: str = "train"):
    """A Flower reply from ``node`` carrying ``arrays`` (if any) and ``metrics``."""
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    records = {"metrics": MetricRecord(metrics)}
    if arrays is not None:
        records["arrays"] = ArrayRecord({k: torch.from_numpy(v) for k, v in arrays.items()})
    return Message(content=RecordDict(records), metadata=metadata(node, message_type))


def not_a_regular_file(tmp_path, kind: str, name: str):
    """A path that is a FIFO, a folder, or the device ``kind`` itself (e.g. ``/dev/zero``)."""
    import os
    from pathlib import Path

    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path = Path(kind)
    return path
