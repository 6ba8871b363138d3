"""The peer network: authenticated links to the other validators and the catch-up protocol."""
