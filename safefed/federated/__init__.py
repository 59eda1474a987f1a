"""The three safeguards around a federated round, for Flower or a plain Python loop.

``client``: filter -> revise a client's records before local training; ``updates``: LoRA updates as
arrays, validity checks, FedAvg; ``gate``: the server-side AdvBench update gate; ``audit``: the
append-only decision log; ``flower``: the Flower strategy wrapper and client mod.
"""
