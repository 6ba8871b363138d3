"""The C-LBFT core: one validator's consensus state machine, ``handle(event) -> actions``.

Theory of operation (DiemBFT v4 / Jolteon, 2-chain):

* Round ``r`` has one leader, elected from committed credit (``consensus.leader``).
  It asks the runtime for a payload (``RequestPayload``), builds a block on its
  highest QC, signs it and broadcasts it; it also processes its own proposal.
* A validator that receives the proposal checks it (right leader, parent known —
  else it fetches it — timestamp, limits, tx root, failed authors, the runtime's
  ``block_check``) and asks the safety rules for a vote; it emits ``PersistSafety``
  and then sends the vote to the leader of ``r + 1`` only (linear messages).
* That leader aggregates ``2f + 1`` votes into a QC, enters ``r + 1`` and proposes.
  A QC whose block's parent is one round older commits that parent and every
  uncommitted ancestor (``Commit``, oldest first); credit is updated per committed
  block and feeds leader election ``leader_history_lag_rounds`` later.
* If the round's deadline passes, the validator signs a timeout and broadcasts it;
  ``f + 1`` timeouts for its round make it join, ``2f + 1`` form a TC and everyone
  enters ``r + 1``; the next leader extends its highest QC — at least the QC the
  TC carries (that of the highest round its signers claimed, so voters accept
  it) — naming the leaders of the skipped rounds as ``failed_authors`` (they lose
  credit when it commits; voters check the list from the first round on).
* Every message carries ``SyncInfo`` (high QC, high commit QC, high TC), so a
  lagging validator jumps rounds, fetches the blocks it lacks and commits them.

Messages reach ``handle`` only after ``consensus.validation.check_message``
accepted them. The core's own messages are processed in place, never sent to
itself. Everything that grows is bounded with its cleanup next to it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass

import msgspec

from consensus import codec, crypto
from consensus.actions import (
    Action,
    Broadcast,
    Commit,
    EquivocationDetected,
    FetchBlocks,
    PersistSafety,
    RequestPayload,
    RoundEntered,
    ScheduleTick,
    Send,
)
from consensus.aggregator import Aggregator
from consensus.block_tree import BlockTree, Committed
from consensus.committee import Committee
from consensus.config import ConsensusParams
from consensus.credit import CreditState, initial_credit
from consensus.events import (
    BlocksFetched,
    Event,
    MessageReceived,
    PayloadReady,
    Tick,
)
from consensus.leader import CreditSnapshot, LeaderHistory
from consensus.pacemaker import Pacemaker
from consensus.safety import SafetyError, SafetyRules
from consensus.types import (
    Block,
    BlockHeader,
    BlockRequest,
    BlockResponse,
    Digest,
    EquivocationEvidence,
    NodeId,
    ProposalMsg,
    QuorumCert,
    Round,
    SafetyData,
    SyncInfo,
    TimeoutCert,
    TimeoutMsg,
    VoteData,
    VoteMsg,
    block_id,
    payload_root,
)
from consensus.validation import MAX_EVIDENCE_PER_BLOCK, MAX_FAILED_AUTHORS

MAX_WAITING_PROPOSALS = 32
"""Proposals kept while their parent (or the commits that elect their leader) are fetched."""
MAX_OUTSTANDING_FETCHES = 256
"""Block ids remembered as requested (a repeat request waits for the next round)."""


class RestorePoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the node reloads from its storage after a restart; the core syncs the rest.

    ``block`` is the last committed block and ``commit_qc`` the QC that committed it
    (a QC of its child whose ``parent_round + 1 == round``; the genesis QC for the
    genesis block). ``history`` is ``Core.restore_point().history``: the credit
    snapshots leader election needs. ``pending``/``high_qc``/``high_tc`` are
    optional: the uncommitted blocks and certificates the node had stored (they let
    a whole network restart at once without losing the certified tip).
    """

    block: Block
    commit_qc: QuorumCert
    history: tuple[CreditSnapshot, ...] = ()
    credit: CreditState | None = None
    """Used only when ``history`` is empty: credit after ``block`` (e.g. from the
    contracts state). Leader election is then exact only from ``block.round + lag`` on."""
    pending: tuple[Block, ...] = ()
    high_qc: QuorumCert | None = None
    high_tc: TimeoutCert | None = None


