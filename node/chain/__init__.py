"""The chain runtime: the consensus loop, the execution pipeline, mempool, storage and the API backend."""
