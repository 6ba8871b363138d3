"""The state before block 1, built from a validated ``Genesis``: what every node starts
executing from (its root is the digest of its encoding)."""

from __future__ import annotations

from consensus import codec
from consensus.credit import initial_credit
from contracts import state as st
from contracts.genesis import Genesis, validate_genesis


def initial_state(genesis: Genesis) -> st.State:
    """The state before block 1: genesis accounts (plus an account per validator
    address that has none, role ``validator``, so rewards have somewhere to go),
    validator records, initial credit; its root is the digest of its encoding."""
    validate_genesis(genesis)
    state = st.State(genesis, initial_credit(len(genesis.validators), genesis.consensus.credit))
    supply = 0
    for a in genesis.accounts:
        state.accounts[a.address] = st.Account(
            address=a.address, name=a.name, role=a.role, zone=a.zone, status="active",
            public_key=a.public_key, meter_key=a.meter_key, balance_u=a.balance_u,
        )
        supply += a.balance_u
    for i, v in enumerate(genesis.validators):
        state.validators[f"{i:04d}"] = st.ValidatorInfo(
            index=i, name=v.name, role=v.role, public_key=v.public_key, address=v.address,
        )
        if v.address not in state.accounts:
            state.accounts[v.address] = st.Account(
                address=v.address, name=v.name, role="validator", zone="validators",
                status="active", public_key=v.public_key, meter_key=None,
            )
    state.meta_table["meta"] = st.Meta(supply_u=supply, timestamp_ms=genesis.genesis_time_ms)
    state.root = codec.digest(st.encode_state(state))
    return state
