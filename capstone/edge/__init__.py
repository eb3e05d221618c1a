"""The edge: what stands between the internet and the gateway."""
