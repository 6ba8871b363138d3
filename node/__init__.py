"""The GridChain node: the asyncio runtime around the pure consensus core and
contracts — transport, mempool, storage, driver, REST API, metrics and the CLI."""
