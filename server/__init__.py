"""The model's HTTP face (serve.py): nnInteractive's remote protocol for napari and 3D Slicer."""
