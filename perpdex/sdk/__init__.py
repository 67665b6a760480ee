"""perpdex SDK: a client over a deployment manifest, and a Python mirror of the on-chain
math that agrees with the contracts to the wei."""
