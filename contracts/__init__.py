"""The GridChain state machine: transactions, state and the built-in contracts.
Pure and deterministic: ``apply_block(state, block) -> (state, receipts)``; no I/O,
no clock (time is the block timestamp), no randomness."""
