"""The HTTP layer: FastAPI routers that translate HTTP to interactions and back."""
