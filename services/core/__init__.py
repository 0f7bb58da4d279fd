"""Code shared by the gateway and the router. Nothing here imports FastAPI."""
