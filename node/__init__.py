"""The GridChain node: the asyncio runtime around the pure consensus core and contracts —
the peer network (``net``), the chain runtime (``chain``), the REST API (``api``),
operations (``ops``), the local devnet (``devnet``), the CLI and the simulator; map in
docs/ARCHITECTURE.md."""
