"""C-LBFT: a pure, deterministic DiemBFT-v4 (2-chain HotStuff) state machine with
credit-weighted leader rotation. Nothing in this package does I/O, reads a clock or
draws randomness; the node feeds it events and carries out the actions it returns."""
