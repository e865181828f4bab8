"""Weakly-supervised semantic segmentation: from image-level labels to pixel labels.

One module per stage (make_cams, evaluate, ...) with pure functions on arrays at the core;
shared I/O in imageio (pixels), artifacts (HDF5) and manifest (image lists).
"""