@dataclass(slots=True)
class CoreStats:
    """Counters for metrics (monotonic)."""

    proposals: int = 0
    """Blocks this validator proposed."""
    votes: int = 0
    """Votes this validator signed."""
    timeouts: int = 0
    """Rounds this validator timed out in."""
    tcs: int = 0
    """Timeout certificates learnt (formed or received)."""
    qcs: int = 0
    """QCs this validator aggregated as the next leader."""
    leader_changes: int = 0
    """Round entries whose leader differs from the previous round's."""
    committed_blocks: int = 0
    """Blocks committed."""
    equivocations: int = 0
    """Equivocations detected."""
    invalid_proposals: int = 0
    """Proposals rejected by the core's checks (wrong leader, bad limits, ...)."""
    rejected_by_runtime: int = 0
    """Proposals the runtime's ``block_check`` refused."""
    sign_refusals: int = 0
    """Votes or timeouts the safety rules refused (incl. the double-sign guard)."""
    fetches: int = 0
    """``FetchBlocks`` requests issued."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def make_genesis_block(chain_id: str, epoch: int, genesis_time_ms: int) -> Block:
    """The genesis block (round 0, height 0). Its ``executed_state_root`` binds the
    chain id, so different chains have different genesis ids."""
    zero = bytes(codec.DIGEST_SIZE)
    anchor = QuorumCert(vote_data=VoteData(
        epoch=epoch, round=0, height=0, block_id=zero, parent_id=zero, parent_round=0))
    header = BlockHeader(
        epoch=epoch, round=0, height=0, parent_qc=anchor, author=0,
        timestamp_ms=genesis_time_ms, tx_root=payload_root(()), executed_height=0,
        executed_state_root=codec.digest(b"gridchain-genesis/" + chain_id.encode()),
    )
    return Block(header=header)


def genesis_qc(genesis_block: Block) -> QuorumCert:
    """The empty certificate of the genesis block (round 0, no signers)."""
    gid = block_id(genesis_block.header)
    return QuorumCert(vote_data=VoteData(
        epoch=genesis_block.header.epoch, round=0, height=0, block_id=gid, parent_id=gid, parent_round=0))


class Core:
    """One validator's consensus state machine; see the module docstring."""

    def __init__(
        self, *, committee: Committee, params: ConsensusParams, me: NodeId,
        signer: crypto.Signer, genesis_block: Block, safety: SafetyData | None,
        restore: RestorePoint | None = None,
        block_check: Callable[[Block], str | None] | None = None,
    ) -> None:
        if not committee.contains(me):
            raise ValueError(f"validator {me} is not in the committee")
        self._committee = committee
        self._params = params
        self._me = me
        self._epoch = committee.epoch
        self._block_check = block_check
        self._leaders_exact_from: Round = 0
        """Rounds below this have leaders this node cannot compute (restored without history):
        any member's proposal is judged on safety alone, and votes are collected by anyone."""
        self._genesis_qc = genesis_qc(genesis_block)
        self._safety = SafetyRules(committee=committee, me=me, signer=signer, data=safety)
        if restore is None:
            gid = block_id(genesis_block.header)
            self._tree = BlockTree(root=genesis_block, root_qc=self._genesis_qc, commit_qc=self._genesis_qc)
            snapshots: tuple[CreditSnapshot, ...] = (CreditSnapshot(
                round=0, block_id=gid, credit=initial_credit(committee.n, params.credit)),)
        else:
            self._tree = BlockTree(root=restore.block, root_qc=restore.commit_qc, commit_qc=restore.commit_qc)
            snapshots = restore.history
            if not snapshots:
                if restore.credit is None:
                    raise ValueError("a RestorePoint needs the credit history or the credit state")
                snapshots = (CreditSnapshot(round=restore.block.round, block_id=self._tree.root_id,
                                            credit=restore.credit),)
                # Leaders of earlier rounds were elected from snapshots we no longer have.
                self._leaders_exact_from = restore.block.round + params.leader_history_lag_rounds
        self._history = LeaderHistory(params=params.credit, lag_rounds=params.leader_history_lag_rounds,
                                      snapshots=snapshots)
        self._high_tc: TimeoutCert | None = None
        if restore is not None:
            self._restore_pending(restore)
        if safety is not None:
            # Our own certificates at the last signature: resume from the round they justify.
            if safety.high_qc is not None and safety.high_qc.round > self._tree.high_qc.round:
                self._tree.observe_qc(safety.high_qc)
            if safety.high_tc is not None and (self._high_tc is None
                                               or safety.high_tc.round > self._high_tc.round):
                self._high_tc = safety.high_tc
        if self._high_tc is not None and self._high_tc.high_qc.round > self._tree.high_qc.round:
            self._tree.observe_qc(self._high_tc.high_qc)
        start_round = self._tree.high_qc.round + 1
        if self._high_tc is not None:
            start_round = max(start_round, self._high_tc.round + 1)
        self._pacemaker = Pacemaker(params=params, round=start_round)
        self._aggregator = Aggregator(epoch=self._epoch, quorum=committee.quorum)
        self._aggregator.cleanup(start_round)
        self._announced_round: Round = 0
        self._proposed_round: Round = 0
        self._pending_payload: PayloadReady | None = None
        self._waiting: OrderedDict[Digest, tuple[NodeId, ProposalMsg]] = OrderedDict()
        self._requested: OrderedDict[Digest, Round] = OrderedDict()
        self._fetch_rotation = 0
        self._stats = CoreStats()
        self._want_tick = False
        """A waiting proposal needs a fresh clock reading."""
        self._scheduled_ms: int | None = None
        """The last ScheduleTick emitted."""
        self._out: list[Action] = []

    def _restore_pending(self, restore: RestorePoint) -> None:
        for block in sorted(restore.pending, key=lambda b: b.height):
            self._tree.insert(block, block_id(block.header))
        for qc in [b.header.parent_qc for b in restore.pending] + [restore.high_qc]:
            if qc is not None and qc.round > 0:
                self._tree.observe_qc(qc)
        self._high_tc = restore.high_tc

    # --- read-only view (metrics, status, the runtime) ---------------------------------

    @property
    def round(self) -> Round:
        return self._pacemaker.round

    @property
    def high_qc(self) -> QuorumCert:
        return self._tree.high_qc

    @property
    def high_tc(self) -> TimeoutCert | None:
        return self._high_tc

    @property
    def high_commit_qc(self) -> QuorumCert:
        return self._tree.high_commit_qc

    @property
    def committed_round(self) -> Round:
        return self._tree.committed_round

    @property
    def committed_height(self) -> int:
        return self._tree.committed_height

    @property
    def committed_block_id(self) -> Digest:
        return self._tree.root_id

    @property
    def last_voted_round(self) -> Round:
        return self._safety.data.last_voted_round

    @property
    def safety_data(self) -> SafetyData:
        return self._safety.data

    @property
    def credit(self) -> CreditState:
        """Credit after the latest committed block."""
        return self._history.latest.credit

    @property
    def stats(self) -> CoreStats:
        return self._stats

    @property
    def me(self) -> NodeId:
        return self._me

    def leader(self, round: Round) -> NodeId:
        return self._history.leader(round)

    def blocks_from(self, id_: Digest, count: int) -> list[Block]:
        """Up to ``count`` blocks held in memory: ``id_`` and its ancestors, newest first,
        down to the committed root (older ones are in the runtime's storage)."""
        return self._tree.chain_from(id_, min(count, self._params.max_fetch_blocks))

    def restore_point(self) -> RestorePoint:
        """What to persist so a restart can resume (see ``RestorePoint``)."""
        pending = tuple(b for b in self._tree.blocks.values() if b.height > self._tree.committed_height)
        return RestorePoint(block=self._tree.root, commit_qc=self._tree.high_commit_qc,
                            history=self._history.snapshots, pending=pending,
                            high_qc=self._tree.high_qc, high_tc=self._high_tc)

    # --- the one entry point -----------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Process one event; return the actions to carry out, in order."""
        assert not self._out, "handle() is not re-entrant"
        try:
            if isinstance(event, Tick):
                self._on_tick(event.now_ms)
            elif isinstance(event, MessageReceived):
                self._on_message(event.sender, event.message)
            elif isinstance(event, PayloadReady):
                self._on_payload(event)
            elif isinstance(event, BlocksFetched):
                self._on_blocks_fetched(event.blocks, sender=None)
        finally:
            out, self._out = self._out, []
        # Exactly one place asks for time: the last ScheduleTick of a list is always the
        # one that matters (a driver may keep a single timer).
        wakeup = self._next_wakeup_ms()
        if wakeup is not None and (isinstance(event, Tick) or wakeup != self._scheduled_ms):
            self._scheduled_ms = wakeup
            out.append(ScheduleTick(at_ms=wakeup))
        return out

    def _on_message(self, sender: NodeId, message: object) -> None:
        if isinstance(message, ProposalMsg):
            self._on_proposal(sender, message)
        elif isinstance(message, VoteMsg):
            self._on_vote(sender, message)
        elif isinstance(message, TimeoutMsg):
            self._on_timeout(sender, message)
        elif isinstance(message, BlockRequest):
            blocks = self.blocks_from(message.block_id, message.count)
            if blocks and sender != self._me:
                self._out.append(Send(to=sender, message=BlockResponse(blocks=tuple(blocks))))
        elif isinstance(message, BlockResponse):
            self._on_blocks_fetched(message.blocks, sender=sender)

    # --- time ----------------------------------------------------------------------------

    def _on_tick(self, now_ms: int) -> None:
        pacemaker = self._pacemaker
        self._want_tick = False
        if not pacemaker.started:
            pacemaker.start(now_ms, self.committed_round)
            if self._announced_round < pacemaker.round:
                self._announce(pacemaker.round, via_timeout=False)
            return
        expired = pacemaker.tick(now_ms)
        if pacemaker.clock_stale:
            pacemaker.refresh(self.committed_round)
            self._retry_waiting()
            return
        if not expired:
            self._retry_waiting()
            return
        round_before = self.round
        self._local_timeout()
        self._retry_fetches()
        if self.round == round_before:
            pacemaker.restart_deadline(self.committed_round)
        else:
            pacemaker.refresh(self.committed_round)  # entered during this Tick: the clock is fresh

    def _next_wakeup_ms(self) -> int | None:
        """When the core next needs a Tick: now (stale clock or a proposal waiting for the
        time), else the round deadline; None before the first Tick."""
        pacemaker = self._pacemaker
        if not pacemaker.started:
            return None
        if pacemaker.clock_stale or self._want_tick:
            return pacemaker.now_ms
        return pacemaker.deadline_ms

    def _local_timeout(self) -> None:
        round = self.round
        try:
            timeout, new_data = self._safety.sign_timeout(
                round=round, high_qc=self._tree.high_qc, tc=self._high_tc)
        except SafetyError:
            self._stats.sign_refusals += 1
            return
        if new_data is not None:
            self._out.append(PersistSafety(data=new_data))
        if self._pacemaker.timeouts_sent_round != round:
            self._pacemaker.timeouts_sent_round = round
            self._stats.timeouts += 1
        msg = TimeoutMsg(timeout=timeout, sync=self._sync())
        self._out.append(Broadcast(message=msg))
        self._count_timeout(self._me, msg)

    # --- sync info and certificates ------------------------------------------------------

    def _sync(self) -> SyncInfo:
        high_qc = self._tree.high_qc
        tc = self._high_tc if self._high_tc is not None and self._high_tc.round > high_qc.round else None
        return SyncInfo(high_qc=high_qc, high_commit_qc=self._tree.high_commit_qc, high_tc=tc)

    def _process_sync(self, sync: SyncInfo, sender: NodeId) -> None:
        # Certified rounds only (validated QC/TC): the double-sign guard's floor.
        network_round = sync.high_qc.round + 1
        if sync.high_tc is not None:
            network_round = max(network_round, sync.high_tc.round + 1)
        self._safety.observe_network_round(sender, network_round)
        self._process_qc(sync.high_commit_qc, sender)
        self._process_qc(sync.high_qc, sender)
        if sync.high_tc is not None:
            self._process_tc(sync.high_tc, sender)

    def _process_qc(self, qc: QuorumCert, sender: NodeId | None) -> None:
        if qc.round == 0:
            return  # the genesis QC: nothing to learn (a forged one is ignored too)
        if self._me in qc.signers:
            self._safety.observe_own_signature(qc.round)
        self._tree.observe_qc(qc)
        self._commit_progress(sender)
        if qc.round + 1 > self.round:
            self._enter_round(qc.round + 1, via_timeout=False)

    def _process_tc(self, tc: TimeoutCert, sender: NodeId | None = None) -> None:
        # Adopt the TC's QC first: the next leader then extends at least the QC the TC
        # makes voters wait for (``safe_to_vote``), so its proposal can be voted for.
        self._process_qc(tc.high_qc, sender)
        if self._me in tc.signers:
            self._safety.observe_own_signature(tc.round)
        if self._high_tc is None or tc.round > self._high_tc.round:
            self._high_tc = tc
            self._stats.tcs += 1
        if tc.round + 1 > self.round:
            self._enter_round(tc.round + 1, via_timeout=True)

    # --- rounds --------------------------------------------------------------------------

    def _enter_round(self, round: Round, *, via_timeout: bool) -> None:
        previous_leader = self.leader(self.round)
        if not self._pacemaker.advance(round, self.committed_round):
            return
        if self.leader(round) != previous_leader:
            self._stats.leader_changes += 1
        self._aggregator.cleanup(round)
        self._history.prune(round)
        for stale in [k for k, (_, m) in self._waiting.items() if m.block.round < round]:
            del self._waiting[stale]
        self._pending_payload = None
        self._announce(round, via_timeout=via_timeout)

    def _announce(self, round: Round, *, via_timeout: bool) -> None:
        self._announced_round = round
        leader = self.leader(round)
        self._out.append(RoundEntered(round=round, leader=leader, via_timeout=via_timeout))
        if self._may_lead(round) and self._proposed_round < round:
            self._out.append(RequestPayload(round=round))

    def _may_lead(self, round: Round) -> bool:
        """We lead ``round`` — or cannot rule it out (restored without history): a proposal
        from a validator that is not the leader is simply refused by the others."""
        return round < self._leaders_exact_from or self.leader(round) == self._me

    # --- commits -------------------------------------------------------------------------

    def _commit_progress(self, sender: NodeId | None) -> None:
        while (committed := self._tree.try_commit()) is not None:
            self._on_committed(committed)
        missing = self._tree.missing_for_commit()
        if missing is not None:
            missing_id, height = missing
            count = min(self._params.max_fetch_blocks, height - self.committed_height)
            self._fetch(sender, missing_id, count)

    def _on_committed(self, committed: Committed) -> None:
        for block in committed.blocks:
            self._history.append(block, block_id(block.header))
        self._stats.committed_blocks += len(committed.blocks)
        self._out.append(Commit(blocks=committed.blocks, proof=committed.proof))
        credit = self._history.latest.credit
        self._aggregator.forget_evidence(
            set(credit.punished),
            min_round=self.round - self._params.evidence_window_rounds)
        for stale in [k for k, (_, m) in self._waiting.items()
                      if m.block.height <= self.committed_height]:
            del self._waiting[stale]

    # --- fetching ------------------------------------------------------------------------

    def _pick_peer(self, preferred: NodeId | None) -> NodeId | None:
        if preferred is not None and preferred != self._me and self._committee.contains(preferred):
            return preferred
        n = self._committee.n
        for _ in range(n):
            self._fetch_rotation = (self._fetch_rotation + 1) % n
            if self._fetch_rotation != self._me:
                return self._fetch_rotation
        return None

    def _fetch(self, peer: NodeId | None, id_: Digest, count: int) -> None:
        if self._requested.get(id_) == self.round:
            return
        target = self._pick_peer(peer)
        if target is None:
            return
        self._requested[id_] = self.round
        self._requested.move_to_end(id_)
        while len(self._requested) > MAX_OUTSTANDING_FETCHES:
            self._requested.popitem(last=False)
        self._stats.fetches += 1
        self._out.append(FetchBlocks(peer=target, block_id=id_, count=max(1, count)))

    def _retry_fetches(self) -> None:
        """After a timeout: ask other peers for whatever is still missing."""
        self._requested.clear()
        self._commit_progress(None)
        for _, (_, msg) in list(self._waiting.items()):
            if msg.block.parent_id not in self._tree:
                self._fetch(None, msg.block.parent_id, self._fetch_count(msg.block.height - 1))
        high = self._tree.high_qc
        if high.block_id not in self._tree and high.round > self.committed_round:
            self._fetch(None, high.block_id, self._fetch_count(high.vote_data.height))

    def _fetch_count(self, height: int) -> int:
        return max(1, min(self._params.max_fetch_blocks, height - self.committed_height))

    def _on_blocks_fetched(self, blocks: tuple[Block, ...], *, sender: NodeId | None) -> None:
        if not blocks:
            return
        ids = [block_id(blocks[0].header)]
        chain = [blocks[0]]
        for block in blocks[1:]:
            id_ = block_id(block.header)
            if id_ != chain[-1].parent_id:
                break  # keep the linked prefix only
            chain.append(block)
            ids.append(id_)
        if ids[0] not in self._requested and ids[0] not in self._tree:
            return  # unsolicited: only blocks certified by a QC we hold are taken
        for id_ in ids:
            self._requested.pop(id_, None)
        added: list[Block] = []
        for block, id_ in zip(reversed(chain), reversed(ids), strict=True):
            if id_ in self._tree or block.height <= self.committed_height:
                continue
            if self._tree.extends_root(block):
                if self._tree.insert(block, id_):
                    added.append(block)
            else:
                self._tree.add_orphan(block, id_)
        added.extend(b for _, b in self._tree.adopt_orphans())
        for block in added:
            qc = block.header.parent_qc
            if qc.round > 0:
                if self._me in qc.signers:
                    self._safety.observe_own_signature(qc.round)
                if block.header.author == self._me:
                    self._safety.observe_own_signature(block.round)
                self._tree.observe_qc(qc)
        self._commit_progress(sender)
        oldest = chain[-1]
        if oldest.parent_id not in self._tree and oldest.height - 1 > self.committed_height:
            self._fetch(sender, oldest.parent_id, self._fetch_count(oldest.height - 1))
        if self._tree.high_qc.round + 1 > self.round:
            self._enter_round(self._tree.high_qc.round + 1, via_timeout=False)
        self._retry_waiting(fresh_clock=False)
        self._try_propose()

    def _retry_waiting(self, *, fresh_clock: bool = True) -> None:
        """Reconsider proposals whose parent is now known. Only with a fresh clock (in a
        Tick) is a proposal from "the future" finally refused; otherwise it waits again."""
        for key, (waiting_sender, msg) in list(self._waiting.items()):
            if msg.block.parent_id in self._tree and key in self._waiting:
                del self._waiting[key]
                self._consider_proposal(waiting_sender, msg, key, may_wait=not fresh_clock)

    # --- proposals -----------------------------------------------------------------------

    def _on_proposal(self, sender: NodeId, msg: ProposalMsg) -> None:
        header = msg.block.header
        if header.epoch != self._epoch:
            return
        encoded = codec.encode(header)
        bid = codec.digest(encoded)
        if header.author == self._me and sender != self._me:
            self._safety.observe_own_signature(header.round)
        self._process_sync(msg.sync, sender)
        self._process_qc(header.parent_qc, sender)
        evidence = self._aggregator.add_proposal(header, encoded_header=encoded, signature=msg.signature)
        if evidence is not None:
            self._on_evidence(evidence)
            return  # never vote for the second of two proposals
        self._consider_proposal(sender, msg, bid)

    def _consider_proposal(self, sender: NodeId, msg: ProposalMsg, bid: Digest, *,
                           may_wait: bool = True) -> None:
        block = msg.block
        header = block.header
        round = header.round
        if round != self.round:
            return
        if header.parent_qc.round == 0 and header.parent_qc != self._genesis_qc:
            self._stats.invalid_proposals += 1
            return
        parent = self._tree.get(block.parent_id)
        lagging = (self._tree.commit_target is not None
                   and self.committed_round < round - self._params.leader_history_lag_rounds)
        # The clock may be stale (time arrives only by Tick): a block from "the future"
        # waits for one fresh Tick before it is judged.
        early = (may_wait and header.timestamp_ms > self._pacemaker.now_ms + self._params.max_clock_drift_ms)
        if parent is None or lagging or early:
            # Needed first: the parent, the commits that decide this round's leader, or the time.
            if early:
                self._want_tick = True
            self._waiting[bid] = (sender, msg)
            while len(self._waiting) > MAX_WAITING_PROPOSALS:
                self._waiting.popitem(last=False)
            if parent is None:
                self._fetch(sender, block.parent_id, self._fetch_count(header.height - 1))
            return
        wrong_leader = round >= self._leaders_exact_from and header.author != self.leader(round)
        if wrong_leader or self._check_block(block, parent) is not None:
            self._stats.invalid_proposals += 1
            return
        self._tree.insert(block, bid)
        for evidence in header.evidence:
            # Re-reported by our own proposals if this block ends up on a pruned fork.
            self._aggregator.add_evidence(evidence)
        if self._block_check is not None and self._block_check(block) is not None:
            self._stats.rejected_by_runtime += 1
            return
        self._vote(block, bid)

    def _check_block(self, block: Block, parent: Block) -> str | None:
        """Why the core will not vote for ``block`` on ``parent``, or None."""
        header = block.header
        params = self._params
        if header.height != parent.height + 1:
            return "height is not parent height + 1"
        if header.timestamp_ms <= parent.header.timestamp_ms:
            return "timestamp not after the parent's"
        if header.timestamp_ms > self._pacemaker.now_ms + params.max_clock_drift_ms:
            return "timestamp too far in the future"
        if len(block.payload) > params.max_block_txs:
            return "too many transactions"
        if sum(len(tx) for tx in block.payload) > params.max_block_bytes:
            return "payload too large"
        if header.tx_root != payload_root(block.payload):
            return "tx_root does not match the payload"
        if not self._failed_authors_ok(header):
            return "failed authors differ from the elected leaders of the skipped rounds"
        oldest_allowed = header.round - params.evidence_window_rounds
        if any(e.round < oldest_allowed or e.round > header.round for e in header.evidence):
            return "evidence outside the window"
        return None

    def _expected_failed_authors(self, qc_round: Round, round: Round) -> tuple[tuple[Round, NodeId], ...]:
        first = max(qc_round + 1, round - MAX_FAILED_AUTHORS)
        return tuple((r, self.leader(r)) for r in range(first, round))

    def _failed_authors_ok(self, header: BlockHeader) -> bool:
        """From the first round on: the block names exactly the skipped rounds (the last
        ``MAX_FAILED_AUTHORS`` of them) and, for every round whose leader this node can
        compute, that leader. Only after a restore without credit history are the
        leaders of the rounds before ``_leaders_exact_from`` unknown; their rounds are
        still checked."""
        named = header.failed_authors
        first = max(header.parent_qc.round + 1, header.round - MAX_FAILED_AUTHORS)
        if tuple(r for r, _ in named) != tuple(range(first, header.round)):
            return False
        return all(r < self._leaders_exact_from or author == self.leader(r) for r, author in named)

    def _vote(self, block: Block, bid: Digest) -> None:
        round = block.round
        tc = self._high_tc if self._high_tc is not None and self._high_tc.round == round - 1 else None
        try:
            vote, new_data = self._safety.sign_vote(block, block_id=bid, tc=tc,
                                                    high_qc=self._tree.high_qc, high_tc=self._high_tc)
        except SafetyError:
            self._stats.sign_refusals += 1
            return
        if vote.vote_data.block_id != bid:
            return  # already voted for another block in this round: never a second vote
        if new_data is not None:
            self._out.append(PersistSafety(data=new_data))
            self._stats.votes += 1
        msg = VoteMsg(vote=vote, sync=self._sync())
        next_leader = self.leader(round + 1)
        if next_leader == self._me:
            self._count_vote(msg)
        else:
            self._out.append(Send(to=next_leader, message=msg))

    def _on_payload(self, event: PayloadReady) -> None:
        if event.round != self.round or not self._may_lead(event.round):
            return
        if self._proposed_round >= event.round:
            return
        self._pending_payload = event
        self._try_propose()

    def _try_propose(self) -> None:
        event = self._pending_payload
        round = self.round
        if event is None or event.round != round or self._proposed_round >= round:
            return
        parent_qc = self._tree.high_qc
        if parent_qc.round + 1 != round and (self._high_tc is None or self._high_tc.round != round - 1):
            return  # cannot justify this round (should not happen: we entered it by a QC or TC)
        parent = self._tree.get(parent_qc.block_id)
        if parent is None:
            signers = parent_qc.signers
            peer = signers[round % len(signers)] if signers else None
            self._fetch(peer, parent_qc.block_id, self._fetch_count(parent_qc.vote_data.height))
            return
        payload = self._limit_payload(event.payload)
        header = BlockHeader(
            epoch=self._epoch, round=round, height=parent.height + 1, parent_qc=parent_qc,
            author=self._me,
            timestamp_ms=max(self._pacemaker.now_ms, parent.header.timestamp_ms + 1),
            tx_root=payload_root(payload),
            executed_height=min(event.executed_height, parent.height),
            executed_state_root=event.executed_state_root,
            failed_authors=self._expected_failed_authors(parent_qc.round, round),
            evidence=self._evidence_for(parent_qc.block_id, round),
        )
        try:
            signature = self._safety.sign_proposal(header)
        except SafetyError:
            self._stats.sign_refusals += 1
            return
        self._pending_payload = None
        self._proposed_round = round
        self._stats.proposals += 1
        msg = ProposalMsg(block=Block(header=header, payload=payload), signature=signature,
                          sync=self._sync())
        mark = len(self._out)
        self._on_proposal(self._me, msg)
        # The proposal leaves after our own vote is persisted (a restarted leader then
        # cannot propose a different block for this round), but before the vote.
        position = mark
        for index in range(mark, len(self._out)):
            if isinstance(self._out[index], PersistSafety):
                position = index + 1
                break
        self._out.insert(position, Broadcast(message=msg))

    def _limit_payload(self, payload: tuple[bytes, ...]) -> tuple[bytes, ...]:
        limit_txs = self._params.max_block_txs
        limit_bytes = self._params.max_block_bytes
        total = 0
        for count, tx in enumerate(payload[:limit_txs]):
            total += len(tx)
            if total > limit_bytes:
                return payload[:count]
        return payload[:limit_txs]

    def _evidence_for(self, parent_id: Digest, round: Round) -> tuple[EquivocationEvidence, ...]:
        exclude = set(self.credit.punished)
        for block in self._tree.chain_from(parent_id, len(self._tree)):
            exclude.update((e.author, e.round) for e in block.header.evidence)
        return self._aggregator.pending_evidence(
            exclude=exclude, min_round=round - self._params.evidence_window_rounds,
            limit=MAX_EVIDENCE_PER_BLOCK)

    # --- votes and timeouts --------------------------------------------------------------

    def _on_vote(self, sender: NodeId, msg: VoteMsg) -> None:
        self._process_sync(msg.sync, sender)
        self._count_vote(msg)

    def _count_vote(self, msg: VoteMsg) -> None:
        vote = msg.vote
        round = vote.vote_data.round
        if vote.vote_data.epoch != self._epoch or round < self.round - 1:
            return
        if round + 1 >= self._leaders_exact_from and self.leader(round + 1) != self._me:
            return  # votes go to the next leader; others do not collect them
        outcome = self._aggregator.add_vote(vote)
        if outcome.evidence is not None:
            self._on_evidence(outcome.evidence)
        if outcome.qc is not None:
            self._stats.qcs += 1
            self._committee.remember_verified(codec.digest_of(outcome.qc))
            self._process_qc(outcome.qc, vote.author)

    def _on_timeout(self, sender: NodeId, msg: TimeoutMsg) -> None:
        self._process_sync(msg.sync, sender)
        self._count_timeout(sender, msg)

    def _count_timeout(self, sender: NodeId, msg: TimeoutMsg) -> None:
        timeout = msg.timeout
        if timeout.data.epoch != self._epoch:
            return
        if timeout.author == self._me and sender != self._me:
            self._safety.observe_own_signature(timeout.data.round)
        outcome = self._aggregator.add_timeout(timeout)
        if outcome.evidence is not None:
            self._on_evidence(outcome.evidence)
        if outcome.tc is not None:
            self._committee.remember_verified(codec.digest_of(outcome.tc))
            self._process_tc(outcome.tc)
        elif (timeout.data.round == self.round
              and outcome.count >= self._committee.f + 1
              and self._pacemaker.timeouts_sent_round < self.round):
            self._local_timeout()  # f + 1 gave up on this round: at least one honest did

    def _on_evidence(self, evidence: EquivocationEvidence) -> None:
        self._stats.equivocations += 1
        self._out.append(EquivocationDetected(author=evidence.author, round=evidence.round,
                                              kind=evidence.kind))
