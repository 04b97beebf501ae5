"""sim: the treasure-hunt simulation as pure numba kernels over struct-of-arrays."""
