"""The canonical codec: golden vectors pin the bytes that are hashed and signed."""

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus import codec
from consensus.types import QuorumCert, TimeoutData, VoteData


class Sample(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    amount: int


def test_golden_vote_data_bytes() -> None:
    vote_data = VoteData(
        epoch=1, round=2, height=3, block_id=b"\x11" * 32, parent_id=b"\x22" * 32, parent_round=1
    )
    encoded = codec.encode(vote_data)
    assert encoded.hex() == (
        "86a565706f636801a5726f756e6402a6686569676874"
        "03a8626c6f636b5f6964c4201111111111111111111111111111111111111111111111111111111111111111"
        "a9706172656e745f6964c4202222222222222222222222222222222222222222222222222222222222222222"
        "ac706172656e745f726f756e6401"
    )
    assert codec.digest(encoded).hex() == codec.digest_of(vote_data).hex()


def test_golden_timeout_digest() -> None:
    data = TimeoutData(epoch=1, round=7, high_qc_round=5)
    assert codec.encode(data).hex() == "83a565706f636801a5726f756e6407ad686967685f71635f726f756e6405"


def test_decode_rejects_unknown_fields_and_wrong_types() -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(codec.encode({"name": "a", "amount": 1, "extra": 2}), Sample)
    with pytest.raises(codec.CodecError):
        codec.decode(codec.encode({"name": "a", "amount": 1.5}), Sample)


def test_decode_rejects_invalid_utf8_as_codec_error() -> None:
    raw = codec.encode(Sample(name="ab", amount=1)).replace(b"\xa2ab", b"\xa2\xff\xfe")
    with pytest.raises(codec.CodecError):
        codec.decode(raw, Sample)


def test_decode_canonical_rejects_non_canonical_bytes() -> None:
    canonical = codec.encode(Sample(name="a", amount=1))
    # The same value with the integer widened to a 2-byte encoding is not canonical.
    widened = canonical[:-1] + b"\xcd\x00\x01"
    assert codec.decode(widened, Sample) == Sample(name="a", amount=1)
    with pytest.raises(codec.CodecError):
        codec.decode_canonical(widened, Sample)


def test_to_builtins_renders_bytes_as_hex() -> None:
    qc = QuorumCert(
        vote_data=VoteData(epoch=1, round=0, height=0, block_id=b"\x01" * 32, parent_id=b"\x00" * 32, parent_round=0)
    )
    assert codec.to_builtins(qc)["vote_data"]["block_id"] == "01" * 32


@given(name=st.text(max_size=50), amount=st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_round_trip_is_canonical(name: str, amount: int) -> None:
    value = Sample(name=name, amount=amount)
    encoded = codec.encode(value)
    assert codec.decode_canonical(encoded, Sample) == value


def test_to_builtins_renders_bytes_inside_tuples_as_hex() -> None:
    qc = QuorumCert(
        vote_data=VoteData(epoch=1, round=1, height=1, block_id=b"\x01" * 32, parent_id=b"\x00" * 32, parent_round=0),
        signers=(0,),
        signatures=(b"\xab" * 64,),
    )
    assert codec.to_builtins(qc)["signatures"] == ["ab" * 64]
