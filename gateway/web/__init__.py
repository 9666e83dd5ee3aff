"""The gateway's HTTP listener: the data-product catalog in the browser and health endpoints."""
