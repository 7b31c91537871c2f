"""Prompt-conditioned 3D segmentation for the SegFM3D interactive challenge.

Data flows one way: case_io -> prompts -> roi -> network -> fusion -> case_io.write.
"""
