"""The local devnet: a supervised cluster of validator processes and the demo trading day."""
