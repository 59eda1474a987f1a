"""The scoring layer shared by evaluation judges and training-data filters.

``encoder``: sentence embeddings (all-MiniLM-L6-v2 by default) with a duplicate cache;
``heads``: small linear heads fitted on embeddings, saved as JSON artifacts;
``guard``: Llama-Guard-style prompt building, output parsing and a generative classifier.
"""
