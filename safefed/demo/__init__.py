"""``safefed demo``: the source paper's experiment in miniature, one federated run per arm.

``config`` holds the schema (presets in ``demos/*.yaml``) and the arms (a global model is measured by
``safefed.evaluation.headline``), ``runner`` the runs themselves (shared work once, resume from checkpoints),
``report`` the files, plots and terminal table, ``cli`` the command.
"""

__all__ = ["ARMS", "DemoConfig", "load_demo_config", "run_demo"]


def __getattr__(name: str):  # lazy: `safefed --help` must not import Flower
    if name in ("ARMS", "DemoConfig", "load_demo_config"):
        from . import config

        return getattr(config, name)
    if name == "run_demo":
        from .runner import run_demo

        return run_demo
    raise AttributeError(name)
