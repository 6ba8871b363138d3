"""The GridChain state machine: transactions, state and the built-in contracts.
Pure and deterministic: ``apply_block(state, block) -> (state, receipts)``; no I/O,
no clock (time is the block timestamp), no randomness.

Map (one role per module):

* ``transactions`` — ``Tx`` and its kinds, signed wire form, signatures, JSON form;
* ``errors`` — ``TxError`` and the stable error codes of failed receipts;
* ``genesis`` — ``Genesis`` with every parameter, validation;
* ``initial`` — ``initial_state``: the state before block 1;
* ``state`` — typed tables, per-transaction snapshots, the incremental state root,
  ``encode_state`` / ``decode_state``;
* ``executor`` — ``apply_block`` (system steps, then transactions), ``check_tx``;
* ``registry``, ``token``, ``market``, ``metering``, ``settlement``, ``dispatch``,
  ``notary``, ``channels`` — the contracts (MARKET.md for the market rules,
  CHANNELS.md for payment channels);
* ``records`` — what each block's Merkle leaves are; ``traceability`` — the tree,
  proofs and the lineage of a trade.
"""
