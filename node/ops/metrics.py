"""Prometheus metrics of one node: one registry per node, one line of doc per metric.

The names are a published interface (the Grafana dashboard and alert rules in
deploy/ are built on them, and tests/e2e/test_deploy_files.py checks both against
these names) — never rename one.
Metrics without a value yet report 0. Beside them the registry carries the
standard ``process_*``, ``python_info`` and ``python_gc_*`` collectors; counters
export no ``_created`` series.
"""

from __future__ import annotations

import contextvars

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from contracts import errors

# Process-wide switch of prometheus_client: no `<counter>_created` series beside every counter.
disable_created_metrics()

SUBMISSION_ADMITTED: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "gridchain_submission_admitted", default=None)
"""Per submission request (set by the API listener's middleware in node/ops/service.py): the
backend appends to it once admission has counted the request's rejections, so that the
middleware counts only rejections that never reached admission (a malformed body)."""

REJECT_CODES = (errors.MALFORMED, errors.TOO_LARGE, errors.BAD_SIGNATURE, errors.WRONG_CHAIN, errors.EXPIRED,
                errors.STALE_NONCE, errors.NOT_REGISTERED, errors.WRONG_SIGNER, "mempool_full", "rate_limited")
"""The admission refusals whose ``gridchain_transactions_rejected_total`` series exist (at 0) from the
start, so the dashboard and alerts see them before the first one; other codes appear when they occur."""

_LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class NodeMetrics:
    """Every metric the node exports, registered in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # The same collectors the default registry has (process_*, python_info, python_gc_*).
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.up = Gauge("gridchain_up", "1 while the node process is running.", registry=r)
        self.height = Gauge("gridchain_height", "Height of the latest committed and executed block.", registry=r)
        self.round = Gauge("gridchain_round", "Current consensus round.", registry=r)
        self.last_voted_round = Gauge("gridchain_last_voted_round", "Highest round this validator voted in.", registry=r)
        self.commit_latency = Histogram(
            "gridchain_commit_latency_seconds",
            "Time from a transaction's admission at this node to the commit of its block.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.block_interval = Histogram(
            "gridchain_block_interval_seconds", "Time between consecutive committed blocks at this node.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.timeouts = Counter("gridchain_timeouts", "Rounds this validator timed out in.", registry=r)
        self.tcs = Counter("gridchain_timeout_certificates", "Timeout certificates formed or received.", registry=r)
        self.leader_changes = Counter("gridchain_leader_changes", "Round changes to a different leader.", registry=r)
        self.blocks_committed = Counter("gridchain_blocks_committed", "Blocks committed and executed.", registry=r)
        self.txs_submitted = Counter(
            "gridchain_transactions_submitted", "Transactions admitted (202) by this node's API.", registry=r)
        self.txs_rejected = Counter(
            "gridchain_transactions_rejected",
            "Submitted transactions this node's API rejected, by error code (the code of the 4xx/503 answer).",
            ["code"], registry=r)
        self.txs_committed = Counter(
            "gridchain_transactions_committed", "Committed transactions with a successful receipt.", registry=r)
        self.txs_failed = Counter(
            "gridchain_transactions_failed", "Committed transactions with a failed receipt.", registry=r)
        self.dropped = Counter(
            "gridchain_peer_messages_dropped", "Peer messages dropped at the edge, by reason.", ["reason"], registry=r)
        self.state_root_mismatch = Counter(
            "gridchain_state_root_mismatch",
            "Proposals whose executed_state_root differs from ours at the same height (alarm).", registry=r)
        self.credit = Gauge("gridchain_validator_credit", "C-LBFT credit per validator.", ["validator"], registry=r)
        self.leader_share = Gauge(
            "gridchain_validator_leader_share", "Share of the last rounds led by each validator (0..1).",
            ["validator"], registry=r)
        self.leader_threshold = Gauge(
            "gridchain_credit_leader_threshold", "Credit below which a validator is not elected leader.", registry=r)
        self.mempool_size = Gauge("gridchain_mempool_size", "Transactions waiting in the mempool.", registry=r)
        self.mempool_capacity = Gauge("gridchain_mempool_capacity", "Mempool capacity in transactions.", registry=r)
        self.peers = Gauge("gridchain_peers", "Authenticated peer connections.", registry=r)
        self.is_leader = Gauge("gridchain_is_leader", "1 if this validator leads the current round.", registry=r)
        self.clearing_price = Gauge(
            "gridchain_market_clearing_price_u_per_wh", "Clearing price of the latest cleared slot (µ/Wh).", registry=r)
        self.cleared_volume = Gauge(
            "gridchain_market_cleared_volume_wh", "Traded volume of the latest cleared slot (Wh).", registry=r)
        self.execution_halted = Gauge(
            "gridchain_execution_halted",
            "1 once block execution failed and the node stopped voting (see the ERROR log).", registry=r)
        self.execution_lag = Gauge(
            "gridchain_execution_lag_blocks", "Committed blocks not executed yet at this node.", registry=r)
        self.rate_limited = Counter(
            "gridchain_api_rate_limited",
            "Transaction submissions refused with 429, by limit (client address or unregistered sender).",
            ["limit"], registry=r)
        self.node_role = Gauge(
            "gridchain_node_role", "1 for this node's role on the chain: validator or observer.", ["role"],
            registry=r)
        self.epoch = Gauge("gridchain_epoch", "Epoch of the validator set this node verifies against.", registry=r)
        self.validator_info = Gauge(
            "gridchain_validator_info", "1 per member of the current validator set (index, name, public key).",
            ["index", "name", "public_key"], registry=r)
        self.observer_links = Gauge(
            "gridchain_observer_links",
            "Observer links: upstream (this node follows them) and downstream (observers following it).",
            ["direction"], registry=r)
        self.observer_refused = Counter(
            "gridchain_observer_blocks_refused",
            "Committed-block batches an observer refused (the link was dropped), by reason.", ["reason"],
            registry=r)
        self.up.set(1)

    def set_identity(self, role: str, epoch: int, validators: list[tuple[int, str, bytes]]) -> None:
        """Role, epoch and validator set (index, name, key), for the dashboards."""
        for name in ("validator", "observer"):
            self.node_role.labels(role=name).set(1 if name == role else 0)
        self.epoch.set(epoch)
        self.validator_info.clear()
        for index, name, key in validators:
            self.validator_info.labels(index=str(index), name=name, public_key=key.hex()).set(1)

    def init_labels(self, validator_names: list[str], reasons: tuple[str, ...]) -> None:
        """Create labelled series up front so every series reports 0 before its first event."""
        for name in validator_names:
            self.credit.labels(validator=name)
            self.leader_share.labels(validator=name)
        for reason in reasons:
            self.dropped.labels(reason=reason)
        for limit in ("client", "sender"):
            self.rate_limited.labels(limit=limit)
        for code in REJECT_CODES:
            self.txs_rejected.labels(code=code)
        for direction in ("upstream", "downstream"):
            self.observer_links.labels(direction=direction)
        for refusal in ("bad_qc", "broken_chain", "bad_tx_root", "not_our_chain"):
            self.observer_refused.labels(reason=refusal)

    def render(self) -> bytes:
        return generate_latest(self.registry)
