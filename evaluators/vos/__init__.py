"""Video object segmentation: the DAVIS 2017 folder layout, a synthetic video generator and J&F."""
