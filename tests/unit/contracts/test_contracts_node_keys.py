"""``set_node_key``: an active account names the key its own node proves on the peer network."""

from __future__ import annotations

from contracts import errors
from contracts.registry import node_key_account
from contracts.state import decode_state, encode_state
from contracts.transactions import SetNodeKey, SuspendAccount

from .helpers import Chain, check_invariants


def test_an_active_account_names_changes_and_clears_its_node_key() -> None:
    chain = Chain()
    key_a, key_b = chain.signers["outsider"].public_key, chain.signers["meter"].public_key
    root_before = chain.state.root
    chain.ok(chain.tx("ret", SetNodeKey(node_key=key_a)))
    assert chain.state.root != root_before
    assert node_key_account(chain.state, key_a) == chain.addr("ret")
    chain.ok(chain.tx("ret", SetNodeKey(node_key=key_b)))  # rotate: the old key is forgotten
    assert node_key_account(chain.state, key_a) is None
    assert node_key_account(chain.state, key_b) == chain.addr("ret")
    restored = decode_state(encode_state(chain.state))  # the index is rebuilt from the table
    assert node_key_account(restored, key_b) == chain.addr("ret")
    chain.ok(chain.tx("ret", SetNodeKey(node_key=None)))
    assert node_key_account(chain.state, key_b) is None and not chain.state.node_keys
    check_invariants(chain.state)


def test_a_key_names_one_node_and_only_active_accounts_count() -> None:
    chain = Chain()
    key = chain.signers["outsider"].public_key
    chain.ok(chain.tx("ret", SetNodeKey(node_key=key)))
    chain.expect_rejected(chain.tx("pro", SetNodeKey(node_key=key)), errors.KEY_IN_USE)
    chain.ok(chain.tx("ret", SetNodeKey(node_key=key)))  # naming it again is a no-op, not an error
    chain.ok(chain.tx("grid", SuspendAccount(account=chain.addr("ret"))))
    assert node_key_account(chain.state, key) is None  # a suspended member's node is shut out
    chain.ok(chain.tx("grid", SuspendAccount(account=chain.addr("ret"), suspended=False)))
    assert node_key_account(chain.state, key) == chain.addr("ret")
    # An unregistered sender cannot name a key.
    chain.expect_rejected(chain.tx("outsider", SetNodeKey(node_key=bytes(32))), errors.NOT_REGISTERED)
    check_invariants(chain.state)
