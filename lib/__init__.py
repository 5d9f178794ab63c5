"""Cream of the Crop (NeurIPS 2020) on PaddlePaddle: supernet, search, searched child networks."""
