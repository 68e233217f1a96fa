"""BYOL training and the Encoder. Imports nothing of ours."""
